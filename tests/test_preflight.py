"""Checks before any work (emlib.preflight): configs against the backbone registry, and the inputs' fingerprints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from emlib.config import LoraSettings, RunConfig
from emlib.errors import ConfigError, DataError, WeightsError
from emlib.preflight import check_run, data_inputs_fingerprint, input_fingerprints
from emlib.runfiles import file_sha256
from emlib.testing import LocalHub


@pytest.mark.parametrize(("changes", "message"), [
    ({"backbone": "dinov9_vits14"}, "unknown backbone 'dinov9_vits14'; use one of ["),
    ({"crop": 30}, "crop=30 is not a multiple of the patch size 14 of dinov2_vits14; use e.g. crop=28"),
    ({"backbone": "dinov3_vits16", "crop": 56}, "crop=56 is not a multiple of the patch size 16 of dinov3_vits16; use e.g. crop=48"),
    ({"eval_window": 100}, "eval_window=100 is not a multiple of the patch size 14 of dinov2_vits14; use e.g. eval_window=98"),
    ({"regime": "unet", "crop": 28}, "crop=28 is not a multiple of the U-Net's pooling factor 8; use e.g. crop=24"),
    ({"regime": "lora", "lora": LoraSettings(rank=385)},
     "LoRA rank=385 is larger than the width 384 of dinov2_vits14, so its adapters cannot be built (their rank is at most "
     "384); use LoraSettings(rank=N) with N in [1, 384] (the paper: 16)"),  # issue 23, item 10: before any run starts
    ({"regime": "lora", "backbone": "openclip_vitb16", "crop": 32, "eval_window": 32, "lora": LoraSettings(rank=1024)},
     "LoRA rank=1024 is larger than the width 768 of openclip_vitb16"),
])
def test_check_run_names_the_fix(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_run(RunConfig(pretrained=False, **changes))
    assert str(info.value).startswith(message)


def test_check_run_accepts_the_profiles() -> None:
    from emlib.config import PROFILES, grid_configs

    for name in PROFILES:
        for cfg in grid_configs(name):
            check_run(cfg)


def test_fingerprints_name_the_content_of_data_and_weights(tiny_root, local_hub, tmp_path: Path, monkeypatch) -> None:
    root, _ = tiny_root
    cfg = RunConfig(pretrained=False, crop=28)
    base = input_fingerprints(cfg, root=root)
    assert base["weights"] == "random" and input_fingerprints(cfg.replace(regime="unet"), root=root)["weights"] == "none"
    copy = tmp_path / "copy"
    for name in ("lucchi_pp", "vnc"):
        shutil.copytree(root / name, copy / name)
    assert input_fingerprints(cfg, root=copy) == base  # the same content elsewhere
    (copy / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "mitochondria" / "00.png").write_bytes(
        (root / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "mitochondria" / "01.png").read_bytes())
    assert input_fingerprints(cfg, root=copy)["data"] != base["data"]  # one label replaced

    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(2)}, weights)
    first = input_fingerprints(cfg.replace(pretrained=True, weights=str(weights)), root=root)["weights"]
    torch.save({"a": torch.ones(2)}, weights)
    assert first.startswith("sha256:") and input_fingerprints(
        cfg.replace(pretrained=True, weights=str(weights)), root=root)["weights"] != first
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with local_hub.activate():  # the file pretrained=True will load: Meta's in torch.hub's folder, else the hub's cache
        meta = local_hub.files["dinov2_vits14"]["meta"]
        assert input_fingerprints(cfg.replace(pretrained=True), root=root)["weights"] == f"sha256:{file_sha256(meta)}"
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-hub"))
        assert input_fingerprints(cfg.replace(pretrained=True), root=root)["weights"] == "hub:vit_small_patch14_dinov2.lvd142m"


def test_fingerprints_fail_before_any_work_on_missing_inputs(tiny_root, tmp_path: Path, monkeypatch) -> None:
    root, _ = tiny_root
    with pytest.raises(WeightsError, match="nothing.pth for dinov2_vits14 does not exist"):
        input_fingerprints(RunConfig(weights=str(tmp_path / "nothing.pth")), root=root)
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with LocalHub(tmp_path / "empty-hub", ()).activate(), pytest.raises(WeightsError, match="no pretrained weights for dinov2_vits14"):
        input_fingerprints(RunConfig(), root=root)  # offline and nowhere on this machine: before any work
    with pytest.raises(DataError, match="no Lucchi"):
        input_fingerprints(RunConfig(pretrained=False), root=tmp_path / "empty")


def test_weights_that_fail_their_checks_fail_the_fingerprints_before_any_work(tiny_root, local_hub, tmp_path: Path,
                                                                               monkeypatch) -> None:
    import emlib.models.weightfile as weightfile

    root, _ = tiny_root
    monkeypatch.setattr(weightfile, "SHA256_CACHE", tmp_path / "sha256.json")
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path / "w.pth"))
    (tmp_path / "w.pth").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"^EMLIB_WEIGHTS=.*w\.pth is a file, not the folder of weights files"):
        input_fingerprints(RunConfig(), root=root)
    with pytest.raises(WeightsError, match=r"^EMLIB_WEIGHTS=.*w\.pth is a file"):  # also where nothing is loaded (--plan)
        input_fingerprints(RunConfig(), root=root, expect_weights=False)
    monkeypatch.delenv("EMLIB_WEIGHTS")
    copy = LocalHub(tmp_path / "copy", local_hub.backbones, local_hub.seed)
    shutil.copytree(local_hub.root / "huggingface", copy.root / "huggingface", symlinks=True)
    with copy.activate():  # torch.hub's folder is empty in the copy: the Hugging Face cache's file is the one loaded
        blob = next((Path(copy.env["HF_HUB_CACHE"]) / "models--timm--vit_small_patch14_dinov2.lvd142m" / "blobs").iterdir())
        assert input_fingerprints(RunConfig(), root=root)["weights"] == "hub:vit_small_patch14_dinov2.lvd142m"
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.write_bytes(bytes(data))
        with pytest.raises(WeightsError, match=r"^the Hugging Face cache file .* of dinov2_vits14 is damaged or was replaced"):
            input_fingerprints(RunConfig(), root=root)


def test_the_data_fingerprint_alone_is_the_data_part_of_a_runs_fingerprints(tiny_root, shared_data: Path) -> None:
    root, _ = tiny_root
    cfg = RunConfig(regime="unet", train_set="vnc")
    assert data_inputs_fingerprint(root=root) == input_fingerprints(cfg, root=root)["data"]
    assert data_inputs_fingerprint(root=root) != data_inputs_fingerprint(root=shared_data)
    with pytest.raises(DataError):
        data_inputs_fingerprint(root=root / "nothing here")
