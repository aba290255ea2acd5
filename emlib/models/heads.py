"""Segmentation heads that turn a backbone feature map into per-pixel logits.

:class:`SegHeadDeconv` is the authors' head (``models/head_seg1x1.SegHeadDeconv`` in
``uhlmanngroup/DINO-EM-PEFT``): a 1x1 stem, ``n_ups`` transposed-convolution up-blocks (x2 each)
and a 1x1 classifier, whose logits are then resized bilinearly to the mask size.
:class:`LinearHead` is a 1x1-convolution probe with the same call signature.
:class:`SegmentationModel` chains a backbone and a head so that ``model(x)`` returns logits at
the input size, the same call as :class:`emlib.models.unet.UNet2d`.

Every head is called as ``head(features, out_size)`` with features ``(B, C, h, w)`` and
``out_size = (H, W)`` in pixels, and returns logits ``(B, num_classes, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from emlib.errors import ConfigError, ShapeError

__all__ = [
    "SegHeadDeconv",
    "LinearHead",
    "SegmentationModel",
    "create_head",
    "list_heads",
]


def _check_positive(name: str, value: Any, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner} needs {name} to be a positive integer, got {value!r}.")
    return value


def _check_out_size(out_size: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in out_size)
    except (TypeError, ValueError):
        raise ShapeError(
            f"out_size must be a pair (H, W) of positive integers, got {out_size!r}; "
            "pass e.g. images.shape[-2:]."
        ) from None
    if h < 1 or w < 1:
        raise ShapeError(
            f"out_size must be a pair (H, W) of positive integers, got {out_size!r}; "
            "pass e.g. images.shape[-2:]."
        )
    return h, w


def _check_features(features: torch.Tensor, in_ch: int, owner: str) -> None:
    if not isinstance(features, torch.Tensor) or features.ndim != 4 or features.shape[1] != in_ch:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ShapeError(
            f"{owner} expects features of shape (B, {in_ch}, h, w), got {shape}; "
            "pass the backbone's feature map (Backbone.forward), not its tokens."
        )


def _upsample(logits: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == out_size:
        return logits
    return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)


class _UpBlock(nn.Sequential):
    """ConvTranspose2d(k4, s2, p1) → BN → GELU → Conv3x3(p1) → BN → GELU; doubles h and w."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.GELU(),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.GELU(),
        )


