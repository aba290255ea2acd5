"""Tests of emlib.models.weights: the spec, reading a file by its content, key names of every published format, strict loading.

Files are written here from random tensors (no network); the formats of the hubs themselves are
exercised through the local hub in tests/models/test_hub.py.
"""

from __future__ import annotations

import os
import pickle
import time
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emlib.errors import ConfigError, WeightsError
from emlib.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from emlib.models.registry import get_backbone_spec, list_backbones
from emlib.models.weights import (
    BackboneSpec,
    archive_limit,
    build_random_model,
    checkpoint_format,
    convert_state_dict,
    load_weights_file,
    published_hash,
    read_checkpoint,
    state_dict_mismatch,
)
from emlib.models.weightfile import check_archive
from emlib.testing import clip_shapes, meta_dinov2_state_dict, meta_dinov3_state_dict, model_shapes

from ._meta_dinov2 import MetaDinoViT
from .test_weightfile import zip_bomb

torch.set_num_threads(1)


def _spec(**changes) -> BackboneSpec:
    args = dict(name="x", family="dinov2", arch="a", pretrained_tag="t", patch_size=14, embed_dim=384, depth=12,
                mean=IMAGENET_MEAN, std=IMAGENET_STD, embedding="mean_patch", license="mit")
    return BackboneSpec(**{**args, **changes})


def test_bad_spec_values_raise():
    with pytest.raises(ConfigError, match="family='dinov9'"):
        _spec(family="dinov9")
    with pytest.raises(ConfigError, match="embedding='max'"):
        _spec(embedding="max")
    with pytest.raises(ConfigError, match=r"hub_files=\('model.safetensors',\) and hf_repo=''; give hub_files as a tuple"):
        _spec(hub_files=("model.safetensors",))


def test_published_hash_comes_from_the_publishers_name_only():
    spec = get_backbone_spec("dinov3_vitl16")
    assert published_hash(spec, "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth") == "8aa4cbdd"
    assert published_hash(spec, "dinov3_vitl16_pretrain_lvd1689m.pth") == ""  # another name promises nothing
    assert published_hash(get_backbone_spec("dinov2_vits14"), "dinov2_vits14_pretrain.pth") == ""  # Meta gives none


# ---- what is not a regular file, and archives that would inflate too far (emlib.models.weightfile) --


@pytest.mark.parametrize("where", ["fifo", "/dev/zero", "folder"])
def test_a_fifo_a_device_or_a_folder_is_refused_before_it_is_opened(tmp_path: Path, where: str):
    path = Path(where) if where.startswith("/") else tmp_path / where
    if where == "fifo":
        os.mkfifo(path)  # open() on it would block until a writer comes
    elif where == "folder":
        path.mkdir()
    start = time.monotonic()
    with pytest.raises(WeightsError, match=rf"^weights file {path} for dinov2_vits14 is .*, not a .*; give the path of the "
                                           r"weights file itself\.$"):
        load_weights_file(get_backbone_spec("dinov2_vits14"), path)
    with pytest.raises(WeightsError, match=rf"^weights file {path} is .*; give the path of the weights file itself\.$"):
        read_checkpoint(path)
    assert time.monotonic() - start < 5


def test_archive_limit_is_tied_to_the_backbones_size():
    assert archive_limit(get_backbone_spec("dinov2_vits14")) == 4 * 88_000_000 + 64_000_000
    assert archive_limit(get_backbone_spec("dinov2_vitl14")) == 4 * 1217_000_000 + 64_000_000
    assert archive_limit(_spec()) == 24_000_000_000  # size unknown


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_inflating(tmp_path: Path, monkeypatch):
    bomb = zip_bomb(tmp_path / "bomb.pth", 512 << 20)
    assert bomb.stat().st_size < 2_000_000 and checkpoint_format(bomb) == "torch-zip"
    with zipfile.ZipFile(bomb) as archive:  # a real archive: it does inflate to zeros
        assert archive.open("archive/data/0").read(1000) == bytes(1000)

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    spec = get_backbone_spec("dinov2_vits14")
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_weights_file(spec, bomb)
    assert time.monotonic() - start < 5
    assert str(info.value) == (f"{bomb} is a zip archive whose 1 member would inflate to 0.5 GB, more than the 0.4 GB a "
                               "checkpoint of dinov2_vits14 can need, so it was not opened (it may be a zip bomb); use the "
                               "file the hub or the publisher serves.")
    assert checkpoint_format(bomb) == "torch-zip"  # within what a ViT-L checkpoint can need:
    check_archive(bomb, archive_limit(get_backbone_spec("dinov2_vitl14")), backbone="dinov2_vitl14")


