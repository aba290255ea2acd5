"""Tests of emlib.models.backbones: registry, shapes, patch grid, embeddings and the factory.

Only random weights are used (no network). Large models are built on the ``meta`` device, which
gives shapes and parameter counts without allocating memory. Weight loading is tested in
test_weights.py.
"""

from __future__ import annotations

import pytest
import torch

from emlib.errors import ConfigError, ShapeError
from emlib.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_WEIGHTS_LABEL,
    Backbone,
    BackboneSpec,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)

from ..conftest import SMALL_BACKBONES

torch.set_num_threads(1)

SMALL = list(SMALL_BACKBONES)

EXPECTED = {
    "dinov2_vits14": ("dinov2", 14, 384, 12, 1, 22.1e6),
    "dinov2_vitb14": ("dinov2", 14, 768, 12, 1, 86.6e6),
    "dinov2_vitl14": ("dinov2", 14, 1024, 24, 1, 304e6),
    "dinov2_vitg14": ("dinov2", 14, 1536, 40, 1, 1136e6),
    "dinov2_vits14_reg": ("dinov2", 14, 384, 12, 5, 22.1e6),
    "dinov2_vitb14_reg": ("dinov2", 14, 768, 12, 5, 86.6e6),
    "dinov2_vitl14_reg": ("dinov2", 14, 1024, 24, 5, 304e6),
    "dinov2_vitg14_reg": ("dinov2", 14, 1536, 40, 5, 1136e6),
    "dinov3_vits16": ("dinov3", 16, 384, 12, 5, 21.6e6),
    "dinov3_vitb16": ("dinov3", 16, 768, 12, 5, 85.6e6),
    "dinov3_vitl16": ("dinov3", 16, 1024, 24, 5, 303e6),
    "openclip_vitb16": ("openclip", 16, 768, 12, 1, 86.2e6),
    "openclip_vitl14": ("openclip", 14, 1024, 24, 1, 304e6),
    "openclip_vith14": ("openclip", 14, 1280, 32, 1, 632e6),
}

def _image(bb: Backbone, rows: int = 2, cols: int = 3, batch: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, rows * bb.patch_size, cols * bb.patch_size, generator=g)

# ---- registry ------------------------------------------------------------------------------

def test_registry_holds_the_study_backbones():
    assert list_backbones() == sorted(EXPECTED)

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_fields(name):
    family, patch, dim, depth, _, _ = EXPECTED[name]
    spec = get_backbone_spec(name)
    assert (spec.name, spec.family, spec.patch_size, spec.embed_dim, spec.depth) == (
        name, family, patch, dim, depth
    )
    # the authors' `preset: em`: ImageNet statistics for every backbone, OpenCLIP included
    assert spec.mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert spec.std == IMAGENET_STD == (0.229, 0.224, 0.225)
    assert spec.embedding == ("cls" if family == "openclip" else "mean_patch")
    assert spec.hf_repo and spec.hub_files and spec.weights_url and spec.license and spec.size_mb > 0
    assert bool(spec.weights_filename) == (family != "openclip")  # Meta publishes its own files; LAION only the hub's
    assert spec.gated == (family == "dinov3")

def test_timm_and_open_clip_know_the_registered_names():
    import open_clip
    import timm

    pretrained = set(timm.list_models(pretrained=True))
    for name in list_backbones():
        spec = get_backbone_spec(name)
        if spec.library == "timm":
            assert spec.hub_id in pretrained, spec.hub_id
        else:
            assert spec.pretrained_tag in open_clip.list_pretrained_tags_by_model(spec.arch)
    assert get_backbone_spec("openclip_vitl14").pretrained_tag == "laion2b_s32b_b82k"
    assert get_backbone_spec("openclip_vith14").pretrained_tag == "laion2b_s32b_b79k"
    assert get_backbone_spec("dinov3_vitl16").weights_filename == (
        "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"
    )

def test_unknown_backbone_lists_registered_names():
    with pytest.raises(ConfigError, match=r"unknown backbone 'dinov2_vitx14'; use one of \[.*dinov2_vits14"):
        create_backbone("dinov2_vitx14", pretrained=False)
    with pytest.raises(ConfigError, match="unknown backbone"):
        get_backbone_spec("resnet50")

def test_register_backbone_adds_and_warns_on_overwrite(monkeypatch):
    from emlib.models import registry

    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))
    spec = BackboneSpec(
        name="my_dinov2_vits14_reg", family="dinov2", arch="vit_small_patch14_reg4_dinov2",
        pretrained_tag="lvd142m", patch_size=14, embed_dim=384, depth=12, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, embedding="mean_patch", license="apache-2.0",
        weights_filename="dinov2_vits14_reg4_pretrain.pth", weights_url="https://example.org/w.pth",
    )
    assert register_backbone(spec) is spec
    assert "my_dinov2_vits14_reg" in list_backbones()
    with pytest.warns(UserWarning, match="Overwriting"):
        register_backbone(spec)
    bb = create_backbone("my_dinov2_vits14_reg", pretrained=False, device="meta")
    assert bb.num_prefix_tokens == 5  # class + 4 registers, removed from the tokens
    assert bb.forward_tokens(torch.empty(1, 3, 28, 42, device="meta")).shape == (1, 6, 384)

