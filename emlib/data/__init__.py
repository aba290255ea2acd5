"""Data layer: fetch and read Lucchi++ and VNC, transforms, and torch Datasets.

This subpackage knows nothing of models. See :mod:`emlib.data.sources` for the dataset registry,
:mod:`emlib.data.layout` for the data root and the official layouts, :mod:`emlib.data.read` for
reading, :mod:`emlib.data.fetch` for downloading and checking, :mod:`emlib.data.transforms` for
preprocessing and :mod:`emlib.data.datasets` for Datasets.
"""

from __future__ import annotations

from emlib.data.audit import AUDIT_SCOPES, pairing_audit, pairing_table
from emlib.data.datasets import CropDataset, PairedDataset, TileDataset, pad_collate, tile_origins, validation_split
from emlib.data.fetch import VerifyReport, fetch_dataset, verify_dataset
from emlib.data.layout import data_root, dataset_dir
from emlib.data.pairing import PUBLISHED_SCRIPT, slice_pairs
from emlib.data.read import Volume, data_fingerprint, load_volume, pixel_sha256, read_volume, volume_sha256
from emlib.data.sources import DATASETS, VNC_TEST_SLICES, DatasetSource, get_source, list_datasets, list_splits
from emlib.data.summary import dataset_summary
from emlib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_pair,
    center_region,
    denormalize,
    normalize,
    protocol_size,
    random_crop,
    resize_slice,
    select_test_slices,
)

__all__ = [
    "AUDIT_SCOPES",
    "DATASETS",
    "PUBLISHED_SCRIPT",
    "VNC_TEST_SLICES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CropDataset",
    "DatasetSource",
    "PairedDataset",
    "TileDataset",
    "VerifyReport",
    "Volume",
    "augment_pair",
    "center_region",
    "data_fingerprint",
    "data_root",
    "dataset_dir",
    "dataset_summary",
    "denormalize",
    "fetch_dataset",
    "get_source",
    "list_datasets",
    "list_splits",
    "load_volume",
    "normalize",
    "pixel_sha256",
    "protocol_size",
    "random_crop",
    "read_volume",
    "resize_slice",
    "select_test_slices",
    "tile_origins",
    "pad_collate",
    "pairing_audit",
    "pairing_table",
    "slice_pairs",
    "validation_split",
    "verify_dataset",
    "volume_sha256",
]
