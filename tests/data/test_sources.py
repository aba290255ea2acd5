"""The dataset registry: sources, splits, the authors' VNC test slices, and the packaged hash registry."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import pytest

from emlib.data import DATASETS, VNC_TEST_SLICES, DatasetSource, get_source, list_datasets, list_splits, read_volume
from emlib.data.sources import pixel_registry
from emlib.errors import ConfigError

def test_vnc_split_is_the_authors_seed_42_shuffle(shared_data: Path) -> None:
    stems = [f"{k:02d}" for k in range(20)]
    pairs = list(stems)
    random.Random(42).shuffle(pairs)
    n_train = round(0.85 * len(pairs))
    assert sorted(int(s) for s in pairs[n_train:]) == list(VNC_TEST_SLICES)
    test = read_volume("vnc", "test", root=shared_data, with_masks=False)
    train = read_volume("vnc", "train", root=shared_data, slices=2, with_masks=False)
    assert test.slice_ids == ("00", "03", "08")
    assert train.slice_ids == ("01", "02")

def test_sources_and_splits_of_the_registry() -> None:
    assert list_datasets() == sorted(DATASETS) == ["lucchi_pp", "vnc"]
    source = get_source("vnc")
    assert isinstance(source, DatasetSource) and source is DATASETS["vnc"]
    assert (source.title, source.layout_dir, source.archive_sha256) == ("VNC", "groundtruth-drosophila-vnc-master", None)
    assert list_splits("lucchi_pp") == ("train", "test")
    assert list_splits("vnc") == ("train", "test", "all", "unlabelled")
    assert get_source("lucchi_pp").voxel_size_nm == (5.0, 5.0, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.url = "http://example.org"  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"unknown dataset 'em'; choose one of \['lucchi_pp', 'vnc'\]"):
        list_splits("em")

def test_packaged_hash_registry_lists_every_upstream_image() -> None:
    hex64 = re.compile(r"^[0-9a-f]{64}$")
    vnc = pixel_registry("vnc")
    assert len(vnc) == 60  # stack1 raw + mitochondria, stack2 raw, 20 slices each
    assert "stack1/mitochondria/05.png" in vnc and "stack2/raw/19.tif" in vnc
    lucchi = pixel_registry("lucchi_pp")
    assert {rel.split("/")[0] for rel in lucchi} == set(DATASETS["lucchi_pp"].required)
    for pixel_sha, file_sha in [*vnc.values(), *lucchi.values()]:
        assert hex64.match(pixel_sha) and hex64.match(file_sha)
