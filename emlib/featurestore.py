"""Which feature store a frozen run's items live in: the keys of :mod:`emlib.cache` for training and test items.

Every frozen run of one backbone sees the same tokens for the same pixels, so the store is keyed on
what the tokens depend on and on nothing else (not the seed of a pretrained run, the training set
it is part of, the head, a feature-level remedy, the learning rate):

* the backbone, the content of its weights (:func:`emlib.preflight.input_fingerprints`; with random
  weights the seed, which draws them) and its position interpolation;
* the content of the data (every dataset and split), the dataset and split the items come from,
  which slices (``train_slices``, the validation split, the selected test slices) and the pairing;
* the input transform: normalisation, the plug-ins' ``cache_parts`` (an input remedy such as
  ``histmatch``), the protocol resize (long side) and the evaluated region;
* the geometry of the items: tile size and stride (training), window and overlap (test), the patch size.

Training items are the fixed tiles of each training source (:class:`~emlib.data.TileDataset`), one
store per dataset, so a paired run reads the tiles its two single-dataset runs stored and the
other way round; test items are the windows (or whole slices) of each test set. A store is kept
per process (:func:`emlib.cache.feature_store`), and with ``cache="disk"`` in
``<runs folder>/.feature-cache`` next to the run folders, for every later process. LoRA and U-Net
runs, and ``cache="none"``, have no store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from emlib.cache import FeatureCache, cache_key, feature_store
from emlib.config import RunConfig
from emlib.data import PairedDataset, pad_collate
from emlib.plugins import Plugin, cache_parts
from emlib.preflight import input_fingerprints

__all__ = ["STORE_FOLDER", "EVAL_OVERLAP", "store_directory", "store_group", "tile_store", "training_stores", "stored_features", "window_store"]

#: The folder of disk stores, inside the folder that holds the run folders.
STORE_FOLDER = ".feature-cache"
#: Overlap of the sliding windows of the evaluation (:func:`emlib.evaluation.evaluate`).
EVAL_OVERLAP = 0.25


def store_directory(cfg: RunConfig, run_dir: str | os.PathLike[str] | None) -> Path | None:
    """``<runs folder>/.feature-cache`` for ``cache='disk'`` runs with a folder; None keeps the store in memory."""
    return Path(run_dir).parent / STORE_FOLDER if cfg.cache == "disk" and run_dir is not None else None


def _uses_store(cfg: RunConfig) -> bool:
    return cfg.regime == "frozen" and cfg.cache != "none"


def store_group(cfg: RunConfig) -> tuple | None:
    """What a frozen run's stores depend on, read from its config alone: runs with the same group read each
    other's stores (None: no store, a LoRA or U-Net run or ``cache='none'``).

    The config-level part of the stores' keys (the weights' and data's content come from the same files
    for every run of one build): backbone and weights, input transform (an input remedy), geometry,
    which slices. Feature- and training-level remedies, the head, the seed of a pretrained run and the
    training set are not in it: a paired run reads the tiles its single-dataset runs stored. A sharded
    build keeps each group in one share (:func:`emlib.book.shards.split_shares`), so its stores are
    computed once.

    Examples
    --------
    >>> from emlib.config import grid_configs
    >>> a, b = grid_configs("quick", regimes=["frozen"], train_sets=["lucchi_pp", "paired"])
    >>> store_group(a) == store_group(b), store_group(a.replace(input_alignment="histmatch")) == store_group(a)
    (True, False)
    >>> store_group(a.replace(regime="lora")) is None
    True
    """
    if not _uses_store(cfg):
        return None
    return (cfg.backbone, cfg.pretrained, str(cfg.weights) if cfg.weights else None, None if cfg.pretrained else cfg.seed,
            cfg.pos_interpolation, cfg.input_alignment, cfg.alignment_reference if cfg.input_alignment else None,
            cfg.long_edge, cfg.crop, cfg.train_slices, cfg.pairing, cfg.val_fraction, cfg.val_seed, cfg.eval_window,
            cfg.eval_region, cfg.eval_slices, cfg.cache)


def _token_parts(
    cfg: RunConfig, *, mean: Sequence[float], std: Sequence[float], patch_size: int, plugins: list[Plugin],
    root: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """What every token of a run's backbone depends on, whatever the item: backbone, weights, data, input transform."""
    fingerprints = input_fingerprints(cfg, root=root)
    return {
        "backbone": cfg.backbone, "weights": fingerprints["weights"], "data": fingerprints["data"],
        "random_weights_seed": None if cfg.pretrained else cfg.seed, "pos_interpolation": cfg.pos_interpolation,
        "mean": list(mean), "std": list(std), "patch_size": patch_size, "long_edge": cfg.long_edge,
        "transform": cache_parts(plugins),
    }


