"""Tests of emlib.models.unet: the from-scratch U-Net baseline."""

from __future__ import annotations

import pytest
import torch

from emlib.errors import ConfigError, ShapeError
from emlib.models.unet import UNet2d

torch.set_num_threads(1)


@pytest.mark.parametrize(("in_ch", "depth", "size"), [(3, 3, (32, 48)), (1, 2, (28, 44)), (3, 1, (6, 10))])
def test_output_has_input_size(in_ch, depth, size):
    torch.manual_seed(0)
    net = UNet2d(in_ch=in_ch, num_classes=2, base_ch=4, depth=depth)
    out = net(torch.randn(2, in_ch, *size))
    assert out.shape == (2, 2, *size)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_widths_and_parameter_count():
    net = UNet2d(in_ch=1, num_classes=2, base_ch=4, depth=2)
    assert [enc[0].out_channels for enc in net.encoders] == [4, 8]
    assert net.bottleneck[0].out_channels == 16

    def dc(cin, cout):  # two bias-free 3x3 convs + two BNs
        return cin * cout * 9 + cout * cout * 9 + 4 * cout

    expected = dc(1, 4) + dc(4, 8) + dc(8, 16)
    expected += (16 * 8 * 4 + 8) + dc(16, 8) + (8 * 4 * 4 + 4) + dc(8, 4)  # up + decoder stages
    expected += 4 * 2 + 2  # 1x1 classifier
    assert sum(p.numel() for p in net.parameters()) == expected


def test_skip_connections_are_used():
    torch.manual_seed(0)
    net = UNet2d(in_ch=1, base_ch=4, depth=2).eval()
    x = torch.zeros(1, 1, 16, 16)
    x2 = x.clone()
    x2[..., 5, 5] = 10.0
    with torch.no_grad():
        diff = (net(x2) - net(x)).abs().sum(dim=1)[0]
    assert diff[5, 5] > 0 and diff[0, 15] < diff[5, 5]


def test_size_not_multiple_raises():
    net = UNet2d(base_ch=4, depth=3)
    with pytest.raises(ConfigError, match=r"input 30x40 is not a multiple of 8 \(2\*\*depth, depth=3\) for UNet2d; "
                                          r"crop or pad to e.g. 24x40\."):
        net(torch.zeros(1, 3, 30, 40))


def test_wrong_channels_raise():
    with pytest.raises(ShapeError, match=r"expects a tensor of shape \(B, 1, H, W\), got \(1, 3, 16, 16\)"):
        UNet2d(in_ch=1, base_ch=4)(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ShapeError):
        UNet2d(base_ch=4)(torch.zeros(3, 16, 16))


@pytest.mark.parametrize("kwargs", [{"in_ch": 0}, {"depth": 0}, {"base_ch": 1.5}, {"num_classes": True}])
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ConfigError, match="positive integer"):
        UNet2d(**kwargs)