class SegHeadDeconv(nn.Module):
    """The authors' light segmentation head (stem + ``n_ups`` x2 up-blocks + 1x1 classifier).

    Parameters
    ----------
    in_ch : int
        Channels of the input feature map (the backbone's ``embed_dim``).
    num_classes : int, default=2
        Output channels (background, foreground).
    n_ups : int, default=4
        Number of up-blocks; the head's own output is ``2**n_ups`` times the input grid.
    base_ch : int, default=512
        Stem width. Up-block ``i`` has ``max(base_ch // 2**(i+1), 64 * base_ch // 512)``
        channels, i.e. 512 → 256 → 128 → 64 → 64 for the default (the authors' head); smaller
        ``base_ch`` scales every width down for smoke runs (at least 1 channel).

    Notes
    -----
    Layers: Conv1x1(in_ch→base_ch, no bias) → BN → GELU; ``n_ups`` × [ConvTranspose2d(k4, s2, p1,
    no bias) → BN → GELU → Conv3x3(p1, no bias) → BN → GELU]; Conv1x1(→num_classes, bias).
    The logits are resized bilinearly (``align_corners=False``) to ``out_size``.

    Examples
    --------
    >>> head = SegHeadDeconv(384, base_ch=32)
    >>> head(torch.zeros(2, 384, 2, 3), (28, 42)).shape
    torch.Size([2, 2, 28, 42])
    """

    def __init__(
        self, in_ch: int, num_classes: int = 2, n_ups: int = 4, base_ch: int = 512
    ) -> None:
        super().__init__()
        owner = "SegHeadDeconv"
        self.in_ch = _check_positive("in_ch", in_ch, owner)
        self.num_classes = _check_positive("num_classes", num_classes, owner)
        self.n_ups = _check_positive("n_ups", n_ups, owner)
        self.base_ch = _check_positive("base_ch", base_ch, owner)
        floor = max(1, 64 * base_ch // 512)
        widths = [base_ch] + [max(base_ch // 2 ** (i + 1), floor) for i in range(n_ups)]
        self.widths = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, base_ch, kernel_size=1, bias=False),
            nn.BatchNorm2d(base_ch),
            nn.GELU(),
        )
        self.ups = nn.Sequential(*[_UpBlock(widths[i], widths[i + 1]) for i in range(n_ups)])
        self.classifier = nn.Conv2d(widths[-1], num_classes, kernel_size=1, bias=True)

    def forward(self, features: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
        """Logits at ``out_size``.

        Parameters
        ----------
        features : Tensor of shape (B, in_ch, h, w)
            Backbone feature map.
        out_size : pair of ints (H, W)
            Size of the mask, in pixels.

        Returns
        -------
        Tensor of shape (B, num_classes, H, W)
        """
        _check_features(features, self.in_ch, "SegHeadDeconv")
        size = _check_out_size(out_size)
        return _upsample(self.classifier(self.ups(self.stem(features))), size)


class LinearHead(nn.Module):
    """A linear probe: one 1x1 convolution (with bias) on the feature map, resized bilinearly.

    Parameters
    ----------
    in_ch : int
        Channels of the input feature map.
    num_classes : int, default=2

    Examples
    --------
    >>> LinearHead(384)(torch.zeros(1, 384, 2, 3), (28, 42)).shape
    torch.Size([1, 2, 28, 42])
    """

    def __init__(self, in_ch: int, num_classes: int = 2) -> None:
        super().__init__()
        self.in_ch = _check_positive("in_ch", in_ch, "LinearHead")
        self.num_classes = _check_positive("num_classes", num_classes, "LinearHead")
        self.classifier = nn.Conv2d(in_ch, num_classes, kernel_size=1, bias=True)

    def forward(self, features: torch.Tensor, out_size: Sequence[int]) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` from features ``(B, in_ch, h, w)``."""
        _check_features(features, self.in_ch, "LinearHead")
        return _upsample(self.classifier(features), _check_out_size(out_size))


_HEADS: dict[str, Callable[..., nn.Module]] = {
    "deconv": SegHeadDeconv,
    "linear": LinearHead,
}


def list_heads() -> list[str]:
    """Names of the registered head kinds, sorted."""
    return sorted(_HEADS)


def create_head(kind: str, in_ch: int, **kwargs: Any) -> nn.Module:
    """Build a head by name.

    Parameters
    ----------
    kind : {'deconv', 'linear'}
        :class:`SegHeadDeconv` or :class:`LinearHead`.
    in_ch : int
        Channels of the feature map (``backbone.embed_dim``).
    **kwargs
        Passed to the head (``num_classes``, and for ``'deconv'`` also ``n_ups``, ``base_ch``).
        ``None`` values are dropped so the defaults stay in one place.

    Raises
    ------
    ConfigError
        Unknown ``kind`` or an option the head does not take.
    """
    if kind not in _HEADS:
        raise ConfigError(f"unknown head kind {kind!r}; use one of {list_heads()}.")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return _HEADS[kind](in_ch, **kwargs)
    except TypeError as err:
        raise ConfigError(
            f"head kind {kind!r} does not take the options {sorted(kwargs)} ({err}); "
            "remove the unknown ones."
        ) from None


class SegmentationModel(nn.Module):
    """A backbone followed by a head: ``model(x)`` gives logits at the input size.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps images ``(B, 3, H, W)`` to a feature map ``(B, C, h, w)``, e.g. a
        :class:`~emlib.models.backbones.Backbone` (frozen, LoRA or fully trainable).
    head : torch.nn.Module
        Called as ``head(features, (H, W))``, e.g. :class:`SegHeadDeconv`.

    Examples
    --------
    >>> from emlib.models.backbones import create_backbone
    >>> bb = create_backbone("dinov2_vits14", pretrained=False)
    >>> model = SegmentationModel(bb, SegHeadDeconv(bb.embed_dim, base_ch=16))
    >>> model(torch.zeros(1, 3, 28, 42)).shape
    torch.Size([1, 2, 28, 42])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for images ``(B, 3, H, W)``."""
        return self.head(self.backbone(x), tuple(x.shape[-2:]))