# ---- shapes and patch grid -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_backbone_shapes_on_meta(name):
    _, patch, dim, depth, prefix, n_params = EXPECTED[name]
    bb = create_backbone(name, pretrained=False, device="meta")
    assert (bb.patch_size, bb.embed_dim, bb.num_prefix_tokens) == (patch, dim, prefix)
    assert bb.weights_label == RANDOM_WEIGHTS_LABEL == "random weights"
    assert bb.param_count() == pytest.approx(n_params, rel=0.01)
    x = torch.empty(2, 3, 3 * patch, 5 * patch, device="meta")  # non-square, 3x5 grid
    assert bb.grid_size(3 * patch, 5 * patch) == (3, 5)
    assert bb.forward_tokens(x).shape == (2, 15, dim)
    assert bb(x).shape == (2, dim, 3, 5)
    assert bb.embed(x).shape == (2, dim)

@pytest.mark.parametrize("name", SMALL)
def test_small_backbones_real_forward(small_backbones, name):
    bb = small_backbones[name]
    x = _image(bb, rows=2, cols=3)
    with torch.no_grad():
        tokens = bb.forward_tokens(x)
        fmap = bb(x)
    assert tokens.shape == (2, 6, bb.embed_dim)
    assert fmap.shape == (2, bb.embed_dim, 2, 3)
    assert torch.isfinite(fmap).all()
    # the feature map is the token sequence in row-major patch order
    for r in range(2):
        for c in range(3):
            torch.testing.assert_close(fmap[:, :, r, c], tokens[:, r * 3 + c])
    # images are independent of one another in the batch
    with torch.no_grad():
        single = bb(x[1:])
    torch.testing.assert_close(single[0], fmap[1], atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov3_vits16"])
def test_dino_tokens_match_timm_intermediates(small_backbones, name):
    bb = small_backbones[name]
    x = _image(bb, rows=2, cols=3, batch=1)
    with torch.no_grad():
        ref = bb.model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[-1]
        fmap = bb(x)
    assert ref.shape == fmap.shape == (1, bb.embed_dim, 2, 3)
    torch.testing.assert_close(fmap, ref)

@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov3_vits16"])
def test_dino_embedding_is_patch_token_mean(small_backbones, name):
    bb = small_backbones[name]
    x = _image(bb)
    with torch.no_grad():
        emb = bb.embed(x)
        tokens = bb.forward_tokens(x)
        cls = bb.model.forward_features(x)[:, 0]
    assert emb.shape == (2, bb.embed_dim)
    torch.testing.assert_close(emb, tokens.mean(dim=1))
    assert not torch.allclose(emb, cls)

def test_openclip_embedding_is_normed_cls_token(small_backbones):
    bb = small_backbones["openclip_vitb16"]
    x = _image(bb)
    with torch.no_grad():
        emb = bb.embed(x)
        tokens = bb.forward_tokens(x)
    assert emb.shape == (2, 768)
    assert not torch.allclose(emb, tokens.mean(dim=1))
    # the class token went through ln_post: zero mean, unit variance over channels (LN init)
    torch.testing.assert_close(emb.mean(dim=1), torch.zeros(2), atol=1e-4, rtol=0)

def test_openclip_manual_pass_matches_open_clip_at_native_size(small_backbones):
    bb = small_backbones["openclip_vitb16"]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = bb.model(x)  # open_clip's own forward: ln_post(cls) @ proj
        ours = bb.embed(x) @ bb.model.proj
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)

def test_openclip_positional_embedding_is_resized(small_backbones):
    bb = small_backbones["openclip_vitb16"]
    pos = bb._openclip_pos_embed(2, 3)
    assert pos.shape == (1 + 6, 768)
    torch.testing.assert_close(pos[0], bb.model.positional_embedding[0])
    assert bb._openclip_pos_embed(14, 14) is bb.model.positional_embedding

@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("dinov2_vits14", (30, 40), "input 30x40 is not a multiple of the patch size 14 of dinov2_vits14; "
                                    "crop or resize to e.g. 28x28"),
        ("dinov3_vits16", (32, 40), "input 32x40 is not a multiple of the patch size 16 of dinov3_vits16; "
                                    "crop or resize to e.g. 32x32"),
        ("openclip_vitb16", (8, 48), "input 8x48 is not a multiple of the patch size 16 of openclip_vitb16; "
                                     "crop or resize to e.g. 16x48"),
    ],
)
def test_non_multiple_input_raises_config_error(small_backbones, name, size, message):
    bb = small_backbones[name]
    x = torch.zeros(1, 3, *size)
    for call in (bb, bb.forward_tokens, bb.embed):
        with pytest.raises(ConfigError) as info:
            call(x)
        assert str(info.value) == message + "."
    with pytest.raises(ConfigError, match="not a multiple"):
        bb.grid_size(*size)

def test_grid_size_arithmetic(small_backbones):
    bb = small_backbones["dinov2_vits14"]
    assert bb.grid_size(28, 42) == (2, 3)
    assert bb.grid_size(1022, 756) == (73, 54)  # Lucchi++ after the authors' resize
    assert small_backbones["dinov3_vits16"].grid_size(1008, 752) == (63, 47)

@pytest.mark.parametrize("shape", [(3, 28, 42), (1, 1, 28, 42), (1, 4, 28, 42)])
def test_wrong_input_shape_raises_shape_error(small_backbones, shape):
    with pytest.raises(ShapeError, match=r"expects a float tensor of shape \(B, 3, H, W\)"):
        small_backbones["dinov2_vits14"](torch.zeros(shape))

# ---- factory -------------------------------------------------------------------------------

def test_weights_with_pretrained_false_raises():
    with pytest.raises(ConfigError, match="pretrained=False"):
        create_backbone("dinov2_vits14", pretrained=False, weights="x.pth")

def test_param_count_trainable_only():
    bb = create_backbone("dinov2_vits14", pretrained=False, device="meta")
    total = bb.param_count()
    bb.requires_grad_(False)
    assert bb.param_count(trainable_only=True) == 0
    assert bb.param_count() == total
