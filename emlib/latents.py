"""Image embeddings of both datasets for the latent diagnostics (paper Fig. 1 and Fig. 4).

One embedding per slice, as the authors compute it (``analysis/feature_extractor.py``): the slice
is resized so its long side is ``long_edge`` (1022 in the paper) with sides floored to the patch
size, normalised like the backbone's training data, and the backbone's image embedding is taken
(mean of patch tokens for DINOv2/DINOv3, CLS for OpenCLIP). The backbone is frozen, or carries a
LoRA adapter loaded from a finished run. Embeddings are cached on disk by everything they depend on.

Default sets: Lucchi++ ``test`` (165 slices) against VNC stack1 ``all`` (20 slices); pass
``vnc_split="unlabelled"`` for VNC stack2, as in the paper's Fig. 4.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emlib.cache import cache_key
from emlib.data import load_volume, normalize, protocol_size, resize_slice
from emlib.diagnostics import domain_report, extract_embeddings, write_report
from emlib.errors import DataError
from emlib.evaluate import select_test_slices
from emlib.models import Backbone, apply_lora, create_backbone, load_adapter

__all__ = ["EmbeddingSet", "dataset_embeddings", "load_backbone_for_latents", "latent_report"]


@dataclass
class EmbeddingSet:
    """Embeddings of several datasets by one backbone.

    Attributes
    ----------
    embeddings : dict of str to ndarray of shape (n_slices, embed_dim)
    slice_ids : dict of str to tuple of str
    backbone, adapter, weights_label : str
    """

    embeddings: dict[str, np.ndarray]
    slice_ids: dict[str, tuple[str, ...]]
    backbone: str
    adapter: str
    weights_label: str

    def stacked(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(X of shape (n, C), dataset label per row, ``dataset:slice`` hover text per row)."""
        names = list(self.embeddings)
        x = np.concatenate([self.embeddings[n] for n in names])
        labels = np.concatenate([[n] * len(self.embeddings[n]) for n in names])
        hover = [f"{n}:{s}" for n in names for s in self.slice_ids[n]]
        return x, labels, hover


def load_backbone_for_latents(
    name: str, *, pretrained: bool = True, weights: str | None = None, adapter_run: str | os.PathLike[str] | None = None
) -> tuple[Backbone, str]:
    """A frozen backbone, optionally with the LoRA adapter of a finished run; returns (backbone, adapter label)."""
    backbone = create_backbone(name, pretrained=pretrained, weights=weights)
    if adapter_run is None:
        return backbone.eval(), "frozen"
    run = Path(adapter_run)
    adapter, config = run / "adapter.pt", run / "config.json"
    if not adapter.is_file() or not config.is_file():
        raise DataError(f"no LoRA adapter in {run} (adapter.pt and config.json are needed); train a run with regime='lora' first")
    from emlib.config import RunConfig

    cfg = RunConfig.from_dict(json.loads(config.read_text()))
    apply_lora(backbone, cfg.lora)
    load_adapter(backbone, adapter)
    return backbone.eval(), f"LoRA ({run.name})"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"


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
) -> EmbeddingSet:
    """Embed Lucchi++ ``test`` and VNC ``vnc_split`` slices with ``backbone``.

    Parameters
    ----------
    slices : int, default=None
        Evenly spaced slices per dataset (None: all), e.g. a few for the smoke profile.
    long_edge : int or None, default=1022
        Protocol resize of each slice (None keeps the native size, floored to the patch size).
    cache_dir : path, default=None
        Folder for ``<key>.npz`` files; a second call with the same inputs reads them.
    """
    out: dict[str, np.ndarray] = {}
    ids: dict[str, tuple[str, ...]] = {}
    adapter_state = getattr(backbone, "lora_settings", None)
    lora_digest = "none"
    if adapter_state is not None:
        digest = hashlib.sha256()
        for key, value in sorted(backbone.state_dict().items()):
            if "lora_" in key:
                digest.update(value.detach().cpu().numpy().tobytes())
        lora_digest = digest.hexdigest()[:16]
    for name, split in (("lucchi_pp", "test"), ("vnc", vnc_split)):
        n_total = len(load_volume(name, split, root=root).slice_ids) if slices else 0
        keep = select_test_slices(n_total, slices) if slices else None
        vol = load_volume(name, split, root=root, slices=keep)
        key = cache_key(
            backbone=backbone.name, weights=backbone.weights_label, adapter=adapter, lora=lora_digest,
            dataset=name, split=split, slices=vol.slice_ids, long_edge=long_edge,
        )
        path = None if cache_dir is None else Path(cache_dir) / f"emb-{key[:24]}.npz"
        if path is not None and path.is_file():
            out[name] = np.load(path)["embeddings"]
        else:
            h, w = vol.shape[1:]
            p = backbone.patch_size
            size = protocol_size(h, w, long_edge=long_edge, multiple=p) if long_edge else (h // p * p, w // p * p)
            images = np.stack([resize_slice(im, size) if size != (h, w) else im[: size[0], : size[1]] for im in vol.images])
            out[name] = extract_embeddings(
                backbone, images, normalise=lambda b: normalize(b, backbone.mean, backbone.std),
                batch_size=batch_size, device=device, progress=progress,
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".incomplete.npz")
                np.savez(tmp, embeddings=out[name])
                os.replace(tmp, path)
        ids[name] = vol.slice_ids
    return EmbeddingSet(out, ids, backbone.name, adapter, backbone.weights_label)


def latent_report(
    sets: list[EmbeddingSet], *, run_dir: str | os.PathLike[str] | None = None, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """One diagnostics row per embedding set (FD with CI, probe accuracy/AUROC, PCA variance); written to ``run_dir``."""
    rows = [
        domain_report(
            s.embeddings, backbone=s.backbone, adapter=s.adapter, weights_label=s.weights_label, n_boot=n_boot, seed=seed
        )
        for s in sets
    ]
    table = pd.concat(rows, ignore_index=True)
    if run_dir is not None:
        write_report(table, run_dir)
    return table
