"""A small 2D U-Net trained from scratch: the supervised baseline without a foundation model.

Ronneberger et al. (2015) layout: ``depth`` encoder stages of two 3x3 convolutions
(BN + ReLU) followed by 2x2 max pooling, a bottleneck, and ``depth`` decoder stages that upsample
with a 2x2 transposed convolution, concatenate the skip connection and apply two 3x3
convolutions. A final 1x1 convolution gives the logits.

It is called like :class:`emlib.models.heads.SegmentationModel`: ``model(x)`` with images
``(B, in_ch, H, W)`` returns logits ``(B, num_classes, H, W)`` at the input size, so the training
loop treats both the same way. With the default ``in_ch=3`` it takes the very tensors the data
layer prepares for the foundation models (grey replicated to RGB, ImageNet normalisation).
"""

from __future__ import annotations

import torch
from torch import nn

from emlib.errors import ConfigError, ShapeError

__all__ = ["UNet2d"]


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class UNet2d(nn.Module):
    """A 2D U-Net for per-pixel classification.

    Parameters
    ----------
    in_ch : int, default=3
        Input channels (1 for raw grey images, 3 for the RGB-replicated tensors of the data layer).
    num_classes : int, default=2
        Output channels (background, foreground).
    base_ch : int, default=16
        Channels of the first stage; stage ``i`` has ``base_ch * 2**i``.
    depth : int, default=3
        Number of 2x poolings; ``H`` and ``W`` must be multiples of ``2**depth``.

    Examples
    --------
    >>> UNet2d(base_ch=4, depth=2)(torch.zeros(1, 3, 32, 48)).shape
    torch.Size([1, 2, 32, 48])
    """

    def __init__(
        self, in_ch: int = 3, num_classes: int = 2, base_ch: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        for label, value in [
            ("in_ch", in_ch),
            ("num_classes", num_classes),
            ("base_ch", base_ch),
            ("depth", depth),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"UNet2d needs {label} to be a positive integer, got {value!r}.")
        self.in_ch = in_ch
        self.num_classes = num_classes
        self.base_ch = base_ch
        self.depth = depth
        widths = [base_ch * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [_double_conv(in_ch if i == 0 else widths[i - 1], widths[i]) for i in range(depth)]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(widths[depth - 1], widths[depth])
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2)
             for i in reversed(range(depth))]
        )
        self.decoders = nn.ModuleList(
            [_double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth))]
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input size.

        Parameters
        ----------
        x : Tensor of shape (B, in_ch, H, W), float
            ``H`` and ``W`` multiples of ``2**depth``.

        Returns
        -------
        Tensor of shape (B, num_classes, H, W)

        Raises
        ------
        ShapeError
            Wrong number of dimensions or channels.
        ConfigError
            ``H`` or ``W`` not a multiple of ``2**depth``.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_ch:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(
                f"UNet2d expects a tensor of shape (B, {self.in_ch}, H, W), got {shape}; "
                f"add a batch axis or build UNet2d(in_ch=...) to match."
            )
        m = 2**self.depth
        h, w = x.shape[-2:]
        if h % m or w % m:
            raise ConfigError(
                f"input {h}x{w} is not a multiple of {m} (2**depth, depth={self.depth}) for UNet2d; "
                f"crop or pad to e.g. {max(m, h // m * m)}x{max(m, w // m * m)}."
            )
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.classifier(x)
