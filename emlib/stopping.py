"""Early stopping on the validation loss: the authors' schedule (up to 1000 epochs, patience 20).

The decisions are functions of the training history alone (one row per epoch with ``val_loss``),
so a run resumed after an interruption stops at the same epoch and keeps the same best epoch as
an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["best_epoch", "should_stop"]


def best_epoch(history: Sequence[Mapping[str, float]]) -> int | None:
    """Position in ``history`` of the lowest ``val_loss`` (the first on ties); None without validation.

    Examples
    --------
    >>> best_epoch([{"val_loss": 0.5}, {"val_loss": 0.3}, {"val_loss": 0.3}, {"val_loss": 0.4}])
    1
    >>> best_epoch([{"loss": 0.5}]) is None
    True
    """
    losses = [row.get("val_loss") for row in history]
    scored = [(loss, i) for i, loss in enumerate(losses) if loss is not None and not math.isnan(loss)]
    return min(scored)[1] if scored else None


def should_stop(history: Sequence[Mapping[str, float]], patience: int | None) -> bool:
    """True once ``patience`` epochs have passed without a lower validation loss than the best one.

    Examples
    --------
    >>> rows = [{"val_loss": v} for v in (0.5, 0.4, 0.45, 0.41)]
    >>> should_stop(rows, 2), should_stop(rows, 3), should_stop(rows, None)
    (True, False, False)
    """
    best = best_epoch(history)
    if patience is None or best is None:
        return False
    return len(history) - 1 - best >= patience
