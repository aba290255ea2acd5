"""Tests of emlib.models.hub: one resolution for every path, offline failures in seconds, downloads through huggingface_hub.

Everything runs on the local hub of tests/conftest.py (random values, the hubs' exact formats and
cache layouts, hubs forced offline). Downloads are real ``hf_hub_download`` calls against a local
HTTP server that answers as the Hugging Face hub does (files, 404 EntryNotFound, 401 GatedRepo).
"""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from emlib.errors import WeightsError
from emlib.models import create_backbone, get_backbone_spec
from emlib.models import hub as hubmod
from emlib.models import network as netmod
from emlib.models.hub import fetch_weights, find_weights, offline_reason, select_backbones, weights_status
from emlib.testing import DEFAULT_BACKBONES, LocalHub
from safetensors.torch import save_file

torch.set_num_threads(1)


def _assert_holds(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def _link(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(src.resolve())
    return dest


# ---- every path loads the very tensors written -----------------------------------------------


@pytest.mark.parametrize("name", DEFAULT_BACKBONES)
def test_pretrained_true_loads_every_family_from_the_hubs_caches(offline_hub, name):
    bb = create_backbone(name)
    source = find_weights(name)
    expected_origin = "torch.hub" if name.startswith("dinov2") else "hf-cache"  # Meta's file is found first
    assert source.origin == expected_origin
    assert bb.weights_label == source.label() and bb.weights_label.startswith(f"pretrained ({source.spec.pretrained_tag}) from ")
    if expected_origin == "hf-cache":
        hub_file = "open_clip_pytorch_model.bin" if name.startswith("openclip") else "model.safetensors"
        assert bb.weights_label.startswith(f"pretrained ({source.spec.pretrained_tag}) from hf:{source.spec.hf_repo}/{hub_file} sha256:")
        assert source.fingerprint == f"hub:{source.spec.hub_id}"
    else:
        assert source.fingerprint == f"sha256:{source.sha256()}"
    _assert_holds(bb.model, offline_hub.model_state_dict(name))


def test_dinov2_from_the_hugging_face_cache_when_torch_hub_has_nothing(offline_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    bb = create_backbone("dinov2_vits14")
    blob = offline_hub.files["dinov2_vits14"]["timm"].resolve().name
    assert bb.weights_label == f"pretrained (lvd142m) from hf:timm/vit_small_patch14_dinov2.lvd142m/model.safetensors sha256:{blob[:12]}"
    _assert_holds(bb.model, offline_hub.model_state_dict("dinov2_vits14"))


@pytest.mark.parametrize(("name", "fmt", "hub_file"), [
    ("dinov2_vits14", "timm", "model.safetensors"),
    ("dinov3_vits16", "timm", "model.safetensors"),
    ("openclip_vitb16", "open_clip", "open_clip_pytorch_model.bin"),
])
def test_emlib_weights_folder_takes_the_hub_files_unrenamed(offline_hub, tmp_path, monkeypatch, name, fmt, hub_file):
    path = _link(offline_hub.files[name][fmt], tmp_path / name / hub_file)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))
    source = find_weights(name)
    assert (source.origin, source.path) == ("EMLIB_WEIGHTS", path)
    bb = create_backbone(name)
    assert bb.weights_label == f"pretrained ({source.spec.pretrained_tag}) from {path} sha256:{source.sha256()[:12]}"
    _assert_holds(bb.model, offline_hub.model_state_dict(name))


def test_emlib_weights_folder_takes_metas_file_under_its_published_name(offline_hub, tmp_path, monkeypatch):
    path = _link(offline_hub.files["dinov2_vits14"]["meta"], tmp_path / "dinov2_vits14_pretrain.pth")
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))
    assert find_weights("dinov2_vits14").path == path
    _assert_holds(create_backbone("dinov2_vits14").model, offline_hub.model_state_dict("dinov2_vits14"))


