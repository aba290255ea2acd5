"""Tests of emlib.models.lora: which modules get adapters, counts, freezing, training, save/load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from emlib.errors import ConfigError, WeightsError
from emlib.models.backbones import Backbone, create_backbone
from emlib.models.heads import SegHeadDeconv, SegmentationModel
from emlib.models.lora import (
    LoraSettings,
    apply_lora,
    check_lora_rank,
    count_parameters,
    load_adapter,
    lora_state_dict,
    save_adapter,
)

torch.set_num_threads(1)

# r=16 on every block's fused qkv (d -> 3d) and attention proj (d -> d): 16 * (4d + 2d) per block
EXPECTED_TRAINABLE = {
    "dinov2_vits14": 12 * (16 * (384 + 1152) + 16 * (384 + 384)),  # 442,368
    "dinov3_vits16": 12 * (16 * (384 + 1152) + 16 * (384 + 384)),
    "openclip_vitb16": 12 * (16 * (768 + 2304) + 16 * (768 + 768)),  # 884,736
}


def _fresh(name: str, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return create_backbone(name, pretrained=False).eval()


def _base_state(bb: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bb.model.state_dict().items() if "lora_" not in k}


def _x(bb: Backbone, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 2 * bb.patch_size, 3 * bb.patch_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(EXPECTED_TRAINABLE))
def test_trainable_count_and_frozen_base(name):
    bb = _fresh(name)
    total_before = count_parameters(bb)["total"]
    apply_lora(bb, LoraSettings(rank=16, alpha=32))
    counts = count_parameters(bb)
    assert counts["trainable"] == EXPECTED_TRAINABLE[name]
    assert counts["total"] == total_before + EXPECTED_TRAINABLE[name]
    for pname, p in bb.named_parameters():
        assert p.requires_grad == ("lora_" in pname), pname
    assert bb.lora_settings == LoraSettings()


def test_dinov2_vits14_count_is_442368():
    bb = apply_lora(_fresh("dinov2_vits14"))
    assert count_parameters(bb)["trainable"] == 442_368


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov3_vits16"])
def test_only_attention_qkv_and_proj_of_every_block_are_wrapped(name):
    bb = apply_lora(_fresh(name))
    wrapped = sorted(
        n for n, m in bb.model.named_modules() if isinstance(getattr(m, "lora_A", None), nn.ModuleDict)
    )
    assert wrapped == sorted(f"blocks.{i}.attn.{t}" for i in range(12) for t in ("qkv", "proj"))
    assert not any("patch_embed" in n for n, _ in bb.named_parameters() if "lora_" in n)
    assert isinstance(bb.model.patch_embed.proj, nn.Conv2d)  # not replaced by a LoRA layer


def test_naive_suffix_targets_would_wrap_the_patch_embedding():
    """The peft pitfall apply_lora avoids: suffix 'proj' also matches patch_embed.proj."""
    from peft import LoraConfig, inject_adapter_in_model

    bb = _fresh("dinov2_vits14")
    inject_adapter_in_model(LoraConfig(r=16, lora_alpha=32, target_modules=["qkv", "proj"]), bb.model)
    assert count_parameters(bb)["trainable"] == 457_920 != 442_368


def test_openclip_adapters_live_on_attention_weights():
    from torch.nn.utils import parametrize

    bb = apply_lora(_fresh("openclip_vitb16"))
    for block in bb.model.transformer.resblocks:
        assert isinstance(block.attn, nn.MultiheadAttention)  # the module itself is untouched
        assert parametrize.is_parametrized(block.attn, "in_proj_weight")
        assert parametrize.is_parametrized(block.attn.out_proj, "weight")
        assert not parametrize.is_parametrized(block.mlp.c_fc)
    assert not parametrize.is_parametrized(bb.model.conv1)


@pytest.mark.parametrize("name", ["dinov2_vits14", "openclip_vitb16"])
def test_lora_starts_as_identity_with_scale_alpha_over_rank(name):
    bb = _fresh(name)
    x = _x(bb)
    with torch.no_grad():
        before = bb(x)
        apply_lora(bb, LoraSettings(rank=4, alpha=8))
        after = bb(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)  # B is zero at init
    assert bb.lora_settings.scale == 2.0
    lora_b = [v for k, v in lora_state_dict(bb).items() if "lora_B" in k]
    assert lora_b and all(torch.count_nonzero(v) == 0 for v in lora_b)


@pytest.mark.parametrize("name", ["dinov2_vits14", "openclip_vitb16"])
def test_one_step_changes_outputs_and_keeps_base_bit_identical(name):
    bb = apply_lora(_fresh(name))
    base = _base_state(bb)
    model = SegmentationModel(bb, SegHeadDeconv(bb.embed_dim, base_ch=16))
    x = _x(bb)
    with torch.no_grad():
        feats_before = bb(x)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    target = torch.randint(0, 2, (2, x.shape[-2], x.shape[-1]), generator=torch.Generator().manual_seed(2))
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    grads = [p.grad for n, p in bb.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    opt.step()
    model.eval()
    with torch.no_grad():
        feats_after = bb(x)
    assert not torch.allclose(feats_after, feats_before)
    after = {k: v for k, v in bb.model.state_dict().items() if "lora_" not in k}
    assert after.keys() == base.keys()
    for key in base:
        assert torch.equal(after[key], base[key]), key


@pytest.mark.parametrize("name", ["dinov2_vits14", "openclip_vitb16"])
def test_save_load_reproduces_outputs_exactly(name, tmp_path):
    bb = apply_lora(_fresh(name, seed=0), LoraSettings(rank=4, alpha=8))
    with torch.no_grad():  # give the adapters non-trivial values
        for k, p in bb.named_parameters():
            if "lora_" in k:
                p.copy_(torch.randn_like(p) * 0.05)
    x = _x(bb)
    with torch.no_grad():
        ref = bb(x)
    path = save_adapter(bb, tmp_path / "adapters" / "lora.safetensors")
    assert path.is_file()

    fresh = _fresh(name, seed=0)  # same base weights, no adapters yet
    with torch.no_grad():
        assert not torch.allclose(fresh(x), ref)
    load_adapter(fresh, path)
    assert fresh.lora_settings == LoraSettings(rank=4, alpha=8)
    with torch.no_grad():
        assert torch.equal(fresh(x), ref)

    # loading into a backbone that already has adapters with the same settings also works
    other = apply_lora(_fresh(name, seed=0), LoraSettings(rank=4, alpha=8))
    load_adapter(other, path)
    with torch.no_grad():
        assert torch.equal(other(x), ref)


def test_saved_file_holds_only_lora_tensors(tmp_path):
    from safetensors.torch import load_file

    bb = apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=2, alpha=4))
    path = save_adapter(bb, tmp_path / "a.safetensors")
    tensors = load_file(str(path))
    assert len(tensors) == 12 * 2 * 2  # blocks x (qkv, proj) x (A, B)
    assert all("lora_" in k for k in tensors)
    assert sum(t.numel() for t in tensors.values()) == count_parameters(bb)["trainable"]


def test_load_adapter_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_adapter(_fresh("dinov2_vits14"), tmp_path / "missing.safetensors")
    path = save_adapter(apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=2, alpha=4)), tmp_path / "a.safetensors")
    with pytest.raises(WeightsError, match=r"saved for dinov2_vits14, not dinov3_vits16"):
        load_adapter(_fresh("dinov3_vits16"), path)
    with pytest.raises(WeightsError, match="has settings"):
        load_adapter(apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=4, alpha=8)), path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    with pytest.raises(WeightsError, match="is not an emlib LoRA adapter file"):
        load_adapter(_fresh("dinov2_vits14"), junk)


def test_apply_lora_errors():
    bb = apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=2, alpha=4))
    with pytest.raises(ConfigError, match="already has LoRA adapters"):
        apply_lora(bb)
    with pytest.raises(ConfigError, match="no LoRA adapters to save"):
        save_adapter(_fresh("dinov2_vits14"), "x.safetensors")
    with pytest.raises(ConfigError, match="expects an emlib Backbone"):
        apply_lora(nn.Linear(2, 2))
    clip = _fresh("openclip_vitb16")
    with pytest.raises(ConfigError, match=r"use LoraSettings\(dropout=0.0\)"):
        apply_lora(clip, LoraSettings(dropout=0.1))
    with pytest.raises(ConfigError, match="wraps qkv and proj together"):
        apply_lora(clip, LoraSettings(targets=("attn.qkv",)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, r"rank=0 must be in \[1, 4096\]"),
        ({"rank": 10**9}, r"rank=1000000000 must be in \[1, 4096\]"),
        ({"alpha": float("inf")}, "alpha=inf must be a finite number"),
        ({"alpha": 0}, "alpha=0 must be positive"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        ({"targets": ("proj",)}, "targets .* are not allowed"),
        ({"targets": ()}, "targets .* are not allowed"),
    ],
)
def test_bad_settings_raise(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LoraSettings(**kwargs)


def test_mlp_targets_optional():
    bb = apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=2, alpha=4, targets=("attn.qkv", "mlp.fc1")))
    # qkv: 2*(384+1152); fc1: 2*(384+1536)
    assert count_parameters(bb)["trainable"] == 12 * (2 * (384 + 1152) + 2 * (384 + 1536))


def test_dropout_is_passed_to_peft():
    bb = apply_lora(_fresh("dinov2_vits14"), LoraSettings(rank=2, alpha=4, dropout=0.25))
    qkv = bb.model.blocks[0].attn.qkv
    assert qkv.lora_dropout["default"].p == 0.25
    assert qkv.scaling["default"] == 2.0


def test_lora_reaches_qkv_with_separate_biases(monkeypatch):
    """timm DINOv3 *_qkvb attention calls F.linear(x, qkv.weight) unless told to call qkv(x)."""
    import dataclasses

    from emlib.models import backbones as bbmod

    spec = dataclasses.replace(
        bbmod.get_backbone_spec("dinov3_vits16"), name="dinov3_vits16_qkvb", arch="vit_small_patch16_dinov3_qkvb"
    )
    from emlib.models import registry

    monkeypatch.setitem(registry._BACKBONES, spec.name, spec)
    bb = apply_lora(_fresh(spec.name), LoraSettings(rank=2, alpha=4, targets=("attn.qkv",)))
    assert bb.model.blocks[0].attn.q_bias is not None
    x = _x(bb)
    with torch.no_grad():
        before = bb(x)
        for k, p in bb.named_parameters():
            if "lora_B" in k:
                p.fill_(0.1)
        assert not torch.allclose(bb(x), before)


@pytest.mark.parametrize(("name", "width"), [("dinov2_vits14", 384), ("openclip_vitb16", 768)])
def test_a_rank_wider_than_the_backbone_is_one_sentence_before_anything_is_allocated(name, width):
    """Issue 23, item 10: ``LoraSettings(rank=...)`` past the backbone's width ends in one sentence, not an allocator error."""
    bb = _fresh(name)
    before = _base_state(bb)
    with pytest.raises(ConfigError) as info:
        apply_lora(bb, LoraSettings(rank=width + 1))
    assert str(info.value) == (
        f"LoRA rank={width + 1} is larger than the width {width} of {name}, so its adapters cannot be built (their rank "
        f"is at most {width}); use LoraSettings(rank=N) with N in [1, {width}] (the paper: 16)")
    assert bb.lora_settings is None and not any("lora_" in n for n, _ in bb.named_parameters())
    assert all(torch.equal(before[k], v) for k, v in _base_state(bb).items())  # untouched, still usable
    check_lora_rank(LoraSettings(rank=width), width, name)  # the width itself is allowed
    assert apply_lora(bb, LoraSettings(rank=width)).lora_settings.rank == width
