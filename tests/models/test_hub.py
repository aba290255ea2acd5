"""Tests of emlib.models.hub: one resolution for every path, offline failures in seconds, downloads through huggingface_hub.

Everything runs on the local hub of tests/conftest.py (random values, the hubs' exact formats and
cache layouts, hubs forced offline). Downloads are real ``hf_hub_download`` calls against a local
HTTP server that answers as the Hugging Face hub does (files, 404 EntryNotFound, 401 GatedRepo).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from emlib.errors import WeightsError
from emlib.models import create_backbone, get_backbone_spec
from emlib.models import hub as hubmod
from emlib.models import network as netmod
from emlib.models import weightfile
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


# ---- what is found is checked: the hash is the file's own, and not a folder, a FIFO or a bomb ----


@pytest.fixture()
def hash_cache(tmp_path, monkeypatch):
    """SHA-256s remembered in a file of this test only."""
    path = tmp_path / "sha256-cache" / "weights-sha256.json"
    monkeypatch.setattr(weightfile, "SHA256_CACHE", path)
    return path


@pytest.fixture()
def own_hf_cache(local_hub, tmp_path, monkeypatch, hash_cache):
    """A copy of the local hub's Hugging Face cache (to damage), active, with an empty torch.hub folder."""
    copy = LocalHub(tmp_path / "copy", local_hub.backbones, local_hub.seed)
    shutil.copytree(local_hub.root / "huggingface", copy.root / "huggingface", symlinks=True)
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with copy.activate():
        yield copy


def _snapshot(hub: LocalHub, repo: str, filename: str = "model.safetensors") -> Path:
    folder = Path(hub.env["HF_HUB_CACHE"]) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return next(folder.glob("*")) / filename


def test_the_label_carries_the_files_own_sha256_computed_once(own_hf_cache, hash_cache, monkeypatch):
    import hashlib

    link = _snapshot(own_hf_cache, "timm/vit_small_patch14_dinov2.lvd142m")
    own = hashlib.sha256(link.read_bytes()).hexdigest()
    computed = []
    real = weightfile.file_sha256
    monkeypatch.setattr(weightfile, "file_sha256", lambda path: computed.append(path) or real(path))
    source = find_weights("dinov2_vits14")
    assert source.origin == "hf-cache" and source.sha256() == own == link.resolve().name
    assert source.label().endswith(f"model.safetensors sha256:{own[:12]}")
    assert len(computed) == 1  # once: then remembered on disk, by path, size, mtime_ns and inode
    assert hash_cache.is_file() and own in hash_cache.read_text()
    find_weights("dinov2_vits14").label()
    assert len(computed) == 1
    os.utime(link.resolve(), ns=(time.time_ns(), time.time_ns()))  # touched: hashed again
    assert find_weights("dinov2_vits14").sha256() == own and len(computed) == 2


@pytest.mark.parametrize("damage", ["flipped", "replaced"])
def test_a_hub_blob_whose_content_is_not_its_name_is_refused(own_hf_cache, damage, capsys):
    from emlib.cli import main

    link = _snapshot(own_hf_cache, "timm/vit_small_patch14_dinov2.lvd142m")
    blob = link.resolve()
    data = bytearray(blob.read_bytes())
    if damage == "flipped":
        data[-1] ^= 0xFF  # one bit pattern in the last tensor: still a valid safetensors file
    else:  # another valid weights file of the same architecture under this blob's name
        data = bytearray(_snapshot(own_hf_cache, "timm/vit_small_patch14_reg4_dinov2.lvd142m").read_bytes())
    blob.write_bytes(bytes(data))
    before = blob.read_bytes()
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        create_backbone("dinov2_vits14")
    assert time.monotonic() - start < 10
    head = (re.escape(f"the Hugging Face cache file {link} of dinov2_vits14 is damaged or was replaced (its SHA-256 is ")
            + "[0-9a-f]{12}" + re.escape(f"..., not the {blob.name[:12]}... of the hub's file it is named by); delete {blob} "
                                         f"and {link} "))
    assert re.fullmatch(head + r"and run emlib\.fetch_weights\(\['dinov2_vits14'\]\) \(or copy the file again from a "
                        r"machine with internet\)\.", str(info.value))
    assert main(["weights", "check", "dinov2_vits14"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch("dinov2_vits14: " + head + r"and run `emlib weights fetch dinov2_vits14`.*\.", out[0])
    assert blob.read_bytes() == before  # nothing deleted or rewritten


def test_emlib_weights_must_name_a_folder(empty_offline, tmp_path, monkeypatch, capsys):
    from emlib.cli import main

    file = tmp_path / "dinov2_vits14_pretrain.pth"
    file.write_bytes(b"x")
    monkeypatch.setenv("EMLIB_WEIGHTS", str(file))
    with pytest.raises(WeightsError) as info:
        find_weights("dinov2_vits14")
    assert str(info.value) == (f"EMLIB_WEIGHTS={file} is a file, not the folder of weights files it must name; set "
                               f"EMLIB_WEIGHTS to the folder that holds it ({tmp_path}), or pass the file as weights=PATH.")
    assert main(["weights", "fetch", "dinov2_vits14"]) == 2
    assert capsys.readouterr().err == (f"emlib: error: EMLIB_WEIGHTS={file} is a file, not the folder of weights files it "
                                       f"must name; set EMLIB_WEIGHTS to the folder that holds it ({tmp_path}), or give "
                                       "the file as `--weights NAME=FILE`.\n")
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path / "missing"))
    with pytest.raises(WeightsError, match=rf"^EMLIB_WEIGHTS={tmp_path / 'missing'} does not exist, so it names no folder "
                                           r"of weights files; fix the path, create the folder .* or unset EMLIB_WEIGHTS "
                                           r"to use the hubs' caches\.$"):
        create_backbone("dinov2_vits14")
    assert not (tmp_path / "missing").exists()  # nothing created


