"""When training stops: early stopping on the validation loss (the authors' schedule: up to 1000 epochs,
patience 20), and a loss that is no longer finite (:func:`check_loss`), which ends the run as failed.

The decisions are functions of the training history alone (one row per epoch with ``val_loss``),
so a run resumed after an interruption stops at the same epoch and keeps the same best epoch as
an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from emlib.errors import ConfigError

__all__ = ["TrainingDiverged", "best_epoch", "check_loss", "should_stop"]


class TrainingDiverged(ConfigError):
    """The training loss of a run became NaN or infinite: its settings (mostly the learning rate) make it diverge."""


def check_loss(value: float, *, run: str, epoch: int, step: int, lr: float) -> None:
    """Raise :class:`TrainingDiverged` when the loss ``value`` of step ``step`` of epoch ``epoch`` (both from 0) is not finite.

    Examples
    --------
    >>> check_loss(0.4, run="r", epoch=0, step=0, lr=1e-3)
    >>> check_loss(float("nan"), run="r", epoch=1, step=2, lr=0.5)
    Traceback (most recent call last):
    emlib.stopping.TrainingDiverged: training diverged: the loss of run r became nan at epoch 2, step 3 (lr=0.5), ...
    """
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training diverged: the loss of run {run} became {value} at epoch {epoch + 1}, step {step + 1} (lr={lr:g}), "
            "so the run stopped and is marked failed, not done; lower the learning rate (lr, and lora_lr for LoRA; "
            "e.g. a tenth of it) and run again"
        )


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
