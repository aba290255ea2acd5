"""Tests of emlib.models.heads: the authors' deconvolution head, the linear probe, the factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emlib.errors import ConfigError, ShapeError
from emlib.models.heads import LinearHead, SegHeadDeconv, SegmentationModel, create_head, list_heads

torch.set_num_threads(1)


def _features(ch: int = 384, h: int = 2, w: int = 3, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, ch, h, w, generator=torch.Generator().manual_seed(0))


def test_deconv_head_layers_follow_the_protocol():
    head = SegHeadDeconv(384)
    assert head.widths == (512, 256, 128, 64, 64)
    stem_conv, stem_bn, stem_act = head.stem
    assert isinstance(stem_conv, nn.Conv2d) and stem_conv.kernel_size == (1, 1) and stem_conv.bias is None
    assert (stem_conv.in_channels, stem_conv.out_channels) == (384, 512)
    assert isinstance(stem_bn, nn.BatchNorm2d) and isinstance(stem_act, nn.GELU)
    assert len(head.ups) == 4
    for block, (cin, cout) in zip(head.ups, [(512, 256), (256, 128), (128, 64), (64, 64)]):
        deconv, bn1, act1, conv, bn2, act2 = block
        assert isinstance(deconv, nn.ConvTranspose2d)
        assert (deconv.in_channels, deconv.out_channels) == (cin, cout)
        assert (deconv.kernel_size, deconv.stride, deconv.padding) == ((4, 4), (2, 2), (1, 1))
        assert deconv.bias is None
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.bias is None and (conv.in_channels, conv.out_channels) == (cout, cout)
        assert isinstance(bn1, nn.BatchNorm2d) and isinstance(bn2, nn.BatchNorm2d)
        assert isinstance(act1, nn.GELU) and isinstance(act2, nn.GELU)
    assert head.classifier.kernel_size == (1, 1) and head.classifier.bias is not None
    assert (head.classifier.in_channels, head.classifier.out_channels) == (64, 2)


def test_deconv_head_parameter_count():
    d = 384
    expected = d * 512 + 2 * 512  # stem conv + BN
    for cin, cout in [(512, 256), (256, 128), (128, 64), (64, 64)]:
        expected += cin * cout * 16 + 2 * cout + cout * cout * 9 + 2 * cout
    expected += 64 * 2 + 2
    assert sum(p.numel() for p in SegHeadDeconv(d).parameters()) == expected == 3_828_866


def test_deconv_head_is_x16_then_bilinear():
    torch.manual_seed(0)
    head = SegHeadDeconv(384, base_ch=32).train()  # batch statistics: spatially varied logits
    feats = _features()
    with torch.no_grad():
        raw = head.classifier(head.ups(head.stem(feats)))
        assert raw.shape == (2, 2, 32, 48)  # 2x3 grid times 2**4
        # at exactly 16x the grid no interpolation happens
        torch.testing.assert_close(head(feats, (32, 48)), raw)
        out = head(feats, (28, 42))
    assert out.shape == (2, 2, 28, 42)
    ref = F.interpolate(raw, size=(28, 42), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(
        out, F.interpolate(raw, size=(28, 42), mode="bilinear", align_corners=True)
    )


def test_small_base_ch_scales_every_width():
    assert SegHeadDeconv(16, base_ch=32).widths == (32, 16, 8, 4, 4)
    assert SegHeadDeconv(16, base_ch=8, n_ups=2).widths == (8, 4, 2)
    head = SegHeadDeconv(16, num_classes=3, n_ups=2, base_ch=8)
    assert head(_features(16), (10, 13)).shape == (2, 3, 10, 13)


def test_linear_head_is_a_1x1_probe():
    torch.manual_seed(0)
    head = LinearHead(384)
    assert sum(p.numel() for p in head.parameters()) == 384 * 2 + 2
    feats = _features()
    with torch.no_grad():
        out = head(feats, (28, 42))
        logits = torch.einsum("bchw,kc->bkhw", feats, head.classifier.weight[:, :, 0, 0])
        logits = logits + head.classifier.bias[None, :, None, None]
    assert out.shape == (2, 2, 28, 42)
    torch.testing.assert_close(out, F.interpolate(logits, (28, 42), mode="bilinear", align_corners=False))


def test_create_head():
    assert list_heads() == ["deconv", "linear"]
    deconv = create_head("deconv", 384, base_ch=16, num_classes=None)
    assert isinstance(deconv, SegHeadDeconv) and deconv.base_ch == 16 and deconv.num_classes == 2
    assert isinstance(create_head("linear", 384, num_classes=3), LinearHead)
    with pytest.raises(ConfigError, match=r"unknown head kind 'mlp'; use one of \['deconv', 'linear'\]"):
        create_head("mlp", 384)
    with pytest.raises(ConfigError, match="does not take the options"):
        create_head("linear", 384, base_ch=16)


@pytest.mark.parametrize("head", [SegHeadDeconv(384, base_ch=16), LinearHead(384)])
def test_heads_reject_wrong_inputs(head):
    with pytest.raises(ShapeError, match=r"features of shape \(B, 384, h, w\), got \(2, 6, 384\)"):
        head(torch.zeros(2, 6, 384), (28, 42))
    with pytest.raises(ShapeError, match=r"features of shape \(B, 384, h, w\)"):
        head(torch.zeros(2, 192, 2, 3), (28, 42))
    with pytest.raises(ShapeError, match="out_size must be a pair"):
        head(torch.zeros(1, 384, 2, 3), (28,))
    with pytest.raises(ShapeError, match="out_size must be a pair"):
        head(torch.zeros(1, 384, 2, 3), (0, 42))


@pytest.mark.parametrize("kwargs", [{"in_ch": 0}, {"in_ch": 8, "n_ups": 0}, {"in_ch": 8, "base_ch": 2.5}])
def test_bad_head_sizes_raise(kwargs):
    with pytest.raises(ConfigError, match="positive integer"):
        SegHeadDeconv(**kwargs)


def test_segmentation_model_end_to_end_gradients():
    from emlib.models.backbones import create_backbone

    torch.manual_seed(0)
    bb = create_backbone("dinov2_vits14", pretrained=False).requires_grad_(False)
    model = SegmentationModel(bb, SegHeadDeconv(bb.embed_dim, base_ch=16))
    x = torch.randn(2, 3, 28, 42)
    logits = model(x)
    assert logits.shape == (2, 2, 28, 42)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    assert all(p.grad is None for p in bb.parameters())
