"""Device selection (emlib.device): auto / cpu / cuda names become torch devices, bad ones one sentence."""

from __future__ import annotations

import pytest
import torch

from emlib.device import describe_device, resolve_device
from emlib.errors import ConfigError


def test_cpu_and_torch_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert isinstance(resolve_device("cpu"), torch.device)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_follows_the_visible_gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_bad_name_is_one_sentence_naming_the_value() -> None:
    with pytest.raises(ConfigError, match=r"device='gpu0' is not a torch device; use 'auto', 'cpu' or 'cuda'"):
        resolve_device("gpu0")


def test_cuda_without_a_gpu_is_one_sentence(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"device='{name}' was asked for but no GPU is visible"):
            resolve_device(name)
    with pytest.raises(ConfigError, match="no GPU is visible"):
        resolve_device(torch.device("cuda"))


def test_mps_or_a_missing_gpu_index_names_the_devices_there_are(monkeypatch) -> None:
    """Issue 23, item 10: ``device='mps'`` off a Mac, or ``cuda:3`` on a one-GPU machine, is one sentence listing the
    devices this machine has (not a RuntimeError when the model is moved)."""
    import emlib.device as device_mod

    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_mod.available_devices() == ["cpu"]
    with pytest.raises(ConfigError) as info:
        resolve_device("mps")
    assert str(info.value) == ("device='mps' was asked for but there is no Apple GPU (MPS) here; the devices here are "
                               "'cpu', so use device='auto' (the best of them) or one of those")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_mod.available_devices() == ["cpu", "cuda:0"]
    with pytest.raises(ConfigError, match=r"^device='cuda:3' was asked for but only 1 GPU\(s\) are visible .*'cpu', 'cuda:0'"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps") and device_mod.available_devices()[-1] == "mps"


def test_grid_on_a_missing_device_fails_before_any_work(tiny, tiny_root, tmp_path, monkeypatch, capsys) -> None:
    """``emlib grid --device mps`` on a machine without it: one sentence, exit 2, in seconds, before any run folder."""
    import time

    import emlib.config as config
    import emlib.device as device_mod
    from emlib.cli import main

    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    prof = config.Profile(name="t", description="test", base=tiny(regime="unet", crop=56, eval_window=56),
                          backbones=("dinov2_vits14",), regimes=("unet",), train_sets=("vnc",))
    monkeypatch.setitem(config.PROFILES, "t", prof)
    root, _ = tiny_root
    out = tmp_path / "runs"
    t0 = time.perf_counter()
    assert main(["grid", "--profile", "t", "--out", str(out), "--root", str(root), "--quiet", "--device", "mps"]) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: device='mps' was asked for but there is no Apple GPU (MPS) here; the devices "
                          "here are 'cpu'") and err.count("\n") == 1
    assert not out.exists()


def test_describe_device_names_the_gpu_or_the_cpu_cores(monkeypatch) -> None:
    monkeypatch.setattr("emlib.device.os.cpu_count", lambda: 16)
    assert describe_device("cpu") == "16-core CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert describe_device("cuda") == describe_device(torch.device("cuda", 0)) == "NVIDIA H100 80GB HBM3 GPU"
    assert describe_device("mps") == "Apple GPU (MPS)"