def test_a_folder_given_as_weights_says_it_is_a_folder(empty_offline, tmp_path, capsys):
    from emlib.cli import main

    folder = tmp_path / "dinov2"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(WeightsError) as info:
        find_weights("dinov2_vits14", folder)
    assert str(info.value) == (f"weights file {folder} for dinov2_vits14 is a folder, not a file; pass the weights file "
                               f"itself as weights=PATH (e.g. {folder / 'model.safetensors'}).")
    assert main(["weights", "check", "--weights", f"dinov2_vits14={folder}"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        f"dinov2_vits14: weights file {folder} for dinov2_vits14 is a folder, not a file; give the weights file itself to "
        f"--weights dinov2_vits14=FILE (e.g. {folder / 'model.safetensors'}).")


@pytest.mark.parametrize("kind", ["fifo", "dangling"])
def test_what_is_in_emlib_weights_but_no_file_is_refused_not_skipped(offline_hub, tmp_path, monkeypatch, kind):
    """A FIFO would block a reader; both would otherwise be skipped for another copy (torch.hub's) without a word."""
    path = tmp_path / "dinov2_vits14" / "model.safetensors"
    path.parent.mkdir()
    os.mkfifo(path) if kind == "fifo" else path.symlink_to(tmp_path / "gone")
    monkeypatch.setenv("EMLIB_WEIGHTS", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(WeightsError, match=rf"^the weights file {path} of dinov2_vits14 in \$EMLIB_WEIGHTS is .*; put the "
                                           r"weights file itself there or remove that entry\.$"):
        create_backbone("dinov2_vits14")
    assert time.monotonic() - start < 5


def test_a_zip_bomb_given_to_grid_ends_before_any_work(tiny_root, tmp_path, monkeypatch, capsys):
    import emlib.grid.runner as runner
    from emlib.cli import main

    from .test_weightfile import zip_bomb

    root, _ = tiny_root
    bomb = zip_bomb(tmp_path / "bomb.pth", 512 << 20)
    monkeypatch.setattr(runner, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    out = tmp_path / "runs"
    start = time.monotonic()
    assert main(["grid", "--profile", "smoke", "--out", str(out), "--root", str(root), "--weights",
                 f"dinov2_vits14={bomb}", "--quiet"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err == (f"emlib: error: {bomb} is a zip archive whose 1 member would inflate to 0.5 GB, more than the 0.4 GB a "
                   "checkpoint of dinov2_vits14 can need, so it was not opened (it may be a zip bomb); use the file the "
                   "hub or the publisher serves.\n")
    assert not out.exists() or not any(out.rglob("*.json"))


# ---- a network that accepts and never answers: one sentence in seconds, blaming the network ---------


@pytest.fixture()
def stalled_server():
    """The port of a local server that accepts every connection and never answers (a stuck proxy or hub)."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture()
def online_empty(tmp_path, monkeypatch):
    """Online (HF_HUB_OFFLINE unset), no proxy, empty caches, no $EMLIB_WEIGHTS; the probe forgotten before and after."""
    from huggingface_hub import constants

    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    for key in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    with LocalHub(tmp_path / "empty", ()).activate() as empty:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        hubmod._probe.cache_clear()
        yield empty
    hubmod._probe.cache_clear()


def test_an_endpoint_that_accepts_and_never_answers_is_offline(online_empty, stalled_server, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(hubmod, "PROBE_SECONDS", 0.3)
    for scheme in ("http", "https"):  # a HEAD / without an answer, a TLS handshake without an answer
        hubmod._probe.cache_clear()
        monkeypatch.setattr(constants, "ENDPOINT", f"{scheme}://127.0.0.1:{stalled_server}")
        start = time.monotonic()
        assert offline_reason() == "127.0.0.1 accepted a connection but did not answer within 0.3 s"
        assert time.monotonic() - start < 2


def test_a_proxy_that_never_answers_is_offline_and_ends_fetch_in_seconds(online_empty, stalled_server, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{stalled_server}")
    monkeypatch.setattr(hubmod, "PROBE_SECONDS", 0.3)
    downloads = []
    monkeypatch.setattr(hubmod, "_download", lambda spec, **kw: downloads.append(spec.name))
    reason = f"the proxy 127.0.0.1:{stalled_server} set in HTTPS_PROXY accepted a connection but did not answer within 0.3 s"
    start = time.monotonic()
    assert offline_reason() == reason
    with pytest.raises(WeightsError) as info:
        fetch_weights(["dinov2_vits14"])
    assert time.monotonic() - start < 3 and downloads == []
    assert str(info.value).startswith(f"cannot download the weights of dinov2_vits14: the hub cannot be used ({reason}); "
                                      "fix the proxy in HTTPS_PROXY (or unset it), or run emlib.fetch_weights(")
    monkeypatch.setenv("NO_PROXY", "huggingface.co")  # a proxy the endpoint bypasses is not probed
    hubmod._probe.cache_clear()
    assert hubmod.proxy_for("https://huggingface.co") == ""


def test_emlib_weights_fetch_behind_a_stalled_proxy_ends_in_seconds(online_empty, stalled_server, tmp_path):
    """The whole command in a subprocess (default PROBE_SECONDS): one sentence, exit 2, seconds after start-up."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in {"EMLIB_WEIGHTS", "HF_HUB_OFFLINE", "NO_PROXY", "no_proxy"}}
    env |= {k: v for k, v in online_empty.env.items() if k != "HF_HUB_OFFLINE"}
    env |= {"HTTPS_PROXY": f"http://127.0.0.1:{stalled_server}", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import emlib.cli"], env=env, check=True)
    startup = time.monotonic() - start
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emlib.cli", "weights", "fetch", "dinov2_vits14"], env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"emlib: error: cannot download the weights of dinov2_vits14: the hub cannot be used "
                                  f"(the proxy 127.0.0.1:{stalled_server} set in HTTPS_PROXY accepted a connection but did "
                                  "not answer within 3 s); fix the proxy in HTTPS_PROXY (or unset it), or run `emlib weights fetch "
                                  "dinov2_vits14` on a machine with internet")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert elapsed - startup < 2 * hubmod.PROBE_SECONDS + 5  # the probe's two waits, not minutes
    assert not any(Path(online_empty.env["HF_HUB_CACHE"]).rglob("*.incomplete"))


def test_emlib_grid_behind_a_stalled_proxy_ends_before_any_work(online_empty, stalled_server, tiny_root, tmp_path,
                                                                monkeypatch, capsys):
    import emlib.grid.runner as runner
    from emlib.cli import main

    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{stalled_server}")
    monkeypatch.setattr(hubmod, "PROBE_SECONDS", 0.3)
    monkeypatch.setattr(runner, "fit", lambda *a, **k: pytest.fail("a run was trained"))
    out = tmp_path / "runs"
    start = time.monotonic()
    assert main(["grid", "--profile", "quick", "--out", str(out), "--root", str(tiny_root[0]), "--quiet"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert (f"and the hub cannot be used (the proxy 127.0.0.1:{stalled_server} set in HTTPS_PROXY accepted a connection "
            "but did not answer within 0.3 s); fix the proxy in HTTPS_PROXY (or unset it), or run `emlib weights fetch "
            "dinov2_vits14` where there is internet") in err
    assert err.count("\n") == 1
    assert not out.exists() or not any(out.rglob("*.json"))


class _StallsOnFiles(_Hub):
    """Answers the probe (``HEAD /``) at once, then stalls on every file of the hub."""

    def _answer(self, body: bool) -> None:
        if self.path == "/":
            self._error(404, "EntryNotFound")
        else:
            time.sleep(3)


def test_a_download_that_stalls_after_the_probe_blames_the_network_in_seconds(online_empty, monkeypatch):
    from huggingface_hub import constants

    server = ThreadingHTTPServer(("127.0.0.1", 0), _StallsOnFiles)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hubmod, "DOWNLOAD_SECONDS", 0.5)
    try:
        assert offline_reason() is None  # the probe is answered
        start = time.monotonic()
        with pytest.raises(WeightsError) as info:
            fetch_weights(["dinov2_vits14"], progress=False)
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()
    msg = str(info.value)
    assert msg.startswith("the network failed while downloading model.safetensors from timm/vit_small_patch14_dinov2.lvd142m "
                          "for dinov2_vits14 (")
    assert msg.endswith(", after at most 0.5 s without an answer); check the connection, and run it again (finished files "
                        "are kept).") and "\n" not in msg

