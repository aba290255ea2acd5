"""Losses: segmentation losses on 2-class logits, and the loss terms of the paired-training remedies.

* :func:`segmentation_loss` -- soft Dice of the foreground pooled over the batch (``dice``), the
  authors' Dice (``monai_dice``: :func:`monai_dice_loss`), cross-entropy, or CE + Dice (names in
  :data:`LOSSES`).
* :func:`domain_weighted_loss` with :func:`foreground_weights` -- each dataset's loss on its own
  items, weighted by the inverse of its foreground fraction (``fg_reweight``).
* :func:`coral_loss` -- CORAL between two sets of features (``coral_weight``).

Domain ids are positions in :data:`emlib.config.TEST_SETS` (0 Lucchi++, 1 VNC).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emlib.config import LOSSES
from emlib.errors import ConfigError, ShapeError

__all__ = [
    "dice_loss",
    "monai_dice_loss",
    "segmentation_loss",
    "domain_ids",
    "patch_features",
    "coral_loss",
    "foreground_weights",
    "domain_weighted_loss",
]



def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Soft Dice loss of the foreground class, pooled over the batch.

    Parameters
    ----------
    logits : Tensor of shape (B, 2, H, W)
    target : Tensor of shape (B, H, W), values in {0, 1}
    eps : float, default=1.0
        Smoothing added to numerator and denominator (an empty target predicted empty gives 0).
    valid : Tensor of shape (B, H, W), dtype bool, default=None
        Pixels that count (False on the zero padding of a batch of slices of different sizes);
        None counts every pixel.

    Returns
    -------
    Tensor, scalar
        ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` with ``p`` the softmax foreground
        probability. The authors' trainer uses :func:`monai_dice_loss` instead (``loss="monai_dice"``).
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[-2:] != target.shape[-2:]:
        raise ShapeError(f"dice_loss needs logits (B, 2, H, W) and target (B, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}")
    prob = logits.float().softmax(dim=1)[:, 1]
    t = target.float()
    if valid is not None:
        prob, t = prob * valid, t * valid
    inter = (prob * t).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + t.sum() + eps)


def monai_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, smooth_nr: float = 1e-5, smooth_dr: float = 1e-5
) -> torch.Tensor:
    """The Dice loss of the authors' trainer: MONAI's ``DiceLoss(softmax=True, to_onehot_y=True,
    include_background=True)`` at its defaults, written out (tested equal to MONAI to 1e-6).

    ``build_criterion`` in ``src/dino_peft/trainers/seg_trainer.py`` of
    ``uhlmanngroup/MicroscopyFoundationHub`` makes it for ``loss: dice``. Unlike :func:`dice_loss` it
    scores each image and each class (background too) on its own and averages the ``B x 2`` values,
    and every pixel of a padded batch counts: the authors' ``_pad_collate`` pads masks with
    background, so padding is background here too (no ``valid`` mask).

    Parameters
    ----------
    logits : Tensor of shape (B, 2, H, W)
    target : Tensor of shape (B, H, W), values in {0, 1}
    smooth_nr, smooth_dr : float, default=1e-5
        MONAI's smoothing of the numerator and the denominator.

    Returns
    -------
    Tensor, scalar
        ``mean over b, c of 1 - (2 sum(p t) + smooth_nr) / (sum(p) + sum(t) + smooth_dr)``, sums over
        the pixels of image ``b``, ``p`` the softmax probability and ``t`` the one-hot target of class ``c``.
    """
    if logits.ndim != 4 or logits.shape[1] != 2 or logits.shape[-2:] != target.shape[-2:]:
        raise ShapeError(f"monai_dice_loss needs logits (B, 2, H, W) and target (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    prob = logits.float().softmax(dim=1)
    onehot = F.one_hot(target.long(), num_classes=2).permute(0, 3, 1, 2).to(prob.dtype)
    inter = (prob * onehot).sum(dim=(2, 3))
    denom = prob.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3))
    return (1.0 - (2.0 * inter + smooth_nr) / (denom + smooth_dr)).mean()


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return F.cross_entropy(logits.float(), target.long())
    per_pixel = F.cross_entropy(logits.float(), target.long(), reduction="none")
    return per_pixel[valid].mean()


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str = "dice", *, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """``dice``, ``ce`` (cross-entropy) or ``ce_dice`` (their sum) for logits (B, 2, H, W).

    ``valid`` (B, H, W) keeps padded pixels out (None: every pixel counts); ``monai_dice`` (the
    authors' loss) counts them as background, as the authors' padded batches do.
    """
    if kind not in LOSSES:
        raise ConfigError(f"loss={kind!r} is not allowed; choose one of {list(LOSSES)}")
    if kind == "ce":
        return _cross_entropy(logits, target, valid)
    if kind == "dice":
        return dice_loss(logits, target, valid=valid)
    if kind == "monai_dice":
        return monai_dice_loss(logits, target)
    return _cross_entropy(logits, target, valid) + dice_loss(logits, target, valid=valid)


def domain_ids(domain: int | Sequence[int] | torch.Tensor, batch: int, num_domains: int, device: torch.device) -> torch.Tensor:
    """Domain ids as a (B,) long tensor: an int is repeated, ids are checked against ``num_domains``."""
    d = torch.as_tensor(domain, dtype=torch.long, device=device)
    if d.ndim == 0:
        d = d.expand(batch)
    if d.shape != (batch,):
        raise ShapeError(f"domain must be an int or hold one id per item ({batch}), got shape {tuple(d.shape)}")
    if batch and (int(d.min()) < 0 or int(d.max()) >= num_domains):
        raise ConfigError(f"domain ids must lie in 0..{num_domains - 1}, got {sorted(set(d.tolist()))}")
    return d


def patch_features(features: torch.Tensor) -> torch.Tensor:
    """A feature map (B, C, h, w) as a matrix of patch vectors (B*h*w, C); (N, C) passes through."""
    if features.ndim == 4:
        return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    if features.ndim == 2:
        return features
    raise ShapeError(f"features must be (B, C, h, w) or (N, C), got shape {tuple(features.shape)}")


def coral_loss(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """CORAL loss between two sets of features: ``||C_a - C_b||_F^2 / (4 d^2)`` (Sun & Saenko, 2016).

    Parameters
    ----------
    fa, fb : Tensor of shape (N, d) or (B, d, h, w)
        Features of the two domains (feature maps are read as patch vectors); at least 2 each.

    Returns
    -------
    Tensor, scalar
        Zero when the two covariance matrices are equal; differentiable in both inputs.

    Examples
    --------
    >>> x = torch.randn(50, 3)
    >>> round(float(coral_loss(x, x + 2.0)), 8)  # a shift leaves the covariance unchanged
    0.0
    >>> float(coral_loss(x, 2.0 * x)) > 0
    True
    """
    a, b = patch_features(fa).float(), patch_features(fb).float()
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"coral_loss needs the same feature size, got {a.shape[1]} and {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ShapeError(f"coral_loss needs at least 2 vectors per domain, got {a.shape[0]} and {b.shape[0]}")
    d = a.shape[1]

    def cov(x: torch.Tensor) -> torch.Tensor:
        xc = x - x.mean(dim=0, keepdim=True)
        return xc.T @ xc / (x.shape[0] - 1)

    return ((cov(a) - cov(b)) ** 2).sum() / (4.0 * d * d)


def foreground_weights(fractions: Sequence[float]) -> np.ndarray:
    """Loss weight per domain: the inverse of its foreground fraction, normalised to mean 1.

    Examples
    --------
    >>> foreground_weights([0.1, 0.05]).round(4).tolist()
    [0.6667, 1.3333]
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or len(f) == 0 or not np.all((f > 0) & (f <= 1)):
        raise ConfigError(f"foreground fractions must lie in (0, 1], got {f.tolist()}")
    inv = 1.0 / f
    return inv / inv.mean()


def domain_weighted_loss(
    logits: torch.Tensor, target: torch.Tensor, domain: torch.Tensor, weights: Sequence[float] | torch.Tensor, kind: str = "dice",
    *, valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum_d w_d * (n_d / B) * loss(items of domain d)``: each domain's loss on its own items, weighted.

    With all weights 1 and one domain in the batch this equals :func:`segmentation_loss`.
    """
    d = domain_ids(domain, logits.shape[0], len(weights), logits.device)
    total = logits.new_zeros((), dtype=torch.float32)
    for k in d.unique().tolist():
        idx = (d == k).nonzero(as_tuple=True)[0]
        part = segmentation_loss(logits[idx], target[idx], kind, valid=None if valid is None else valid[idx])
        total = total + float(weights[k]) * len(idx) / logits.shape[0] * part
    return total