# ---- reading by content ----------------------------------------------------------------------


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(3, 4, generator=gen), "b": torch.randn(5, generator=gen)}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("suffix", [".pth", ".bin", ".safetensors", ""])
def test_the_format_is_judged_by_content_whatever_the_suffix(tmp_path: Path, suffix: str):
    sd = _tensors()
    safe, zipped, legacy = tmp_path / f"s{suffix}", tmp_path / f"z{suffix}", tmp_path / f"l{suffix}"
    save_file(sd, str(safe))
    torch.save(sd, zipped)
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    assert [checkpoint_format(p) for p in (safe, zipped, legacy)] == ["safetensors", "torch-zip", "torch-legacy"]
    for path in (safe, zipped, legacy):
        assert _equal(read_checkpoint(path), sd), path


@pytest.mark.parametrize("container", ["state_dict", "model", "module", "teacher"])
def test_containers_and_prefixes_are_unwrapped(tmp_path: Path, container: str):
    sd = _tensors()
    path = tmp_path / "ckpt.pth"
    torch.save({container: {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    assert _equal(read_checkpoint(path), sd)
    torch.save({"teacher": {**{f"backbone.{k}": v for k, v in sd.items()}, "dino_head.w": torch.zeros(2)}}, path)
    assert _equal(read_checkpoint(path), sd)  # a DINO training checkpoint: the backbone, not the heads


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path: Path):
    marker = tmp_path / "code-ran"
    _Payload.marker = str(marker)
    zipped = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, zipped)  # a torch zip whose pickle calls Path.touch
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"x": _Payload()}))  # a bare pickle: not even a torch file
    with pytest.raises(WeightsError, match=r"evil\.pth is a torch file that torch\.load\(weights_only=True\) refuses .*; "
                                           r"it was not unpickled, since it may run code"):
        read_checkpoint(zipped)
    with pytest.raises(WeightsError, match=r"evil\.pkl is neither a safetensors file nor a torch checkpoint \(judged by its "
                                           r"content, not its name\); download the file again"):
        read_checkpoint(raw)
    assert not marker.exists()


def test_damaged_or_empty_files_are_one_sentence(tmp_path: Path):
    damaged = tmp_path / "model.safetensors"
    save_file(_tensors(), str(damaged))
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(WeightsError, match=r"model\.safetensors is a damaged safetensors file \(.*\); download it again"):
        read_checkpoint(damaged)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(WeightsError, match=r"empty\.pth holds no state dict of tensors"):
        read_checkpoint(empty)


# ---- key names and strict loading ------------------------------------------------------------


def test_meta_dinov2_names_convert_to_timm_names(small_backbones):
    src = small_backbones["dinov2_vits14"].model
    meta = MetaDinoViT(embed_dim=384, depth=12, num_heads=6)
    meta.load_state_dict({**src.state_dict(), "mask_token": torch.randn(1, 384)}, strict=True)  # Meta's own class
    spec = get_backbone_spec("dinov2_vits14")
    converted = convert_state_dict(spec, src, meta.state_dict())
    assert _equal(converted, src.state_dict())  # mask_token dropped, every other name kept


