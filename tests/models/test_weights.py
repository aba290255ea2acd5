"""Tests of emlib.models.weights: the spec, and where weights come from (explicit file, $EMLIB_WEIGHTS, hub).

Only random weights are used (no network): the hub loader is replaced where a test needs it.
"""

from __future__ import annotations

import pytest
import torch

from emlib.errors import ConfigError, WeightsError
from emlib.models import weights as wmod
from emlib.models.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone
from emlib.models.weights import BackboneSpec

torch.set_num_threads(1)

def test_bad_spec_values_raise():
    with pytest.raises(ConfigError, match="family='dinov9'"):
        BackboneSpec("x", "dinov9", "a", "t", 14, 384, 12, IMAGENET_MEAN, IMAGENET_STD,
                     "mean_patch", "mit", "f", "u")
    with pytest.raises(ConfigError, match="embedding='max'"):
        BackboneSpec("x", "dinov2", "a", "t", 14, 384, 12, IMAGENET_MEAN, IMAGENET_STD,
                     "max", "mit", "f", "u")

# ---- weights ------------------------------------------------------------------------------

def _assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key

@pytest.mark.parametrize("name", ["dinov2_vits14", "openclip_vitb16"])
def test_local_weights_file_argument_and_env(small_backbones, name, tmp_path, monkeypatch):
    def no_hub(spec):
        raise AssertionError("the hub must not be used when a local file exists")

    monkeypatch.setattr(wmod, "_load_from_hub", no_hub)
    src = small_backbones[name]
    spec = src.spec
    path = tmp_path / "explicit.pth"
    torch.save(src.model.state_dict(), path)

    bb = create_backbone(name, weights=path)
    assert bb.weights_label == f"pretrained ({spec.pretrained_tag}) from {path}"
    _assert_same_tensors(bb.model, src.model)

    env_dir = tmp_path / "weights"
    env_dir.mkdir()
    torch.save(src.model.state_dict(), env_dir / spec.weights_filename)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(env_dir))
    bb = create_backbone(name)
    assert bb.weights_label == f"pretrained ({spec.pretrained_tag}) from {env_dir / spec.weights_filename}"
    _assert_same_tensors(bb.model, src.model)

def test_whole_clip_checkpoint_keeps_the_visual_tower(small_backbones, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    src = small_backbones["openclip_vitb16"]
    sd = {f"visual.{k}": v.contiguous() for k, v in src.model.state_dict().items()}
    sd["text_projection"] = torch.zeros(4, 4)  # the text tower is ignored
    path = tmp_path / "open_clip_model.safetensors"
    save_file(sd, str(path))
    bb = create_backbone("openclip_vitb16", weights=path)
    _assert_same_tensors(bb.model, src.model)

def test_weights_file_that_does_not_fit_raises(small_backbones, tmp_path):
    path = tmp_path / "dinov3.pth"
    torch.save(small_backbones["dinov3_vits16"].model.state_dict(), path)
    with pytest.raises(WeightsError, match=rf"weights file {path} does not fit dinov2_vits14"):
        create_backbone("dinov2_vits14", weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="does not fit openclip_vitb16"):
        create_backbone("openclip_vitb16", weights=garbage)

def test_missing_explicit_weights_file_raises(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=rf"weights file {missing} for dinov2_vits14 does not exist"):
        create_backbone("dinov2_vits14", weights=missing)

def test_hub_failure_names_the_file_and_the_fix(tmp_path, monkeypatch):
    def offline(spec):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(wmod, "_load_from_hub", offline)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))  # empty folder
    with pytest.raises(WeightsError) as info:
        create_backbone("dinov2_vitl14")
    msg = str(info.value)
    assert msg.startswith(
        f"could not load pretrained weights for dinov2_vitl14: no file at "
        f"{tmp_path / 'dinov2_vitl14_pretrain.pth'} and the hub download of "
        "vit_large_patch14_dinov2.lvd142m failed (OSError: We couldn't connect to 'https://huggingface.co')"
    )
    assert "more detail" not in msg and "\n" not in msg
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth" in msg
    assert msg.endswith(
        "pass weights=PATH or put it in $EMLIB_WEIGHTS/dinov2_vitl14_pretrain.pth, "
        "or use pretrained=False for random weights (tests only)."
    )

    monkeypatch.delenv("EMLIB_WEIGHTS")
    with pytest.raises(WeightsError, match=r"no file at \$EMLIB_WEIGHTS/CLIP-ViT-H-14-laion2B-s32B-b79K.bin "
                                           r"\(\$EMLIB_WEIGHTS is not set\)"):
        create_backbone("openclip_vith14")

def test_hub_success_is_labelled_with_the_tag(monkeypatch):
    calls = []

    def fake_hub(spec):
        calls.append(spec.hub_id)
        return wmod._build_random(spec)

    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    monkeypatch.setattr(wmod, "_load_from_hub", fake_hub)
    bb = create_backbone("dinov3_vits16")
    assert calls == ["vit_small_patch16_dinov3.lvd1689m"]
    assert bb.weights_label == "pretrained (lvd1689m)"
