"""Tests of emlib.testing: the local hub is in the upstream formats and layouts, read by the libraries' own code.

The session's hub (tests/conftest.py ``local_hub``) is checked against what the hubs and Meta
publish: the Hugging Face cache tree, Meta's key names (DINOv2 from Meta's class re-implemented in
tests/models/_meta_dinov2.py, DINOv3 from facebookresearch/dinov3), and timm / open_clip /
torch.hub / huggingface_hub loading it offline, unchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from emlib.errors import ConfigError
from emlib.testing import DEFAULT_BACKBONES, main, write_local_hub

from .models._meta_dinov2 import MetaDinoViT

torch.set_num_threads(1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_hugging_face_cache_tree_is_laid_out_as_huggingface_hub_writes_it(local_hub):
    for name in DEFAULT_BACKBONES:
        for fmt in ("timm", "open_clip"):
            if fmt not in local_hub.files[name]:
                continue
            link = local_hub.files[name][fmt]
            repo_dir = link.parents[2]
            commit = (repo_dir / "refs" / "main").read_text()
            assert link.parent == repo_dir / "snapshots" / commit and len(commit) == 40
            assert link.is_symlink() and os.readlink(link) == f"../../blobs/{link.resolve().name}"
            assert link.resolve().parent == repo_dir / "blobs" and link.resolve().name == _sha256(link)
    spec_repos = {p.name for p in Path(local_hub.env["HF_HUB_CACHE"]).iterdir()}
    assert spec_repos == {"models--timm--vit_small_patch14_dinov2.lvd142m", "models--timm--vit_small_patch14_reg4_dinov2.lvd142m",
                          "models--timm--vit_small_patch16_dinov3.lvd1689m", "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K"}


def test_the_libraries_read_the_hub_offline_unchanged(local_hub, monkeypatch):
    import timm
    from huggingface_hub import hf_hub_download
    from torch.hub import load_state_dict_from_url

    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with local_hub.activate():
        path = hf_hub_download("timm/vit_small_patch16_dinov3.lvd1689m", "model.safetensors")
        assert Path(path) == local_hub.files["dinov3_vits16"]["timm"]
        model = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=True, num_classes=0)
        expected = local_hub.model_state_dict("dinov2_vits14")
        assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
        meta = load_state_dict_from_url("https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth")
        assert meta.keys() == local_hub.state_dict("dinov2_vits14", "meta").keys()


def test_open_clip_loads_the_whole_clip_checkpoint_offline(local_hub):
    import open_clip

    with local_hub.activate():
        clip = open_clip.create_model("ViT-B-16", pretrained="laion2b_s34b_b88k")
    written = local_hub.state_dict("openclip_vitb16", "open_clip")
    got = clip.state_dict()
    assert any(not k.startswith("visual.") for k in written)  # the text tower is there too
    assert all(torch.equal(got[k], v) for k, v in written.items())


def test_meta_dinov2_file_has_metas_key_names(local_hub):
    sd = torch.load(local_hub.files["dinov2_vits14"]["meta"], weights_only=True)
    ref = MetaDinoViT(embed_dim=384, depth=12, num_heads=6)
    assert sd.keys() == ref.state_dict().keys() and "mask_token" in sd
    ref.load_state_dict(sd, strict=True)


def test_meta_dinov3_file_has_metas_key_names(local_hub):
    """Names from facebookresearch/dinov3 (vision_transformer.py, layers/): DinoVisionTransformer(n_storage_tokens=4,
    mask_k_bias=True, layerscale_init=1e-5, ffn_layer='mlp'), as dinov3/hub/backbones.py builds dinov3_vits16."""
    path = local_hub.files["dinov3_vits16"]["meta"]
    assert path.name == "dinov3_vits16_pretrain_lvd1689m.pth"  # not the published name (its hash cannot match)
    sd = torch.load(path, weights_only=True)
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.bias_mask", "attn.proj.weight",
             "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
             "mlp.fc2.bias", "ls2.gamma"]
    expected = {"cls_token", "storage_tokens", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
                "rope_embed.periods", "norm.weight", "norm.bias", *(f"blocks.{i}.{k}" for i in range(12) for k in block)}
    assert set(sd) == expected
    assert sd["storage_tokens"].shape == (1, 4, 384) and sd["rope_embed.periods"].shape == (16,)  # D_head // 4
    assert torch.equal(sd["blocks.0.attn.qkv.bias_mask"][384:768], torch.zeros(384))  # the k bias is masked


def test_the_same_seed_writes_the_same_bytes(tmp_path, local_hub):
    one = write_local_hub(tmp_path / "a", ["dinov2_vits14"])
    two = write_local_hub(tmp_path / "b", ["dinov2_vits14"], seed=1)
    assert one.files["dinov2_vits14"]["timm"].resolve().name == local_hub.files["dinov2_vits14"]["timm"].resolve().name
    assert _sha256(one.files["dinov2_vits14"]["meta"]) == _sha256(local_hub.files["dinov2_vits14"]["meta"])
    assert one.files["dinov2_vits14"]["timm"].resolve().name != two.files["dinov2_vits14"]["timm"].resolve().name
    with pytest.raises(ConfigError, match=r"the local hub holds no 'open_clip' file for 'dinov2_vits14'"):
        one.state_dict("dinov2_vits14", "open_clip")


def test_activate_sets_and_restores_the_environment_and_constants(local_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", "/somewhere")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, torch.hub.get_dir())
    with local_hub.activate():
        assert os.environ["HF_HOME"] == local_hub.env["HF_HOME"] and os.environ["HF_HUB_OFFLINE"] == "1"
        assert constants.HF_HUB_CACHE == local_hub.env["HF_HUB_CACHE"] and constants.HF_HUB_OFFLINE is True
        assert torch.hub.get_dir() == str(Path(local_hub.env["TORCH_HOME"]) / "hub")
    assert os.environ["HF_HOME"] == "/somewhere" and "HF_HUB_OFFLINE" not in os.environ
    assert (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, torch.hub.get_dir()) == before


def test_the_command_prints_export_lines(tmp_path, capsys):
    assert main(["write-local-hub", str(tmp_path / "hub"), "dinov2_vits14"]) == 0
    lines = capsys.readouterr().out.splitlines()
    root = (tmp_path / "hub").resolve()
    assert lines == [f"export HF_HOME={root}/huggingface", f"export HF_HUB_CACHE={root}/huggingface/hub",
                     f"export TORCH_HOME={root}/torch", "export HF_HUB_OFFLINE=1"]
    assert main(["write-local-hub", str(tmp_path / "hub"), "dinov9"]) == 2
    assert capsys.readouterr().err.startswith("python -m emlib.testing: error: unknown backbone 'dinov9'")
