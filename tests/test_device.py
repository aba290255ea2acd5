"""Device selection (emlib.device): auto / cpu / cuda names become torch devices, bad ones one sentence."""

from __future__ import annotations

import pytest
import torch

from emlib.device import resolve_device
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