def test_explicit_files_in_every_published_format(offline_hub, tmp_path):
    meta3 = offline_hub.files["dinov3_vits16"]["meta"]  # Meta's DINOv3 key names, under a non-published name
    bb = create_backbone("dinov3_vits16", weights=meta3)
    assert bb.weights_label.startswith(f"pretrained (lvd1689m) from {meta3} sha256:")
    _assert_holds(bb.model, offline_hub.model_state_dict("dinov3_vits16"))

    misnamed = shutil.copy(offline_hub.files["dinov2_vits14"]["timm"], tmp_path / "weights.pth")  # safetensors named .pth
    _assert_holds(create_backbone("dinov2_vits14", weights=misnamed).model, offline_hub.model_state_dict("dinov2_vits14"))

    whole = offline_hub.files["openclip_vitb16"]["open_clip"]  # the whole CLIP model, text tower included
    expected = offline_hub.model_state_dict("openclip_vitb16")
    _assert_holds(create_backbone("openclip_vitb16", weights=whole).model, expected)
    tower = tmp_path / "visual.safetensors"  # a vision-tower-only dict
    save_file({k: v.contiguous() for k, v in expected.items()}, str(tower))
    _assert_holds(create_backbone("openclip_vitb16", weights=tower).model, expected)


def test_a_file_under_a_published_name_must_carry_its_hash(offline_hub, tmp_path, monkeypatch):
    published = get_backbone_spec("dinov3_vits16").weights_filename
    assert published.endswith("-08c60483.pth")
    fake = _link(offline_hub.files["dinov3_vits16"]["meta"], tmp_path / published)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))
    pattern = (rf"{fake} is not the published file {published} \(its SHA-256 starts with [0-9a-f]{{8}}, not 08c60483\); "
               r"download it again from https://ai.meta.com/.* or rename it if it is another checkpoint\.$")
    with pytest.raises(WeightsError, match=pattern):
        create_backbone("dinov3_vits16")
    with pytest.raises(WeightsError, match=pattern):
        find_weights("dinov3_vits16", fake)


# ---- offline: one sentence, in seconds ---------------------------------------------------------


@pytest.fixture()
def empty_offline(tmp_path, monkeypatch):
    """Hubs forced offline, with empty caches and no $EMLIB_WEIGHTS."""
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with LocalHub(tmp_path / "empty", ()).activate() as empty:
        yield empty


def _no_connection(monkeypatch) -> list:
    """Every socket connection attempted from now on: refused at once and recorded (address, timeout)."""
    import socket

    attempts: list = []

    def connect(self, address):
        attempts.append((address, self.gettimeout()))
        raise ConnectionRefusedError(f"the test refuses connections ({address})")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    return attempts


def test_offline_and_missing_fails_in_seconds_in_the_words_of_each_interface(empty_offline, monkeypatch):
    # in seconds: offline means no probe, no connection and no download is even tried
    attempts, probes, downloads = _no_connection(monkeypatch), [], []
    monkeypatch.setattr(hubmod, "_probe", lambda endpoint: probes.append(endpoint))
    monkeypatch.setattr(hubmod, "_download", lambda spec, **kw: downloads.append(spec.name))
    with pytest.raises(WeightsError) as info:
        create_backbone("dinov2_vits14")
    assert attempts == [] and probes == [] and downloads == []
    err = info.value
    root = empty_offline.root
    head = (f"no pretrained weights for dinov2_vits14 on this machine (looked in $EMLIB_WEIGHTS (not set), "
            f"{root}/torch/hub/checkpoints/dinov2_vits14_pretrain.pth, the Hugging Face cache {root}/huggingface/hub "
            "(timm/vit_small_patch14_dinov2.lvd142m)) and the hub cannot be used (HF_HUB_OFFLINE is set); ")
    assert str(err) == head + ("run emlib.fetch_weights(['dinov2_vits14']) where there is internet, pass weights=PATH, "
                               "or use pretrained=False for random weights (tests only).")
    assert err.cli_message == head + ("run `emlib weights fetch dinov2_vits14` where there is internet, pass "
                                      "`--weights dinov2_vits14=FILE`, or use `--random-weights` (tests only).")
    assert err.why == head.removesuffix("; ")  # what pages and builds quote before giving their own fix


