"""Validators shared by the diagnostics modules: embedding matrices and per-class sample counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from emlib.errors import ConfigError, ShapeError

__all__ = ["as_embeddings", "check_per_class"]


def as_embeddings(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite float64 embedding matrix of shape (n_samples, n_features).

    Parameters
    ----------
    x : array-like or torch.Tensor
        Embeddings, one row per sample (tensors are detached and moved to the CPU).
    name : str
        What the caller calls ``x``, for the error message.

    Returns
    -------
    ndarray of shape (n_samples, n_features), dtype float64

    Raises
    ------
    ShapeError
        ``x`` is not 2-D.
    ConfigError
        ``x`` holds NaN or infinite values.

    Examples
    --------
    >>> as_embeddings([[1, 2], [3, 4]], "x").dtype
    dtype('float64')
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"{name} has shape {x.shape}; pass embeddings of shape (n_samples, n_features)")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} contains NaN or infinite values; drop those rows before computing diagnostics")
    return x


def check_per_class(y: np.ndarray, classes: np.ndarray, needed: int, what: str, fix: str) -> None:
    """Refuse too few samples of a class.

    Parameters
    ----------
    y : ndarray of int
        Class index of each sample (into ``classes``).
    classes : ndarray
        The class labels.
    needed : int
        Fewest samples every class must have.
    what : str
        The function that needs them, for the error message.
    fix : str
        End of the error sentence: what to do instead.

    Raises
    ------
    ConfigError
        A class has fewer than ``needed`` samples (the message names the class with the fewest).

    Examples
    --------
    >>> check_per_class(np.array([0, 0, 1]), np.array(["a", "b"]), 2, "probe", "pass more")
    Traceback (most recent call last):
    ...
    emlib.errors.ConfigError: probe needs at least 2 samples per class, got 1 for 'b'; pass more
    """
    counts = np.bincount(y, minlength=classes.size)
    if counts.min() < needed:
        worst = classes[int(np.argmin(counts))]
        worst = worst.item() if hasattr(worst, "item") else worst
        raise ConfigError(
            f"{what} needs at least {needed} samples per class, got {int(counts.min())} for {worst!r}; {fix}"
        )
