"""Tests of emlib.chapters.colab: the GPU line, then the data and the weights, a missing one as a note."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from emlib.errors import ConfigError
from emlib.chapters.colab import colab_backbones, colab_setup, gpu_line
from emlib.testing import LocalHub, write_local_hub


@pytest.fixture(scope="module")
def dinov2_hub(tmp_path_factory: pytest.TempPathFactory) -> LocalHub:
    """A local hub holding only DINOv2 ViT-S/14 (about 2 s to write)."""
    return write_local_hub(tmp_path_factory.mktemp("hub"), ["dinov2_vits14"])


def test_backbones_follow_the_profile() -> None:
    assert colab_backbones("smoke") == []  # random weights: nothing to fetch
    assert colab_backbones("quick") == ["dinov2_vits14"]
    assert colab_backbones("quick", families=True) == ["dinov2_vits14", "dinov3_vits16", "openclip_vitb16"]
    assert colab_backbones("paper") == ["dinov2_vitl14_reg", "dinov3_vitl16", "openclip_vitl14"]


def test_smoke_session_prints_the_device_and_finds_the_data(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    out = io.StringIO()
    session = colab_setup("smoke", stream=out, progress=False)
    lines = out.getvalue().splitlines()
    assert lines[0] == gpu_line() and lines[0].startswith("GPU: ")
    assert session.device in {"cpu", "cuda"} and ("Runtime > Change runtime type > GPU" in lines[0]) == (session.device == "cpu")
    assert set(session.data) == {"lucchi_pp", "vnc"} and all(p.is_dir() for p in session.data.values())
    assert all(str(shared_data) in str(p) for p in session.data.values())  # a local copy: nothing downloaded
    assert session.weights == {} and session.missing == {}


def test_quick_session_fetches_weights_and_notes_the_missing_ones(
    dinov2_hub: LocalHub, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import emlib.models.hub as hub

    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    # offline, the missing weights fail in seconds: no connection, probe or download is even tried
    attempts, probes, downloads = [], [], []

    def connect(self, address):
        attempts.append(address)
        raise ConnectionRefusedError(address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(hub, "_probe", lambda endpoint: probes.append(endpoint))
    monkeypatch.setattr(hub, "_download", lambda spec, **kwargs: downloads.append(spec.name))
    out = io.StringIO()
    with dinov2_hub.activate():
        session = colab_setup("quick", families=True, stream=out, progress=False)
    hub_files = {str(path) for path in dinov2_hub.files["dinov2_vits14"].values()}
    assert list(session.weights) == ["dinov2_vits14"]  # found where the hubs put it (torch.hub or the HF cache)
    assert session.weights["dinov2_vits14"] in hub_files | {"hf:timm/vit_small_patch14_dinov2.lvd142m/model.safetensors"}
    assert f"weights: dinov2_vits14 from {session.weights['dinov2_vits14']}" in out.getvalue()
    assert sorted(session.missing) == ["dinov3_vits16", "openclip_vitb16"]  # offline, not in this hub
    for name, reason in session.missing.items():
        assert name in reason and "\n" not in reason
        assert f"weights: {name} not fetched: {reason}" in out.getvalue()
    assert attempts == [] and probes == [] and downloads == []


def test_unknown_profile_or_dataset_fails_before_anything_runs() -> None:
    out = io.StringIO()
    with pytest.raises(ConfigError, match="unknown profile"):
        colab_setup("nope", stream=out)
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnist'"):
        colab_setup("smoke", datasets=["mnist"], stream=out)
    assert out.getvalue() == ""
