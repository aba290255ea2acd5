"""Tests of emlib.lab: pack data, weights and runs; unpack verifies every SHA-256 and never leaves its folder."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from emlib.cli import main
from emlib.lab import MANIFEST, LabArchiveError, env_lines, pack_lab, unpack_lab
from emlib.models import create_backbone
from emlib.testing import write_local_hub

torch.set_num_threads(1)
NAME = "dinov2_vits14"


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory: pytest.TempPathFactory):
    """A local hub with one backbone (its timm file in the HF cache, Meta's file in the torch.hub folder)."""
    return write_local_hub(tmp_path_factory.mktemp("lab-hub"), [NAME])


def _data(root: Path) -> Path:
    (root / "lucchi_pp" / "Train_In").mkdir(parents=True)
    (root / "lucchi_pp" / "Train_In" / "mask0000.png").write_bytes(b"\x89PNG fake pixels")
    (root / "README.md").write_text("staged\n")
    return root


def _runs(root: Path) -> Path:
    run = root / "quick" / "frozen-dinov2_vits14-seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"iou_fg": 0.5}))
    return root / "quick"


def _empty_hubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine whose hubs' caches are empty and offline: only $EMLIB_WEIGHTS can serve weights."""
    from huggingface_hub import constants

    for var, sub in (("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub"), ("TORCH_HOME", "torch")):
        monkeypatch.setenv(var, str(tmp_path / "empty" / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty" / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


@pytest.mark.parametrize("where", ["torch.hub", "hf-cache"])
def test_pack_then_unpack_gives_a_hub_that_loads_pretrained_offline(small_hub, tmp_path, monkeypatch, where):
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    archive = tmp_path / "lab.tar"
    with small_hub.activate():
        if where == "hf-cache":  # the torch.hub folder elsewhere: the Hugging Face cache's file is packed
            monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch"))
            monkeypatch.setattr(torch.hub, "_hub_dir", None)
        packed = pack_lab(archive, data=_data(tmp_path / "data"), backbones=[NAME], runs=[_runs(tmp_path / "runs")])
    hub_file = "dinov2_vits14_pretrain.pth" if where == "torch.hub" else "model.safetensors"
    assert packed.weights == {NAME: f"weights/{NAME}/{hub_file}"} and packed.data and packed.runs == ["quick"]
    assert packed.files == 4
    _empty_hubs(tmp_path, monkeypatch)
    contents = unpack_lab(archive, tmp_path / "lab")
    lab = tmp_path / "lab"
    assert (lab / "data" / "lucchi_pp" / "Train_In" / "mask0000.png").read_bytes() == b"\x89PNG fake pixels"
    assert json.loads((lab / "runs" / "quick" / "frozen-dinov2_vits14-seed0" / "result.json").read_text()) == {"iou_fg": 0.5}
    assert env_lines(contents) == [f"export EMLIB_DATA={lab / 'data'}", f"export EMLIB_WEIGHTS={lab / 'weights'}",
                                   "export HF_HUB_OFFLINE=1"]
    monkeypatch.setenv("EMLIB_WEIGHTS", str(lab / "weights"))
    bb = create_backbone(NAME, pretrained=True)
    assert f"from {lab / 'weights' / NAME / hub_file} sha256:" in bb.weights_label
    expected = small_hub.model_state_dict(NAME)
    got = bb.model.state_dict()
    assert got.keys() == expected.keys() and all(torch.equal(got[k], v) for k, v in expected.items())


def _tar(path: Path, members: dict[str, bytes], *, manifest: dict | None = None, links: dict[str, str] | None = None) -> Path:
    """A tar with these files (and symbolic links), and a manifest listing the files (or ``manifest``)."""
    import hashlib

    entries = [{"path": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in members.items()]
    manifest = manifest or {"format": "emlib-lab/1", "data": True, "weights": {}, "runs": [], "files": entries}
    with tarfile.open(path, "w") as tar:
        for name, blob in [*members.items(), (MANIFEST, json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


@pytest.mark.parametrize("name", ["../evil.txt", "data/../../evil.txt", "/tmp/evil.txt", "elsewhere/evil.txt"])
def test_a_path_escaping_the_folder_is_refused_before_anything_is_written(tmp_path, name):
    archive = _tar(tmp_path / "bad.tar", {"data/ok.txt": b"ok", name: b"evil"})
    with pytest.raises(LabArchiveError, match="outside the folder"):
        unpack_lab(archive, tmp_path / "into" / "lab")
    assert not (tmp_path / "into").exists() and not (tmp_path / "evil.txt").exists()


def test_a_link_member_is_refused(tmp_path):
    archive = _tar(tmp_path / "link.tar", {"data/ok.txt": b"ok"}, links={"data/passwd": "/etc/passwd"})
    with pytest.raises(LabArchiveError, match="a link"):
        unpack_lab(archive, tmp_path / "lab")
    assert not (tmp_path / "lab").exists()


def test_a_file_changed_after_packing_is_refused_and_not_left(tmp_path):
    good = _tar(tmp_path / "good.tar", {"data/a.txt": b"original"})
    with tarfile.open(good) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    archive = _tar(tmp_path / "bad.tar", {"data/a.txt": b"tampered"}, manifest=manifest)
    with pytest.raises(LabArchiveError, match="damaged"):
        unpack_lab(archive, tmp_path / "lab")
    assert not list((tmp_path / "lab").rglob("a.txt*"))


def test_a_file_the_manifest_does_not_list_or_lacks_is_refused(tmp_path):
    good = _tar(tmp_path / "good.tar", {"data/a.txt": b"a"})
    with tarfile.open(good) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    with pytest.raises(LabArchiveError, match="does not list"):
        unpack_lab(_tar(tmp_path / "extra.tar", {"data/a.txt": b"a", "data/b.txt": b"b"}, manifest=manifest), tmp_path / "l1")
    with pytest.raises(LabArchiveError, match="lacks 1 files"):
        unpack_lab(_tar(tmp_path / "short.tar", {}, manifest=manifest), tmp_path / "l2")


def test_not_a_lab_archive_and_a_used_folder_are_one_sentence(tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(LabArchiveError, match="not a tar archive"):
        unpack_lab(tmp_path / "junk.tar", tmp_path / "lab")
    with tarfile.open(tmp_path / "plain.tar", "w") as tar:
        tar.add(__file__, arcname="data/x.py")
    with pytest.raises(LabArchiveError, match=f"holds no {MANIFEST}"):
        unpack_lab(tmp_path / "plain.tar", tmp_path / "lab")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("x")
    with pytest.raises(LabArchiveError, match="not a new or empty folder"):
        unpack_lab(tmp_path / "plain.tar", tmp_path / "used")


def test_pack_refuses_an_existing_archive_a_bad_suffix_and_missing_named_weights(tmp_path, monkeypatch):
    (tmp_path / "old.tar").write_text("x")
    with pytest.raises(LabArchiveError, match="already exists"):
        pack_lab(tmp_path / "old.tar", data=_data(tmp_path / "d"))
    with pytest.raises(LabArchiveError, match="does not end in .tar"):
        pack_lab(tmp_path / "lab.zip", data=tmp_path / "d")
    with pytest.raises(LabArchiveError, match="data root .* is not a folder.*--no-data"):
        pack_lab(tmp_path / "lab.tar", data=tmp_path / "nowhere")
    with pytest.raises(LabArchiveError, match="--runs .* is not a folder"):
        pack_lab(tmp_path / "lab.tar", data=tmp_path / "d", runs=[tmp_path / "nowhere"])
    _empty_hubs(tmp_path, monkeypatch)
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with pytest.raises(LabArchiveError, match=f"cannot pack the weights of {NAME}.*emlib weights fetch {NAME}"):
        pack_lab(tmp_path / "lab.tar", data=tmp_path / "d", backbones=[NAME])
    assert not (tmp_path / "lab.tar").exists()
    packed = pack_lab(tmp_path / "lab.tar.gz", data=tmp_path / "d")  # none named: the backbones without weights are left out
    assert packed.weights == {} and packed.files == 2


def test_the_cli_packs_unpacks_prints_the_variables_and_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    _empty_hubs(tmp_path, monkeypatch)
    assert main(["lab", "pack", str(tmp_path / "lab.tgz"), "--data", str(_data(tmp_path / "d")), "--no-weights",
                 "--runs", str(_runs(tmp_path / "r"))]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"packed {tmp_path / 'lab.tgz'}: 3 files") and "data; 1 run folders (quick)" in out
    assert main(["lab", "unpack", str(tmp_path / "lab.tgz"), "--into", str(tmp_path / "lab")]) == 0
    out = capsys.readouterr().out
    assert f"export EMLIB_DATA={(tmp_path / 'lab').resolve() / 'data'}" in out and "EMLIB_WEIGHTS" not in out
    assert str((tmp_path / "lab").resolve() / "runs" / "quick") in out
    bad = _tar(tmp_path / "bad.tar", {"../evil": b"x"})
    assert main(["lab", "unpack", str(bad), "--into", str(tmp_path / "lab2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: ") and "outside the folder" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