def test_the_folders_looked_in_are_named(empty_offline, tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()  # a folder that does not exist is refused (test_emlib_weights_must_name_a_folder)
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path / "w"))
    with pytest.raises(WeightsError) as info:
        find_weights("openclip_vitb16")
    assert (f"(looked in {tmp_path / 'w' / 'openclip_vitb16'}/{{open_clip_model.safetensors,open_clip_pytorch_model.bin}}, "
            "the Hugging Face cache") in str(info.value)


def test_an_unreachable_endpoint_is_offline_without_the_flag(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    real, calls = netmod.socket.create_connection, []

    def create_connection(address, timeout=None, *args, **kwargs):
        calls.append((address, timeout))
        return real(address, timeout, *args, **kwargs)

    monkeypatch.setattr(netmod.socket, "create_connection", create_connection)
    hubmod._probe.cache_clear()
    try:
        assert offline_reason() == "127.0.0.1 cannot be reached"
        assert offline_reason() == "127.0.0.1 cannot be reached"  # remembered: probed once per process
        assert calls == [(("127.0.0.1", 9), hubmod.PROBE_SECONDS)]  # one socket, bounded by PROBE_SECONDS
    finally:
        hubmod._probe.cache_clear()


def test_an_endpoint_that_never_answers_is_offline_after_the_probe_time(monkeypatch):
    """A connection that hangs (name resolution ignores socket timeouts) is given up after PROBE_SECONDS."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hangs.invalid")
    release, calls = threading.Event(), []

    def create_connection(address, timeout=None, *args, **kwargs):
        calls.append((address, timeout))
        release.wait()  # never answers until the test ends
        raise OSError("released")

    monkeypatch.setattr(netmod.socket, "create_connection", create_connection)
    monkeypatch.setattr(hubmod, "PROBE_SECONDS", 0.05)  # the wait is PROBE_SECONDS (+ 0.5 s), whatever its value
    hubmod._probe.cache_clear()
    try:
        assert offline_reason() == "hangs.invalid did not answer within 0.05 s"
        assert calls == [(("hangs.invalid", 443), 0.05)]
    finally:
        release.set()
        hubmod._probe.cache_clear()


def test_fetch_offline_is_one_sentence_before_any_download(empty_offline):
    with pytest.raises(WeightsError) as info:
        fetch_weights(["dinov2_vits14", "openclip_vitb16"])
    assert str(info.value).startswith("cannot download the weights of dinov2_vits14, openclip_vitb16: the hub cannot be "
                                      "used (HF_HUB_OFFLINE is set); run emlib.fetch_weights(")
    assert "`emlib weights fetch dinov2_vits14 openclip_vitb16` on a machine with internet" in info.value.cli_message


def test_a_missing_explicit_file_is_named(empty_offline, tmp_path):
    with pytest.raises(WeightsError) as info:
        find_weights("dinov2_vits14", tmp_path / "nope.pth")
    assert str(info.value).startswith(f"weights file {tmp_path / 'nope.pth'} for dinov2_vits14 does not exist; check the path")
    assert info.value.cli_message.endswith("check the path given to --weights dinov2_vits14=FILE.")


# ---- online: hf_hub_download against a local server that answers as the hub ---------------------


class _Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub
    gated: set[str] = set()

    def _answer(self, body: bool) -> None:
        repo, _, rest = self.path.lstrip("/").partition("/resolve/main/")
        snapshot = next((Path(self.hub.env["HF_HUB_CACHE"]) / f"models--{repo.replace('/', '--')}" / "snapshots").glob("*"), None)
        file = snapshot / rest if snapshot is not None else None
        if repo in self.gated:
            self._error(401, "GatedRepo")
        elif file is None or not file.exists():
            self._error(404, "EntryNotFound")
        else:
            data = file.read_bytes()
            self.send_response(200)
            for key, value in (("X-Repo-Commit", snapshot.name), ("ETag", f'"{file.resolve().name}"'),
                               ("Content-Length", str(len(data))), ("Content-Type", "application/octet-stream")):
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    def _error(self, status: int, code: str) -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def online_hub(local_hub, tmp_path, monkeypatch):
    """An empty Hugging Face cache, online, whose endpoint is a local server serving ``local_hub``'s files."""
    from huggingface_hub import constants

    handler = type("Handler", (_Hub,), {"hub": local_hub, "gated": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    with LocalHub(tmp_path / "cache", ()).activate() as cache:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        hubmod._probe.cache_clear()
        yield cache, handler
    server.shutdown()
    hubmod._probe.cache_clear()


def test_fetch_downloads_into_the_hugging_face_cache_and_loads(online_hub, local_hub):
    cache, _ = online_hub
    assert offline_reason() is None
    assert find_weights("dinov2_vits14").origin == "hub"  # reachable, not here: what run fingerprints use
    assert find_weights("dinov2_vits14").fingerprint == "hub:vit_small_patch14_dinov2.lvd142m"
    sources = fetch_weights(["dinov2_vits14", "openclip_vitb16"], progress=False)
    assert {n: (s.origin, s.hub_file) for n, s in sources.items()} == {
        "dinov2_vits14": ("hf-download", "model.safetensors"),
        "openclip_vitb16": ("hf-download", "open_clip_pytorch_model.bin"),  # after a 404 for open_clip_model.safetensors
    }
    for name, source in sources.items():
        assert source.path.resolve().read_bytes() == local_hub.files[name][
            "open_clip" if name.startswith("openclip") else "timm"].resolve().read_bytes()
        assert str(source.path).startswith(cache.env["HF_HUB_CACHE"])
    assert find_weights("dinov2_vits14").origin == "hf-cache"  # now cached: the same fingerprint as before
    assert find_weights("dinov2_vits14").fingerprint == "hub:vit_small_patch14_dinov2.lvd142m"
    bb = create_backbone("openclip_vitb16")
    assert bb.weights_label.startswith("pretrained (laion2b_s34b_b88k) from hf:laion/CLIP-ViT-B-16-laion2B-s34B-b88K/"
                                       "open_clip_pytorch_model.bin sha256:")
    _assert_holds(bb.model, local_hub.model_state_dict("openclip_vitb16"))


def test_create_backbone_downloads_what_is_missing(online_hub, local_hub):
    bb = create_backbone("dinov3_vits16")
    assert "from hf:timm/vit_small_patch16_dinov3.lvd1689m/model.safetensors sha256:" in bb.weights_label
    _assert_holds(bb.model, local_hub.model_state_dict("dinov3_vits16"))


def test_a_gated_repo_is_one_sentence_naming_the_licence_page_and_the_login(online_hub):
    _, handler = online_hub
    handler.gated.add("timm/vit_small_patch16_dinov3.lvd1689m")
    with pytest.raises(WeightsError) as info:
        create_backbone("dinov3_vits16")
    msg = str(info.value)
    assert msg.startswith("the download of timm/vit_small_patch16_dinov3.lvd1689m for dinov3_vits16 was refused (GatedRepoError: ")
    assert msg.endswith("accept the dinov3-license terms on https://huggingface.co/timm/vit_small_patch16_dinov3.lvd1689m with "
                        "your Hugging Face account, then log in (`hf auth login`, or set HF_TOKEN) and run it again.")
    assert "\n" not in msg


# ---- many backbones ----------------------------------------------------------------------------


def test_select_and_status(offline_hub, tmp_path):
    assert select_backbones("dinov3_vits16", profile="smoke") == ["dinov3_vits16", "dinov2_vits14"]
    table = weights_status(["dinov2_vits14", "openclip_vitb16", "dinov3_vitl16"])
    assert list(table.columns) == ["backbone", "hub_repo", "files", "about", "sha256", "licence", "present", "where"]
    rows = table.set_index("backbone")
    assert rows.loc["dinov2_vits14", "where"] == str(offline_hub.files["dinov2_vits14"]["meta"])
    assert rows.loc["openclip_vitb16", "where"] == "hf:laion/CLIP-ViT-B-16-laion2B-s34B-b88K/open_clip_pytorch_model.bin"
    assert rows.loc["openclip_vitb16", "about"] == "about 598 MB"
    assert (rows.loc["dinov3_vitl16", "present"], rows.loc["dinov3_vitl16", "where"]) == (False, "missing")
    assert (rows.loc["dinov3_vitl16", "sha256"], rows.loc["dinov3_vitl16", "licence"]) == ("8aa4cbdd", "dinov3-license (gated)")
