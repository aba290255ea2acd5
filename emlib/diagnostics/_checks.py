"""Validators shared by the diagnostics modules: embedding matrices and per-class sample counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emlib.errors import ConfigError, ShapeError


def _as_embeddings(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"{name} has shape {x.shape}; pass embeddings of shape (n_samples, n_features)")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} contains NaN or infinite values; drop those rows before computing diagnostics")
    return x


def _check_per_class(y: np.ndarray, classes: np.ndarray, needed: int, what: str, fix: str) -> None:
    counts = np.bincount(y, minlength=classes.size)
    if counts.min() < needed:
        worst = classes[int(np.argmin(counts))]
        worst = worst.item() if hasattr(worst, "item") else worst
        raise ConfigError(
            f"{what} needs at least {needed} samples per class, got {int(counts.min())} for {worst!r}; {fix}"
        )
