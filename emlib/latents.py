"""Image embeddings of both datasets for the latent diagnostics (paper Fig. 1 and Fig. 4).

One embedding per slice, as the authors compute it (``analysis/feature_extractor.py``): the slice
is resized so its long side is ``long_edge`` (1022 in the paper) with sides floored to the patch
size, normalised like the backbone's training data, and the backbone's image embedding is taken
(mean of patch tokens for DINOv2/DINOv3, CLS for OpenCLIP). The backbone is frozen, or carries a
LoRA adapter loaded from a finished run. Embeddings are cached on disk by everything they depend on.

Default sets: Lucchi++ ``test`` (165 slices) against VNC stack1 ``all`` (20 slices); pass
``vnc_split="unlabelled"`` for VNC stack2, as in the paper's Fig. 4, or ``vnc_split="test"`` for the
authors' image sets (:data:`IMAGE_SETS`).

Patch level (:func:`dataset_tokens`, :func:`token_separability_table`): the patch tokens of a few
labelled slices per dataset, each token labelled foreground when most of its patch is mitochondria,
and how well a linear probe separates foreground from background tokens within each dataset and
across datasets (trained on one, tested on the other) -- what a light head can and cannot use.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emlib.cache import cache_key
from emlib.config import RunConfig
from emlib.data import data_fingerprint, load_volume, normalize, protocol_size, resize_slice, select_test_slices
from emlib.diagnostics import (
    SUBSAMPLE_MIN_ROWS,
    domain_report,
    downsample_mask_to_grid,
    token_separability,
    write_report,
)
from emlib.errors import ConfigError, DataError
from emlib.models import (
    Backbone,
    apply_lora,
    create_backbone,
    extract_embeddings,
    extract_token_maps,
    load_adapter,
)
from emlib.plugins import plugins_for, transform_volume
from emlib.runfiles import ADAPTER, CONFIG, read_run_config, write_atomic

__all__ = [
    "IMAGE_SETS",
    "image_set_split",
    "weights_fingerprint",
    "EmbeddingSet",
    "dataset_embeddings",
    "run_embeddings",
    "dataset_tokens",
    "load_backbone_for_latents",
    "latent_report",
    "token_separability_table",
    "transfer_auroc",
]

#: Display names of the datasets in tables.
DATASET_NAMES = {"lucchi_pp": "Lucchi++", "vnc": "VNC"}

#: The image sets the latent diagnostics compare, as the VNC split set against Lucchi++ ``test``
#: (165 slices). ``book``: VNC stack1, all 20 labelled slices. ``authors``: the images of the authors'
#: composed test folder, which their feature configs embed (``configs/cluster/EM/paired_feat_analysis_cluster.yaml``:
#: ``DINO-POC/test/images``, made by ``scripts/data/compose_em_datasets.py``): the 3 VNC slices of
#: the 85/15 split (:data:`emlib.data.VNC_TEST_SLICES`).
IMAGE_SETS: dict[str, str] = {"book": "all", "authors": "test"}


def image_set_split(image_set: str) -> str:
    """The VNC split of ``image_set`` (a key of :data:`IMAGE_SETS`), checked."""
    if image_set not in IMAGE_SETS:
        raise ConfigError(f"image_set={image_set!r} is not known; pass one of {list(IMAGE_SETS)}")
    return IMAGE_SETS[image_set]


@dataclass
class EmbeddingSet:
    """Embeddings of several datasets by one backbone.

    Attributes
    ----------
    embeddings : dict of str to ndarray of shape (n_slices, embed_dim)
    slice_ids : dict of str to tuple of str
    backbone, adapter, weights_label : str
    source : str
        Which slices were embedded, in words (datasets, splits, counts, resize), for report tables.
    """

    embeddings: dict[str, np.ndarray]
    slice_ids: dict[str, tuple[str, ...]]
    backbone: str
    adapter: str
    weights_label: str
    source: str = ""

    def stacked(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(X of shape (n, C), dataset label per row, ``dataset:slice`` hover text per row)."""
        names = list(self.embeddings)
        x = np.concatenate([self.embeddings[n] for n in names])
        labels = np.concatenate([[n] * len(self.embeddings[n]) for n in names])
        hover = [f"{n}:{s}" for n in names for s in self.slice_ids[n]]
        return x, labels, hover


