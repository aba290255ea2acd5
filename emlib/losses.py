"""Segmentation losses on 2-class logits: soft Dice (the authors' ``loss: dice``), cross-entropy, both."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emlib.errors import ConfigError, ShapeError

__all__ = ["dice_loss", "segmentation_loss", "LOSSES"]

LOSSES: tuple[str, ...] = ("dice", "ce", "ce_dice")


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of the foreground class, pooled over the batch.

    Parameters
    ----------
    logits : Tensor of shape (B, 2, H, W)
    target : Tensor of shape (B, H, W), values in {0, 1}
    eps : float, default=1.0
        Smoothing added to numerator and denominator (an empty target predicted empty gives 0).

    Returns
    -------
    Tensor, scalar
        ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` with ``p`` the softmax foreground
        probability. The authors' implementation is not public; this is the common form.
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[-2:] != target.shape[-2:]:
        raise ShapeError(f"dice_loss needs logits (B, 2, H, W) and target (B, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}")
    prob = logits.float().softmax(dim=1)[:, 1]
    t = target.float()
    inter = (prob * t).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + t.sum() + eps)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "dice") -> torch.Tensor:
    """``dice``, ``ce`` (cross-entropy) or ``ce_dice`` (their sum) for logits (B, 2, H, W)."""
    if kind not in LOSSES:
        raise ConfigError(f"loss={kind!r} is not allowed; choose one of {list(LOSSES)}")
    if kind == "ce":
        return F.cross_entropy(logits.float(), target.long())
    if kind == "dice":
        return dice_loss(logits, target)
    return F.cross_entropy(logits.float(), target.long()) + dice_loss(logits, target)