def test_whole_clip_and_vision_tower_dicts_keep_the_visual_tower(small_backbones, tmp_path: Path):
    src = small_backbones["openclip_vitb16"].model
    spec = get_backbone_spec("openclip_vitb16")
    whole = {f"visual.{k}": v for k, v in src.state_dict().items()}
    whole.update({"token_embedding.weight": torch.zeros(8, 4), "text_projection": torch.zeros(4, 4), "logit_scale": torch.ones(())})
    assert _equal(convert_state_dict(spec, src, whole), src.state_dict())
    assert _equal(convert_state_dict(spec, src, src.state_dict()), src.state_dict())
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in whole.items()}, str(path))
    assert _equal(load_weights_file(spec, path).state_dict(), src.state_dict())


def test_a_file_of_another_backbone_is_one_sentence_naming_the_keys(small_backbones, tmp_path: Path):
    path = tmp_path / "dinov3.pth"
    torch.save(small_backbones["dinov3_vits16"].model.state_dict(), path)
    with pytest.raises(WeightsError) as info:
        load_weights_file(get_backbone_spec("dinov2_vits14"), path)
    msg = str(info.value)
    assert msg.startswith(f"weights file {path} does not fit dinov2_vits14 (vit_small_patch14_dinov2.lvd142m): missing pos_embed")
    assert "unexpected reg_token" in msg and "\n" not in msg
    assert msg.endswith("use a file of timm/vit_small_patch14_dinov2.lvd142m (model.safetensors, pytorch_model.bin) or "
                        "Meta's dinov2_vits14_pretrain.pth for this backbone.")
    wrong_shape = {k: v[..., :1] if k == "norm.weight" else v for k, v in small_backbones["dinov2_vits14"].model.state_dict().items()}
    torch.save(wrong_shape, path)
    with pytest.raises(WeightsError, match=r"shape of norm\.weight \(1,\) vs \(384,\)"):
        load_weights_file(get_backbone_spec("dinov2_vits14"), path)


def test_a_meta_dinov3_file_with_biases_timm_would_drop_is_refused(local_hub, tmp_path: Path):
    sd = local_hub.state_dict("dinov3_vits16", "meta")
    spec = get_backbone_spec("dinov3_vits16")
    path = tmp_path / "dinov3.pth"
    sd["blocks.3.attn.qkv.bias"] = sd["blocks.3.attn.qkv.bias"].clone()
    sd["blocks.3.attn.qkv.bias"][384:768] = 1.0  # the k part is masked by Meta's LinearKMaskedBias: harmless
    torch.save(sd, path)
    load_weights_file(spec, path)
    sd["blocks.3.attn.qkv.bias"][0] = 0.5  # a q bias: timm's model has no place for it
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"blocks\.3\.attn\.qkv\.bias of this Meta DINOv3 checkpoint is not zero, but "
                                           r"timm's vit_small_patch16_dinov3 of dinov3_vits16 has no q/v biases"):
        load_weights_file(spec, path)


@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_takes_every_upstream_key_layout(name: str) -> None:
    """The key names and shapes of each format the publishers serve (timm's, Meta's, a whole CLIP model) map
    exactly onto the architecture, for EVERY registered backbone (ViT-g and ViT-H included), on the meta device:
    no tensor is materialised. Values are compared exactly for the local hub's backbones in tests/models/test_hub.py."""
    spec = get_backbone_spec(name)
    with torch.device("meta"):
        model = build_random_model(spec)
    if spec.library == "open_clip":
        formats = {"open_clip": {k: torch.empty(s, device="meta") for k, s in clip_shapes(spec).items()}}
    else:
        timm_sd = {k: torch.empty(s, device="meta") for k, s in model_shapes(spec).items()}
        meta = meta_dinov2_state_dict(timm_sd) if spec.family == "dinov2" else meta_dinov3_state_dict(timm_sd, spec)
        formats = {"timm": timm_sd, "meta": meta}
        assert set(meta) != set(timm_sd), "Meta's layout must differ from timm's (at least mask_token)"
    for fmt, sd in formats.items():
        assert state_dict_mismatch(model, convert_state_dict(spec, model, sd)) == "", f"{name}: {fmt} layout"