def _create_seeded(name: str, *, pretrained: bool, weights: str | None, seed: int, pos_interpolation: str) -> Backbone:
    """``create_backbone`` with torch seeded as in training (random init is reproducible; global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_backbone(name, pretrained=pretrained, weights=weights, pos_interpolation=pos_interpolation)


def load_backbone_for_latents(
    name: str,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    adapter_run: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    pos_interpolation: str | None = None,
) -> tuple[Backbone, str]:
    """A frozen backbone, optionally with the LoRA adapter of a finished run; returns (backbone, adapter label).

    Torch is seeded before the backbone is built, as :func:`emlib.train.build_model` does, with
    ``seed`` (default: the run's seed with an adapter, else 0): with random weights the frozen
    backbone and the adapter's base are then the network the adapter was trained on.
    ``pos_interpolation`` (``RunConfig.pos_interpolation``) defaults to the run's with an adapter,
    else ``'timm'``; pass the profile's so that frozen and LoRA embeddings use the same one.
    """
    if adapter_run is None:
        backbone = _create_seeded(
            name, pretrained=pretrained, weights=weights, seed=0 if seed is None else seed,
            pos_interpolation=pos_interpolation or "timm",
        )
        return backbone.eval(), "frozen"
    run = Path(adapter_run)
    adapter, config = run / ADAPTER, run / CONFIG
    if not adapter.is_file() or not config.is_file():
        raise DataError(f"no LoRA adapter in {run} ({ADAPTER} and {CONFIG} are needed); train a run with regime='lora' first")
    cfg = read_run_config(run, fix=f"delete {run} and train the run again")
    positions = cfg.pos_interpolation if pos_interpolation is None else pos_interpolation
    backbone = _create_seeded(
        name, pretrained=pretrained, weights=weights, seed=cfg.seed if seed is None else seed, pos_interpolation=positions
    )
    apply_lora(backbone, cfg.lora)
    load_adapter(backbone, adapter)
    return backbone.eval(), f"LoRA ({run.name})"


def weights_fingerprint(backbone: Backbone) -> str:
    """Short SHA-256 of every weight of ``backbone`` (base and LoRA): equal only for equal weights."""
    digest = hashlib.sha256(backbone.weights_label.encode())
    for key, value in sorted(backbone.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def dataset_embeddings(
    backbone: Backbone,
    *,
    adapter: str = "frozen",
    root: str | os.PathLike[str] | None = None,
    vnc_split: str = "all",
    slices: int | None = None,
    long_edge: int | None = 1022,
    batch_size: int = 4,
    device: str = "cpu",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
    transform_key: str | None = None,
) -> EmbeddingSet:
    """Embed Lucchi++ ``test`` and VNC ``vnc_split`` slices with ``backbone``.

    Parameters
    ----------
    slices : int, default=None
        Evenly spaced slices per dataset (None: all), e.g. a few for the smoke profile.
    long_edge : int or None, default=1022
        Protocol resize of each slice (None keeps the native size, floored to the patch size).
    cache_dir : path, default=None
        Folder for ``<key>.npz`` files; a second call with the same inputs reads them. The key
        holds fingerprints of the weights and of the data (:func:`emlib.data.data_fingerprint`),
        so two random initialisations or two data copies never share files. A file that cannot be
        read (truncated, or holding pickled objects, which are never loaded) is rebuilt with a warning.
    transform : callable, default=None
        ``transform(dataset, images)`` applied to each (Z, H, W) uint8 stack before the resize,
        e.g. a run's input alignment (:func:`run_embeddings`); ``transform_key`` names it in the cache key
        and is required with it.
    """
    if transform is not None and not transform_key:
        raise ConfigError("a transform needs a transform_key that names it in the embedding cache key")
    out: dict[str, np.ndarray] = {}
    ids: dict[str, tuple[str, ...]] = {}
    fingerprint = weights_fingerprint(backbone)
    for name, split in (("lucchi_pp", "test"), ("vnc", vnc_split)):
        n_total = len(load_volume(name, split, root=root).slice_ids) if slices else 0
        keep = select_test_slices(n_total, slices) if slices else None
        vol = load_volume(name, split, root=root, slices=keep)
        key = cache_key(
            backbone=backbone.name, weights=fingerprint, adapter=adapter, dataset=name, split=split,
            slices=vol.slice_ids, long_edge=long_edge, **({"transform": transform_key} if transform else {}),
            **({"pos_interpolation": backbone.pos_interpolation} if backbone.pos_interpolation != "timm" else {}),
            **({"data": data_fingerprint(name, split, root=root)} if cache_dir is not None else {}),
        )
        path = None if cache_dir is None else Path(cache_dir) / f"emb-{key[:24]}.npz"
        saved = _read_embeddings(path, len(vol.slice_ids)) if path is not None and path.is_file() else None
        if saved is not None:
            out[name] = saved
        else:
            images = vol.images if transform is None else transform(name, vol.images)
            h, w = images.shape[1:]
            p = backbone.patch_size
            size = protocol_size(h, w, long_edge=long_edge, multiple=p) if long_edge else (h // p * p, w // p * p)
            images = np.stack([resize_slice(im, size) if size != (h, w) else im[: size[0], : size[1]] for im in images])
            out[name] = extract_embeddings(
                backbone, images, normalise=lambda b: normalize(b, backbone.mean, backbone.std),
                batch_size=batch_size, device=device, progress=progress,
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, lambda tmp, arr=out[name]: _write_embeddings(tmp, arr))
        ids[name] = vol.slice_ids
    source = "; ".join(f"{n} {s}: {len(ids[n])} slices" for n, s in (("lucchi_pp", "test"), ("vnc", vnc_split)))
    resize = f"long side {long_edge}" if long_edge else "native size"
    return EmbeddingSet(out, ids, backbone.name, adapter, backbone.weights_label, f"{source} ({resize})")


def _write_embeddings(path: Path, embeddings: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object: np.savez would add ".npz" to a name
        np.savez(handle, embeddings=embeddings)


def _read_embeddings(path: Path, n_slices: int) -> np.ndarray | None:
    """The embeddings in a cache file, or None (with a warning naming it) when it cannot be read; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            embeddings = saved["embeddings"]
        if embeddings.ndim == 2 and len(embeddings) == n_slices and embeddings.dtype.kind == "f":
            return embeddings
        reason = f"it holds an array of shape {embeddings.shape} for {n_slices} slices"
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
    warnings.warn(f"embedding cache {path} cannot be read ({reason}); it is rebuilt", RuntimeWarning, stacklevel=3)
    return None


def run_embeddings(backbone: Backbone, cfg: RunConfig, *, root: str | os.PathLike[str] | None = None, **kwargs: Any) -> EmbeddingSet:
    """:func:`dataset_embeddings` of the slices a run's model sees: after its plug-ins' ``transform_volume``.

    Without an input transform this is ``dataset_embeddings`` itself (same cache files as chapter 6).
    With one (``input_alignment``), each dataset's selected slices are transformed as
    :func:`emlib.evaluation.evaluate` transforms a test stack before they are resized and embedded;
    the cache key names the transform. ``kwargs`` are those of ``dataset_embeddings``
    (``adapter``, ``slices``, ``long_edge``, ``cache_dir``, ...).
    """
    kwargs.setdefault("progress", False)
    if cfg.input_alignment is None:
        return dataset_embeddings(backbone, root=root, **kwargs)
    plugins = plugins_for(cfg, root)

    def transform(dataset: str, images: np.ndarray) -> np.ndarray:
        return transform_volume(plugins, dataset, np.asarray(images), None)[0]

    reference = "none" if cfg.input_alignment == "clahe" else f"{cfg.alignment_reference}:{cfg.train_slices}"
    return dataset_embeddings(backbone, root=root, transform=transform, transform_key=f"{cfg.input_alignment}:{reference}", **kwargs)


def latent_report(
    sets: list[EmbeddingSet], *, run_dir: str | os.PathLike[str] | None = None, n_boot: int = 200, seed: int = 0,
    image_set: str = "book",
) -> pd.DataFrame:
    """One diagnostics row per embedding set (FD with CI, probe accuracy/AUROC, PCA variance); written to ``run_dir``.

    The FD interval (``fd_low, fd_high``, described in ``fd_interval``) is the half-sample subsampling
    interval of :func:`emlib.diagnostics.bootstrap_frechet`: it covers the FD at these numbers of slices,
    which the ``slices`` column names (:attr:`EmbeddingSet.source`). A set of fewer than 4 slices
    (the authors' 3 VNC test slices) gets no interval (NaN bounds, ``fd_interval='none'``) and a
    cross-validated probe with as many folds as it has slices. ``image_set`` (a key of
    :data:`IMAGE_SETS`) names the sets in the ``image_set`` column and the file:
    ``domain_report.csv`` for ``book``, ``domain_report_<image_set>.csv`` otherwise.
    """
    image_set_split(image_set)
    rows = []
    for s in sets:
        smallest = min(len(v) for v in s.embeddings.values())
        rows.append(domain_report(
            s.embeddings, backbone=s.backbone, adapter=s.adapter, weights_label=s.weights_label, n_boot=n_boot, seed=seed,
            fd_interval="subsample" if smallest >= SUBSAMPLE_MIN_ROWS else None, n_splits=min(5, smallest),
        ).assign(slices=s.source, image_set=image_set))
    table = pd.concat(rows, ignore_index=True)
    if run_dir is not None:
        write_report(table, run_dir, name="domain_report" if image_set == "book" else f"domain_report_{image_set}")
    return table


# ----------------------------------------------------------------------------- patch tokens


def dataset_tokens(
    backbone: Backbone,
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    slices: int | None = 4,
    long_edge: int | None = 224,
    threshold: float = 0.5,
    batch_size: int = 4,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Patch tokens of evenly spaced labelled slices, each with a foreground label.

    Each slice is resized like :func:`dataset_embeddings` (long side ``long_edge``, sides floored
    to the patch size), its token map is taken, and the full-resolution mask is area-averaged onto
    the token grid (:func:`emlib.diagnostics.downsample_mask_to_grid`): a token is foreground when
    at least ``threshold`` of its patch is mitochondria.

    Returns
    -------
    tokens : ndarray of shape (n_tokens, embed_dim), dtype float32
    labels : ndarray of shape (n_tokens,), dtype bool
    grid : (int, int)
        Token grid (h, w) of one slice.
    """
    n_total = len(load_volume(name, split, root=root).slice_ids) if slices else 0
    keep = select_test_slices(n_total, slices) if slices else None
    vol = load_volume(name, split, root=root, slices=keep)
    if vol.masks is None:
        raise DataError(f"{name} {split!r} has no masks; pass a labelled split (Lucchi++ 'test', VNC 'all')")
    h, w = vol.shape[1:]
    p = backbone.patch_size
    size = protocol_size(h, w, long_edge=long_edge, multiple=p) if long_edge else (h // p * p, w // p * p)
    images = np.stack([resize_slice(im, size) if size != (h, w) else im[: size[0], : size[1]] for im in vol.images])
    maps = extract_token_maps(
        backbone, images, normalise=lambda b: normalize(b, backbone.mean, backbone.std),
        batch_size=batch_size, device=device, progress=False,
    )
    grid = (int(maps.shape[1]), int(maps.shape[2]))
    # resized slices: area-average the full mask; cropped slices (no long_edge): crop the mask alike
    masks = vol.masks if long_edge and size != (h, w) else vol.masks[:, : size[0], : size[1]]
    labels = downsample_mask_to_grid(masks, grid, threshold=threshold)
    return maps.reshape(-1, maps.shape[-1]), labels.reshape(-1), grid


def _probe(seed: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def transfer_auroc(
    train_tokens: np.ndarray, train_labels: np.ndarray, test_tokens: np.ndarray, test_labels: np.ndarray,
    *, seed: int = 0, max_tokens: int = 20_000,
) -> float:
    """AUROC on ``test`` of a foreground/background probe fitted on all of ``train`` (NaN if a set lacks a class)."""
    y_train, y_test = np.asarray(train_labels, bool), np.asarray(test_labels, bool)
    if y_train.all() or not y_train.any() or y_test.all() or not y_test.any():
        return float("nan")
    x = np.asarray(train_tokens, np.float32)
    if len(x) > max_tokens:
        idx = np.random.default_rng(seed).choice(len(x), max_tokens, replace=False)
        x, y_train = x[idx], y_train[idx]
    model = _probe(seed).fit(x, y_train)
    return float(roc_auc_score(y_test, model.predict_proba(np.asarray(test_tokens, np.float32))[:, 1]))


def token_separability_table(
    backbones: Mapping[str, Backbone],
    *,
    root: str | os.PathLike[str] | None = None,
    vnc_split: str = "all",
    slices: int | None = 4,
    long_edge: int | None = 224,
    threshold: float = 0.5,
    n_splits: int = 5,
    device: str = "cpu",
    seed: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Foreground/background separability of patch tokens, per backbone and dataset.

    For each backbone (e.g. ``{"frozen": ..., "LoRA": ...}``) the tokens of ``slices`` evenly
    spaced slices of Lucchi++ ``test`` and VNC ``vnc_split`` are labelled by :func:`dataset_tokens`
    and scored by :func:`emlib.diagnostics.token_separability` (a cross-validated logistic-regression
    probe within the dataset). ``transfer_auroc`` is the AUROC on this dataset of a probe fitted on
    the *other* dataset's tokens: high within but low across means the foreground direction differs
    between the datasets, which one shared linear read-out cannot follow.

    Returns
    -------
    table : pandas.DataFrame
        One row per (backbone, dataset): ``adapter``, ``dataset``, ``auroc``, ``auroc_std``,
        ``balanced_accuracy``, ``fisher_ratio``, ``transfer_auroc``, ``fg_fraction``, ``n_fg``,
        ``n_bg``, ``grid``, ``slices``, ``long_edge``, ``backbone``, ``weights_label``; written to
        ``run_dir/token_separability.csv`` when given.
    """
    if not backbones:
        raise DataError("backbones is empty; pass a dict such as {'frozen': backbone}")
    rows = []
    for label, backbone in backbones.items():
        data = {
            name: dataset_tokens(backbone, name, split, root=root, slices=slices, long_edge=long_edge,
                                 threshold=threshold, device=device)
            for name, split in (("lucchi_pp", "test"), ("vnc", vnc_split))
        }
        for name, (x, y, grid) in data.items():
            other = data["vnc" if name == "lucchi_pp" else "lucchi_pp"]
            n_fg, n_bg = int(y.sum()), int((~y).sum())
            if min(n_fg, n_bg) < 2:
                raise DataError(
                    f"{DATASET_NAMES[name]}: {n_fg} foreground and {n_bg} background tokens in {slices} slices at "
                    f"long_edge={long_edge}; pass more slices, a larger long_edge or a lower threshold"
                )
            sep = token_separability(x, y, n_splits=min(n_splits, n_fg, n_bg), seed=seed)
            rows.append({
                "adapter": label, "dataset": DATASET_NAMES[name],
                **{k: sep[k] for k in ("auroc", "auroc_std", "balanced_accuracy", "fisher_ratio")},
                "transfer_auroc": transfer_auroc(other[0], other[1], x, y, seed=seed),
                **{k: sep[k] for k in ("fg_fraction", "n_fg", "n_bg")},
                "grid": f"{grid[0]}x{grid[1]}", "slices": len(y) // (grid[0] * grid[1]), "long_edge": long_edge,
                "backbone": backbone.name, "weights_label": backbone.weights_label,
            })
    table = pd.DataFrame(rows)
    if run_dir is not None:
        write_report(table, run_dir, name="token_separability")
    return table
