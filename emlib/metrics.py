"""Segmentation scores pooled over a whole test set.

The authors' evaluation (``scripts/eval_em_seg.py``, see ``authors-protocol.md`` §5)
sums true positives, false positives and false negatives over **every pixel of
every test image** and only then forms IoU and Dice. It does *not* average
per-image scores. This module does the same: :func:`confusion_counts` counts one
prediction, :class:`PooledCounts` adds counts up over a stack (or over several
stacks, with ``+``), and :func:`segmentation_scores` turns counts into scores.

Foreground is ``label > 0`` for both the prediction and the target, so boolean
masks, {0, 1} label maps and {0, 255} masks all work.

Naming follows scikit-learn: every value returned here is a score (higher is
better); ``1 - iou`` would be a loss.

Empty/empty convention
----------------------
When a class is absent from both the prediction and the target (its union is
empty), IoU and Dice are ``0 / 0``. They are then set to ``zero_division``,
``1.0`` by default: agreeing that "nothing is there" is a perfect answer. The
authors instead divide by ``union + 1e-7``, which gives ``0.0`` for an empty
union; pass ``zero_division=0.0`` to match them. With pooled counts over a real
test set the union is never empty, so the choice only matters for single empty
slices.

Examples
--------
>>> import numpy as np
>>> pred = np.array([[1, 1], [0, 0]], dtype=bool)
>>> target = np.array([[1, 0], [0, 0]], dtype=bool)
>>> scores = segmentation_scores(confusion_counts(pred, target))
>>> round(scores["iou_fg"], 3), round(scores["dice_fg"], 3)
(0.5, 0.667)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Union

import numpy as np

from emlib.errors import ConfigError, ShapeError

try:  # torch is a hard dependency of emlib, but metrics must not need it to import.
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

__all__ = [
    "ConfusionCounts",
    "PooledCounts",
    "confusion_counts",
    "segmentation_scores",
    "foreground_iou_score",
]

ArrayLike = Union[np.ndarray, "torch.Tensor"]


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a binary (foreground vs background) comparison.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives, false positives, false negatives and true negatives,
        counted for the foreground class.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def n_pixels(self) -> int:
        """Total number of pixels counted."""
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        return ConfusionCounts(
            tp=self.tp + other.tp, fp=self.fp + other.fp, fn=self.fn + other.fn, tn=self.tn + other.tn
        )

    def as_dict(self) -> dict[str, int]:
        """Return ``{"tp": ..., "fp": ..., "fn": ..., "tn": ...}``."""
        return asdict(self)


def _to_numpy_foreground(x: Any, name: str) -> np.ndarray:
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == bool:
        return x
    if not (np.issubdtype(x.dtype, np.number)):
        raise ConfigError(f"{name} has dtype {x.dtype}; pass a boolean or integer mask (foreground = value > 0)")
    return x > 0


def confusion_counts(pred: ArrayLike, target: ArrayLike) -> ConfusionCounts:
    """Count TP, FP, FN and TN of a foreground prediction against a target.

    Parameters
    ----------
    pred : ndarray or torch.Tensor of any shape
        Predicted mask or label map; foreground is ``pred > 0`` (or ``True``).
        A single slice (H, W), a stack (Z, H, W) or a batch all work.
    target : ndarray or torch.Tensor of the same shape as ``pred``
        Ground-truth mask or label map; foreground is ``target > 0``.

    Returns
    -------
    counts : ConfusionCounts
        Pixel counts summed over every element.

    Raises
    ------
    ShapeError
        If ``pred`` and ``target`` do not have the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> confusion_counts(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
    """
    p = _to_numpy_foreground(pred, "pred")
    t = _to_numpy_foreground(target, "target")
    if p.shape != t.shape:
        raise ShapeError(
            f"pred has shape {p.shape} but target has shape {t.shape}; "
            "resize the prediction to the mask resolution (or the mask to the prediction's) before scoring"
        )
    tp = int(np.count_nonzero(p & t))
    n_pred = int(np.count_nonzero(p))
    n_true = int(np.count_nonzero(t))
    fp = n_pred - tp
    fn = n_true - tp
    tn = int(p.size) - tp - fp - fn
    return ConfusionCounts(tp=tp, fp=fp, fn=fn, tn=tn)


class PooledCounts:
    """Accumulate confusion counts over many images, the protocol's pooled way.

    Examples
    --------
    >>> import numpy as np
    >>> acc = PooledCounts()
    >>> _ = acc.update(np.array([[1, 0]]), np.array([[1, 0]]))
    >>> _ = acc.update(np.array([[0, 0]]), np.array([[0, 1]]))
    >>> acc.counts, acc.n_updates
    (ConfusionCounts(tp=1, fp=0, fn=1, tn=2), 2)
    >>> acc.compute()["iou_fg"]
    0.5
    """

    def __init__(self, counts: ConfusionCounts | None = None, *, n_updates: int = 0) -> None:
        self.counts = counts if counts is not None else ConfusionCounts()
        self.n_updates = int(n_updates)

    def update(self, pred: ArrayLike, target: ArrayLike) -> PooledCounts:
        """Add the counts of one prediction (any shape) and return ``self``."""
        self.counts = self.counts + confusion_counts(pred, target)
        self.n_updates += 1
        return self

    def __add__(self, other: PooledCounts | ConfusionCounts) -> PooledCounts:
        if isinstance(other, PooledCounts):
            return PooledCounts(self.counts + other.counts, n_updates=self.n_updates + other.n_updates)
        if isinstance(other, ConfusionCounts):
            return PooledCounts(self.counts + other, n_updates=self.n_updates + 1)
        return NotImplemented

    def reset(self) -> None:
        """Forget every count."""
        self.counts = ConfusionCounts()
        self.n_updates = 0

    def compute(self, *, zero_division: float = 1.0) -> dict[str, float]:
        """Scores of the pooled counts; see :func:`segmentation_scores`."""
        return segmentation_scores(self.counts, zero_division=zero_division)

    def __repr__(self) -> str:
        return f"PooledCounts({self.counts!r}, n_updates={self.n_updates})"


def _check_zero_division(zero_division: float) -> float:
    try:
        value = float(zero_division)
    except (TypeError, ValueError):
        raise ConfigError(
            f"zero_division={zero_division!r} is not a number; pass a float in [0, 1] or float('nan')"
        ) from None
    if not (math.isnan(value) or 0.0 <= value <= 1.0):
        raise ConfigError(f"zero_division={zero_division!r} is outside [0, 1]; pass a float in [0, 1] or float('nan')")
    return value


def _ratio(num: int, den: int, zero_division: float) -> float:
    return float(num) / float(den) if den > 0 else zero_division


def segmentation_scores(
    counts: ConfusionCounts | PooledCounts | Mapping[str, int], *, zero_division: float = 1.0
) -> dict[str, float]:
    """IoU and Dice of foreground and background from (pooled) pixel counts.

    Parameters
    ----------
    counts : ConfusionCounts, PooledCounts or mapping with keys tp, fp, fn, tn
        Counts, usually summed over the whole test set.
    zero_division : float, default=1.0
        Value of IoU and Dice of a class whose union is empty (absent from both
        prediction and target). ``1.0`` treats agreeing on "nothing there" as
        perfect; ``0.0`` matches the authors' ``I / (U + 1e-7)``; ``nan``
        leaves the score undefined.

    Returns
    -------
    scores : dict
        ``iou_fg``, ``iou_bg``, ``miou`` (mean of the two), ``dice_fg``,
        ``dice_bg``, ``mean_dice``, ``n_pixels``, ``fg_fraction_target``,
        ``fg_fraction_pred`` and the raw counts ``tp``, ``fp``, ``fn``, ``tn``.

    Notes
    -----
    For class k, IoU_k = TP_k / (TP_k + FP_k + FN_k) and
    Dice_k = 2 TP_k / (2 TP_k + FP_k + FN_k). Background swaps roles:
    TP_bg = TN, FP_bg = FN, FN_bg = FP.

    Examples
    --------
    >>> segmentation_scores(ConfusionCounts(tp=0, fp=0, fn=0, tn=4))["iou_fg"]
    1.0
    >>> segmentation_scores(ConfusionCounts(tp=0, fp=0, fn=0, tn=4), zero_division=0.0)["iou_fg"]
    0.0
    """
    zd = _check_zero_division(zero_division)
    if isinstance(counts, PooledCounts):
        counts = counts.counts
    if not isinstance(counts, ConfusionCounts):
        try:
            counts = ConfusionCounts(**{k: int(counts[k]) for k in ("tp", "fp", "fn", "tn")})
        except (KeyError, TypeError):
            raise ConfigError(
                f"counts of type {type(counts).__name__} lacks tp/fp/fn/tn; pass the result of confusion_counts()"
            ) from None
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    if min(tp, fp, fn, tn) < 0:
        raise ConfigError(f"counts {counts} contain a negative value; pass counts from confusion_counts()")
    n = counts.n_pixels
    iou_fg = _ratio(tp, tp + fp + fn, zd)
    iou_bg = _ratio(tn, tn + fn + fp, zd)
    dice_fg = _ratio(2 * tp, 2 * tp + fp + fn, zd)
    dice_bg = _ratio(2 * tn, 2 * tn + fn + fp, zd)
    return {
        "iou_fg": iou_fg,
        "iou_bg": iou_bg,
        "miou": (iou_fg + iou_bg) / 2.0,
        "dice_fg": dice_fg,
        "dice_bg": dice_bg,
        "mean_dice": (dice_fg + dice_bg) / 2.0,
        "n_pixels": n,
        "fg_fraction_target": _ratio(tp + fn, n, float("nan")),
        "fg_fraction_pred": _ratio(tp + fp, n, float("nan")),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def foreground_iou_score(
    pred: ArrayLike, target: ArrayLike, *, average: str = "pooled", zero_division: float = 1.0
) -> float:
    """Foreground IoU of a stack, pooled (protocol) or averaged per slice.

    Parameters
    ----------
    pred, target : ndarray or torch.Tensor of shape (Z, H, W) or (H, W)
        Predicted and true masks; foreground is ``> 0``.
    average : {'pooled', 'per_image'}, default='pooled'
        ``'pooled'`` sums the counts over all slices first (the authors'
        protocol); ``'per_image'`` is the mean of the slice-wise IoUs, given
        only for comparison.
    zero_division : float, default=1.0
        See :func:`segmentation_scores`.

    Returns
    -------
    iou_fg : float

    Examples
    --------
    >>> import numpy as np
    >>> pred = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    >>> target = np.array([[[1, 1, 1, 0]], [[0, 0, 0, 1]]])
    >>> foreground_iou_score(pred, target), foreground_iou_score(pred, target, average="per_image")
    (0.6, 0.375)
    """
    if average not in ("pooled", "per_image"):
        raise ConfigError(f"average={average!r} is not known; pass 'pooled' or 'per_image'")
    if average == "pooled":
        return segmentation_scores(confusion_counts(pred, target), zero_division=zero_division)["iou_fg"]
    p = _to_numpy_foreground(pred, "pred")
    t = _to_numpy_foreground(target, "target")
    if p.shape != t.shape:
        raise ShapeError(
            f"pred has shape {p.shape} but target has shape {t.shape}; "
            "resize the prediction to the mask resolution (or the mask to the prediction's) before scoring"
        )
    if p.ndim == 2:
        p, t = p[None], t[None]
    values = [segmentation_scores(confusion_counts(a, b), zero_division=zero_division)["iou_fg"] for a, b in zip(p, t)]
    return float(np.mean(values))