def tile_store(
    cfg: RunConfig, backbone: nn.Module, source: str, *, tile: tuple[int, int], n_items: int, part: str,
    mean: Sequence[float], std: Sequence[float], patch_size: int, plugins: list[Plugin],
    root: str | os.PathLike[str] | None = None, run_dir: str | os.PathLike[str] | None = None,
) -> FeatureCache | None:
    """The store of the tiles of one training source (None: not a frozen run, or ``cache='none'``).

    Parameters
    ----------
    cfg : RunConfig
    backbone : nn.Module
        The run's frozen backbone (computes the tiles not stored yet).
    source : str
        The dataset the tiles come from (``lucchi_pp`` or ``vnc``).
    tile : (int, int)
        Tile height and width in pixels (the whole resized slice for ``crop=None``).
    n_items : int
        Tiles of the source: item ``i`` is tile ``i`` of :class:`~emlib.data.TileDataset`.
    part : {'train', 'val'}
        The training slices, or those held out for validation.
    mean, std, patch_size
        The backbone's input normalisation and patch size.
    plugins : list of Plugin
    root, run_dir : path, default=None
        Data root; the run folder (its parent holds disk stores).
    """
    if not _uses_store(cfg):
        return None
    key = cache_key(
        **_token_parts(cfg, mean=mean, std=std, patch_size=patch_size, plugins=plugins, root=root),
        items="train_tiles", source=source, part=part, slices=cfg.train_slices, pairing=cfg.pairing,
        validation=[cfg.val_fraction, cfg.val_seed] if cfg.val_fraction else None, tile=list(tile), stride=None,
        n=n_items,
    )
    return feature_store(backbone.eval(), key, directory=store_directory(cfg, run_dir))


def window_store(
    cfg: RunConfig, backbone: nn.Module, test_set: str, *, slice_ids: Sequence[str], shape: tuple[int, int],
    window: int | None, mean: Sequence[float], std: Sequence[float], patch_size: int, plugins: list[Plugin],
    root: str | os.PathLike[str] | None = None, run_dir: str | os.PathLike[str] | None = None,
) -> FeatureCache | None:
    """The store of the windows (or whole slices, ``window=None``) of one test set (None: no store for this run).

    Item ``z * H * W + k`` is window ``k`` (in :func:`emlib.stitching.sliding_window_predict`'s order)
    of slice ``z`` of the evaluated (H, W) slices ``shape``, ``slice_ids`` naming them.
    """
    if not _uses_store(cfg):
        return None
    key = cache_key(
        **_token_parts(cfg, mean=mean, std=std, patch_size=patch_size, plugins=plugins, root=root),
        items="test_windows", source=test_set, slices=list(slice_ids), region=cfg.eval_region,
        resized=cfg.crop is None, shape=list(shape), window=window, overlap=EVAL_OVERLAP,
    )
    return feature_store(backbone.eval(), key, directory=store_directory(cfg, run_dir))


def training_stores(
    cfg: RunConfig, backbone: nn.Module | None, dataset: torch.utils.data.Dataset, *, part: str,
    mean: Sequence[float], std: Sequence[float], patch_size: int, plugins: list[Plugin],
    root: str | os.PathLike[str] | None = None, run_dir: str | os.PathLike[str] | None = None,
) -> list[FeatureCache] | None:
    """The stores of a run's training (or validation) items, one per source of ``dataset`` (None: no store).

    ``dataset`` is that of :func:`emlib.train.build_train_dataset`: a :class:`~emlib.data.TileDataset`,
    or a :class:`~emlib.data.PairedDataset` of one per dataset (its sources in order).
    """
    if not _uses_store(cfg) or backbone is None:
        return None
    names = dataset.names if isinstance(dataset, PairedDataset) else [cfg.train_set]
    return [
        tile_store(cfg, backbone, name, tile=source.tile, n_items=len(source), part=part, mean=mean, std=std,
                    patch_size=patch_size, plugins=plugins, root=root, run_dir=run_dir)
        for name, source in zip(names, _sources(dataset))
    ]


def _sources(dataset: torch.utils.data.Dataset) -> list[torch.utils.data.Dataset]:
    return list(dataset.sources) if isinstance(dataset, PairedDataset) else [dataset]


def stored_features(
    stores: list[FeatureCache], dataset: torch.utils.data.Dataset, batch: list[int], backbone: nn.Module,
    device: torch.device,
) -> torch.Tensor:
    """Tokens (B, C, h, w) of the items ``batch`` of ``dataset`` from their sources' stores (:func:`training_stores`).

    Items of one source share a size, so the missing ones are computed together at their own size by
    ``backbone`` (the tokens do not depend on the batch); maps of different sizes (a paired batch of
    whole slices) are zero-padded at the bottom and the right to the batch's largest.
    """
    located = [dataset.locate(i) if isinstance(dataset, PairedDataset) else (0, i) for i in batch]
    sources, parts = _sources(dataset), [torch.empty(0)] * len(batch)
    for which in dict.fromkeys(s for s, _ in located):
        positions = [k for k, (s, _) in enumerate(located) if s == which]
        source = sources[which]

        def inputs(missing: list[int], source: torch.utils.data.Dataset = source) -> torch.Tensor:
            return pad_collate([source[j] for j in missing])[0]

        feats = stores[which].get([located[k][1] for k in positions], inputs, device, compute=backbone)
        for k, f in zip(positions, feats):
            parts[k] = f
    h, w = max(f.shape[-2] for f in parts), max(f.shape[-1] for f in parts)
    return torch.stack([F.pad(f, (0, w - f.shape[-1], 0, h - f.shape[-2])) for f in parts])
