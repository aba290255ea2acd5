"""emlib.models.posembed: DINOv2 tokens with Meta's positional-embedding interpolation.

The reference is Meta's own model class (``_meta_dinov2.MetaDinoViT``, re-written in the tests from
facebookresearch/dinov2) carrying the same random weights as emlib's timm model, mapped to Meta's
key names. A ViT-S/14 at 98 x 140 (a 7 x 10 grid, downsampled from the 37 x 37 positional grid)
and, with two blocks, at 532 x 588 (38 x 42, upsampled as a 756 x 1022 slice is) keeps it fast.
"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import checkpoint_filter_fn

from emlib.config import PROFILES, RunConfig
from emlib.errors import ConfigError
from emlib.models.backbones import Backbone, create_backbone
from emlib.models.lora import apply_lora
from emlib.models.posembed import meta_interpolate

from ._meta_dinov2 import MetaDinoViT, meta_reference, timm_to_meta_state_dict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vits() -> Backbone:
    """A random ViT-S/14 with weights that make every part count (layer scale 1, strong positions)."""
    torch.manual_seed(0)
    bb = create_backbone("dinov2_vits14", pretrained=False, pos_interpolation="meta").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bb.model.pos_embed.copy_(torch.randn(bb.model.pos_embed.shape, generator=g) * 0.5)
        for name, p in bb.model.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    return bb


@pytest.fixture(scope="module")
def vits_reg() -> Backbone:
    """A random ViT-S/14 with 4 registers (timm's vit_small_patch14_reg4_dinov2), weights as :func:`vits`."""
    torch.manual_seed(0)
    bb = create_backbone("dinov2_vits14_reg", pretrained=False, pos_interpolation="meta").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bb.model.pos_embed.copy_(torch.randn(bb.model.pos_embed.shape, generator=g) * 0.5)
        bb.model.reg_token.copy_(torch.randn(bb.model.reg_token.shape, generator=g))
        for name, p in bb.model.named_parameters():
            if name.endswith(("ls1.gamma", "ls2.gamma")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    return bb


def _image(rows: int, cols: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(2, 3, rows, cols, generator=torch.Generator().manual_seed(seed))


def _shallow(bb: Backbone, depth: int) -> Backbone:
    model = copy.deepcopy(bb.model)
    model.blocks = model.blocks[:depth]
    return Backbone(model, bb.spec, pos_interpolation="meta").eval()


@pytest.mark.parametrize("size, depth", [((98, 140), None), ((532, 588), 2)])
def test_meta_mode_matches_metas_model_class(vits, size, depth):
    bb = vits if depth is None else _shallow(vits, depth)
    ref = meta_reference(bb.model)
    x = _image(*size)
    with torch.no_grad():
        expected = ref.forward_features(x)["x_norm_patchtokens"]
        meta = bb.forward_tokens(x)
        timm = Backbone(bb.model, bb.spec, pos_interpolation="timm").forward_tokens(x)
    assert meta.shape == expected.shape == (2, (size[0] // 14) * (size[1] // 14), 384)
    torch.testing.assert_close(meta, expected, atol=1e-5, rtol=1e-5)
    assert (timm - expected).abs().max() > 1e-2  # timm's own interpolation is another network input


@pytest.mark.parametrize("grid", [(7, 10), (10, 7), (54, 73), (73, 73), (73, 54), (36, 36), (1, 1)])
def test_pos_embed_is_metas_exactly(vits, grid):
    ref = meta_reference(_shallow(vits, 1).model)
    rows, cols = grid[0] * 14, grid[1] * 14
    tokens = torch.zeros(1, 1 + grid[0] * grid[1], 384)
    expected = ref.interpolate_pos_encoding(tokens, rows, cols)
    pos = vits.model.pos_embed
    ours = torch.cat([pos[:, :1], meta_interpolate(pos[:, 1:], grid)], dim=1)
    assert torch.equal(ours, expected)
    theirs = resample_abs_pos_embed(pos, new_size=list(grid), num_prefix_tokens=1)
    assert not torch.allclose(theirs, expected, atol=1e-4)


@pytest.mark.parametrize("size, depth", [((98, 140), 2), ((532, 588), 2)])
def test_register_models_follow_metas_model_class_whose_resize_is_timms(vits_reg, size, depth):
    """Issue 19: Meta builds the register models with interpolate_offset=0.0, interpolate_antialias=True:
    the output size with antialias, which is timm's resize, so both choices give Meta's tokens."""
    bb = _shallow(vits_reg, depth)
    ref = meta_reference(bb.model)
    assert ref.num_register_tokens == 4 and bb.num_prefix_tokens == 5
    x = _image(*size)
    with torch.no_grad():
        expected = ref.forward_features(x)["x_norm_patchtokens"]
        meta = bb.forward_tokens(x)
        timm = Backbone(bb.model, bb.spec, pos_interpolation="timm").forward_tokens(x)
    assert meta.shape == expected.shape == (2, (size[0] // 14) * (size[1] // 14), 384)
    torch.testing.assert_close(meta, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(timm, expected, atol=1e-5, rtol=1e-5)


def test_register_reference_weights_follow_timms_own_conversion(vits_reg):
    model = vits_reg.model
    meta_sd = timm_to_meta_state_dict(model.state_dict())
    assert meta_sd["pos_embed"].shape[1] == model.pos_embed.shape[1] + 1 and "register_tokens" in meta_sd
    back = checkpoint_filter_fn(dict(meta_sd), model)  # folds the class position into the class token
    assert set(back) == set(model.state_dict())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_native_grid_is_not_interpolated(vits):
    pos = vits.model.pos_embed[:, 1:]
    assert meta_interpolate(pos, (37, 37)) is pos
    bb = _shallow(vits, 1)
    x = _image(518, 518)
    with torch.no_grad():
        meta = bb.forward_tokens(x)
        timm = Backbone(bb.model, bb.spec).forward_tokens(x)
    torch.testing.assert_close(meta, timm, atol=1e-6, rtol=1e-6)


def test_reference_weights_follow_timms_own_conversion(vits):
    """timm's checkpoint filter maps the Meta-named dict back to timm's: the reference holds the same weights."""
    model = vits.model
    meta_sd = timm_to_meta_state_dict(model.state_dict())
    assert "mask_token" in meta_sd
    back = checkpoint_filter_fn(dict(meta_sd), model)
    assert set(back) == set(model.state_dict())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    MetaDinoViT(embed_dim=384, depth=12, num_heads=6).load_state_dict(meta_sd, strict=True)


def test_lora_works_in_meta_mode(vits):
    bb = copy.deepcopy(vits)
    x = _image(98, 140)
    with torch.no_grad():
        before = bb.forward_tokens(x)
    apply_lora(bb)
    after = bb.forward_tokens(x)
    torch.testing.assert_close(after, before)  # B starts at zero
    after.sum().backward()
    assert any(p.grad is not None for n, p in bb.named_parameters() if "lora_B" in n)


def test_other_families_ignore_the_choice(small_backbones):
    """DINOv3 has rotary position embeddings and OpenCLIP keeps open_clip's resize: nothing changes."""
    for name, rows, cols in (("dinov3_vits16", 96, 160), ("openclip_vitb16", 96, 160)):
        bb = small_backbones[name]
        x = _image(rows, cols)
        with torch.no_grad():
            a = bb.forward_tokens(x)
            b = Backbone(bb.model, bb.spec, pos_interpolation="meta").forward_tokens(x)
        assert torch.equal(a, b)


def test_choice_is_checked_and_defaults_to_timm():
    assert create_backbone("dinov2_vits14", pretrained=False, device="meta").pos_interpolation == "timm"
    with pytest.raises(ConfigError, match="pos_interpolation='bicubic' is not known"):
        create_backbone("dinov2_vits14", pretrained=False, device="meta", pos_interpolation="bicubic")
    with pytest.raises(ConfigError, match="pos_interpolation"):
        RunConfig(pos_interpolation="bicubic")
    assert "pos_interpolation='meta'" in repr(create_backbone("dinov2_vits14", pretrained=False, device="meta",
                                                              pos_interpolation="meta"))


def test_run_config_field_keeps_old_digests_and_paper_uses_meta():
    assert "pos_interpolation" not in RunConfig().to_dict()
    meta = RunConfig(pos_interpolation="meta")
    assert meta.to_dict()["pos_interpolation"] == "meta" and meta.digest() != RunConfig().digest()
    assert RunConfig.from_dict(meta.to_dict()) == meta
    assert PROFILES["paper"].base.pos_interpolation == "meta"
    assert {p.base.pos_interpolation for n, p in PROFILES.items() if n != "paper"} == {"timm"}
