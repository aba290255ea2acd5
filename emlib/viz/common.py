"""What every figure of the book shares: dataset and overlay colours, titles, and small helpers.

Every ``plot_*`` function of :mod:`emlib.viz` returns a :class:`plotly.graph_objects.Figure` and
takes ``title`` and ``weights_label``. When the weights label says the backbone had **random
weights** (smoke runs without downloaded weights), :func:`format_title` appends
``" (random weights)"``, so a figure can never be mistaken for a result of the pretrained model.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["DATASET_COLORS", "OVERLAY_COLORS", "RANDOM_SUFFIX", "format_title"]


#: Fixed colours per dataset display name, so every figure of the book agrees.
DATASET_COLORS: dict[str, str] = {"Lucchi++": "#0072B2", "VNC": "#D55E00", "VNC stack2": "#CC79A7"}
_FALLBACK = ["#009E73", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999"]

#: Okabe-Ito colours of the overlay categories (colour-blind safe).
OVERLAY_COLORS: dict[str, str] = {
    "TP": "#009E73",
    "FP": "#D55E00",
    "FN": "#56B4E9",
    "mask": "#E69F00",
    "prediction": "#CC79A7",
}

#: What figure titles of random-weight models end with.
RANDOM_SUFFIX = "(random weights)"


def format_title(title: str, weights_label: str | None) -> str:
    """Append ``" (random weights)"`` to ``title`` when ``weights_label`` says so.

    Examples
    --------
    >>> format_title("PCA", "random weights")
    'PCA (random weights)'
    >>> format_title("PCA", "lvd142m")
    'PCA'
    """
    title = title or ""
    if weights_label and "random" in str(weights_label).lower() and RANDOM_SUFFIX not in title:
        return f"{title} {RANDOM_SUFFIX}".strip()
    return title


def _color_map(names: Sequence[str]) -> dict[str, str]:
    out, k = {}, 0
    for n in names:
        if n in DATASET_COLORS:
            out[n] = DATASET_COLORS[n]
        else:
            out[n] = _FALLBACK[k % len(_FALLBACK)]
            k += 1
    return out


def _unique_in_order(values: Sequence[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _to_uint8(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif lo >= 0.0 and hi <= 255.0:
        lo, hi = 0.0, 255.0
    scaled = (a - lo) / (hi - lo if hi > lo else 1.0)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)
