"""Run a backbone over image arrays: image embeddings and patch-token maps.

The statistics on the results live in :mod:`emlib.diagnostics`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from emlib.errors import ConfigError, ShapeError

__all__ = ["extract_embeddings", "extract_token_maps"]


def _iter_batches(images: Any, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of equally sized slices (a new batch starts when the size changes)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 3:
            raise ShapeError(f"images has shape {images.shape}; pass a stack of shape (Z, H, W)")
        return [images[i : i + batch_size] for i in range(0, images.shape[0], batch_size)]
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim != 2:
            raise ShapeError(f"images[{i}] has shape {im.shape}; pass 2-D slices (H, W)")
        if current and (im.shape != current[0].shape or len(current) == batch_size):
            batches.append(np.stack(current))
            current = []
        current.append(im)
    if current:
        batches.append(np.stack(current))
    return batches


def _run_backbone(
    fn: Callable[[torch.Tensor], torch.Tensor],
    backbone: Any,
    images: Any,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    desc: str,
) -> list[np.ndarray]:
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not positive; pass at least 1")
    batches = _iter_batches(images, int(batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc)  # type: ignore[assignment]
    was_training = getattr(backbone, "training", False)
    if hasattr(backbone, "eval"):
        backbone.eval()
    outputs = []
    try:
        with torch.no_grad():
            for batch in batches:
                x = normalise(batch)
                x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
                if x.ndim != 4 or x.shape[0] != batch.shape[0]:
                    raise ShapeError(
                        f"normalise returned shape {tuple(x.shape)} for a batch of {batch.shape[0]} slices; "
                        "make it return (B, 3, H, W)"
                    )
                outputs.append(fn(x.to(device)).detach().float().cpu().numpy())
    finally:
        if was_training and hasattr(backbone, "train"):
            backbone.train()
    return outputs


def extract_embeddings(
    backbone: Any,
    images: Any,
    *,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """One global embedding per slice: ``backbone.embed`` (mean of patch tokens).

    Parameters
    ----------
    backbone : emlib backbone
        Object with ``embed(x: (B, 3, H, W)) -> (B, C)``; it is put in eval
        mode for the call and its training flag restored afterwards.
    images : ndarray of shape (Z, H, W), dtype uint8, or sequence of (H, W) arrays
        Slices; in a sequence, consecutive slices of the same size are batched.
    normalise : callable
        Maps a uint8 batch (B, H, W) to a float batch (B, 3, H, W) (resize,
        grey → RGB, ImageNet statistics), from the data layer.
    batch_size : int, default=8
        Slices per forward pass.
    device : str or torch.device, default='cpu'
        Where the batch is sent; the backbone must already be there.
    progress : bool, default=True
        Show a tqdm bar over batches.

    Returns
    -------
    embeddings : ndarray of shape (Z, C), dtype float32
    """
    out = _run_backbone(backbone.embed, backbone, images, normalise, batch_size, device, progress, "embeddings")
    for o in out:
        if o.ndim != 2:
            raise ShapeError(f"backbone.embed returned shape {o.shape}; make it return (B, C)")
    return np.concatenate(out).astype(np.float32)


def extract_token_maps(
    backbone: Any,
    images: Any,
    *,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Patch-token maps of each slice, channels last, for :func:`emlib.diagnostics.patch_pca_rgb`.

    Calls ``backbone(x) -> (B, C, h, w)``. Mind the memory: a 1022 × 756 slice
    through a ViT-L/14 gives 73 × 54 × 1024 floats (16 MB).

    Parameters
    ----------
    backbone, images, normalise, batch_size, device, progress
        As in :func:`extract_embeddings`; all slices must give the same grid.

    Returns
    -------
    tokens : ndarray of shape (Z, h, w, C), dtype float32
    """
    out = _run_backbone(backbone, backbone, images, normalise, batch_size, device, progress, "token maps")
    for o in out:
        if o.ndim != 4:
            raise ShapeError(f"backbone(x) returned shape {o.shape}; make it return (B, C, h, w)")
    grids = {o.shape[1:] for o in out}
    if len(grids) > 1:
        raise ShapeError(f"slices gave token maps of shapes {sorted(grids)}; pass slices of one size")
    return np.concatenate(out).transpose(0, 2, 3, 1).astype(np.float32)
