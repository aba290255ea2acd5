"""Every slice a run reads is the official one: pixel and mask hashes against the registry, cached by stat.

The damaged copies here are symbolic-link trees of the staged data with one file replaced, so that only
that file is decoded again (the checks of the staged files are cached under their real paths).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emlib.cli import main
from emlib.data import data_fingerprint, load_volume, read_volume
from emlib.data import integrity
from emlib.errors import DataError

LUCCHI = Path("lucchi_pp") / "Lucchi++"
SPLITS = [("lucchi_pp", "train"), ("lucchi_pp", "test"), ("vnc", "train"), ("vnc", "test")]


@pytest.fixture(scope="module")
def checked_staged(shared_data: Path) -> Path:
    """The staged data, checked once (a few seconds), so that copies of it are checked in a stat per file."""
    for name, split in SPLITS:
        assert not data_fingerprint(name, split, root=shared_data, allow_modified=False).startswith("modified:")
    return shared_data


@pytest.fixture()
def staged_copy(checked_staged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A symbolic-link tree of the staged data under ``tmp_path/data``, read strictly (modified data not allowed)."""
    monkeypatch.delenv("EMLIB_ALLOW_MODIFIED_DATA", raising=False)
    root = tmp_path / "data"
    for name in ("lucchi_pp", "vnc"):
        for folder, _, files in os.walk(checked_staged / name):
            rel = Path(folder).relative_to(checked_staged)
            (root / rel).mkdir(parents=True, exist_ok=True)
            for file in files:
                os.symlink(Path(folder) / file, root / rel / file)
    return root


def _rewrite(root: Path, rel: str, change) -> Path:
    """Replace the link ``root/rel`` by a real file: ``change(decoded pixels)`` saved as PNG."""
    path = root / rel
    arr = np.asarray(Image.open(path).convert("L"))
    path.unlink()
    Image.fromarray(change(arr).astype(np.uint8)).save(path)
    return path


def _grid_plan(root: Path, out: Path, *extra: str) -> tuple[int, str, str, float]:
    """``emlib grid --plan`` (U-Net runs: no weights needed) on ``root``: exit code, stdout, stderr, seconds."""
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["grid", "--plan", "--regime", "unet", "--root", str(root), "--out", str(out), "--quiet", *extra])
    return rc, stdout.getvalue(), stderr.getvalue(), time.perf_counter() - start


# ----------------------------------------------------------------------------- official pixels


def test_an_inverted_slice_is_refused_unless_modified_data_is_allowed(staged_copy: Path, checked_staged: Path) -> None:
    official = data_fingerprint("lucchi_pp", "train", root=checked_staged)
    assert data_fingerprint("lucchi_pp", "train", root=staged_copy) == official  # the same content elsewhere
    path = _rewrite(staged_copy, f"{LUCCHI}/Train_In/mask0000.png", lambda a: 255 - a)
    with pytest.raises(DataError) as info:
        data_fingerprint("lucchi_pp", "train", root=staged_copy)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path} is not the official Lucchi++ slice Train_In/mask0000.png")
    assert "restore the official file" in text and "set EMLIB_ALLOW_MODIFIED_DATA=1 to use modified data" in text
    assert "pass --allow-modified-data" in info.value.cli_message
    modified = data_fingerprint("lucchi_pp", "train", root=staged_copy, allow_modified=True)
    assert modified.startswith("modified:") and modified != official and len(modified) == len("modified:") + 64
    with pytest.raises(DataError, match="is not the official"):
        read_volume("lucchi_pp", "train", root=staged_copy, slices=1)  # reading checks as well
    vol = load_volume("lucchi_pp", "train", root=staged_copy, slices=1, allow_modified=True)
    np.testing.assert_array_equal(vol.images[0], np.asarray(Image.open(path)))


def test_labels_exported_as_0_1_are_the_official_labels(staged_copy: Path, checked_staged: Path) -> None:
    rel = f"{LUCCHI}/Test_Out/7.png"  # RGBA upstream; the export is grey 0/1
    _rewrite(staged_copy, rel, lambda a: a > 127)
    assert not data_fingerprint("lucchi_pp", "test", root=staged_copy).startswith("modified:")
    ours = read_volume("lucchi_pp", "test", root=staged_copy, slices=[7])
    theirs = read_volume("lucchi_pp", "test", root=checked_staged, slices=[7])
    np.testing.assert_array_equal(ours.masks, theirs.masks)
    assert ours.masks.sum() > 0


def test_labels_stored_as_0_100_are_refused_naming_the_values(staged_copy: Path) -> None:
    path = _rewrite(staged_copy, f"{LUCCHI}/Train_Out/0.png", lambda a: np.where(a > 127, 100, 0))
    for allow in (False, True):  # not an encoding of any mask, even where modified data is allowed
        with pytest.raises(DataError, match=rf"^label {re.escape(str(path))} holds the pixel values 0, 100, but Lucchi\+\+ labels "):
            data_fingerprint("lucchi_pp", "train", root=staged_copy, allow_modified=allow)


def test_an_empty_label_where_the_official_one_has_foreground_is_refused(staged_copy: Path) -> None:
    path = _rewrite(staged_copy, "vnc/groundtruth-drosophila-vnc-master/stack1/mitochondria/03.png", np.zeros_like)
    for allow in (False, True):
        with pytest.raises(DataError) as info:
            data_fingerprint("vnc", "test", root=staged_copy, allow_modified=allow)
        assert re.match(rf"label {re.escape(str(path))} decodes to an empty mask, but the official VNC label "
                        r"stack1/mitochondria/03\.png has [\d,]+ foreground pixels; .*restore the official file", str(info.value))


def test_a_label_that_is_not_official_names_its_foreground(staged_copy: Path) -> None:
    _rewrite(staged_copy, f"{LUCCHI}/Train_Out/2.png", lambda a: np.pad(a[:, 5:], ((0, 0), (0, 5))))  # shifted left
    with pytest.raises(DataError, match=r"is not the official Lucchi\+\+ label Train_Out/2\.png \(its mask differs from the "
                       r"official one: [\d,]+ foreground pixels, the official [\d,]+\)"):
        data_fingerprint("lucchi_pp", "train", root=staged_copy)


# ----------------------------------------------------------------------------- the cache


def test_what_a_file_holds_is_measured_once_and_remembered_on_disk_by_stat(tiny_root, monkeypatch) -> None:
    root, _ = tiny_root
    first = data_fingerprint("vnc", "all", root=root)
    calls = []

    def counting(real):
        def decode(*args, **kwargs):
            calls.append(args[0])
            return real(*args, **kwargs)
        return decode

    monkeypatch.setattr(integrity, "decode_image", counting(integrity.decode_image))
    monkeypatch.setattr(integrity, "decode_label", counting(integrity.decode_label))
    assert data_fingerprint("vnc", "all", root=root) == first and calls == []  # memory
    monkeypatch.setattr(integrity, "_MEMORY", {})
    monkeypatch.setattr(integrity, "_LOADED", set())
    assert data_fingerprint("vnc", "all", root=root) == first and calls == []  # disk, as a new process reads it
    touched = root / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "raw" / "04.tif"
    saved = json.loads(integrity.check_cache_path().read_text())
    assert saved["format"] == "emlib-slice-checks-v1" and str(touched.resolve()) in saved["files"]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    assert data_fingerprint("vnc", "all", root=root) == first and calls == [touched]  # only the changed stat


def test_a_damaged_cache_file_is_ignored_and_rebuilt(tiny_root, monkeypatch) -> None:
    root, _ = tiny_root
    path = integrity.check_cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    monkeypatch.setattr(integrity, "_MEMORY", {})
    monkeypatch.setattr(integrity, "_LOADED", set())
    first = data_fingerprint("lucchi_pp", "test", root=root)
    assert json.loads(path.read_text())["format"] == "emlib-slice-checks-v1"
    monkeypatch.setattr(integrity, "_MEMORY", {})
    monkeypatch.setattr(integrity, "_LOADED", set())
    assert data_fingerprint("lucchi_pp", "test", root=root) == first


# ----------------------------------------------------------------------------- through the command line


def _truncate(root: Path, rel: str) -> None:
    path = root / rel
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])


def _sixteen_bit(root: Path, rel: str) -> None:
    arr = np.asarray(Image.open(root / rel)).astype(np.uint16) * 256
    (root / rel).unlink()
    Image.fromarray(arr).save(root / rel)


def _link(target: str):
    def make(root: Path, rel: str) -> None:
        (root / rel).unlink()
        os.symlink(target, root / rel)
    return make


def _fifo(root: Path, rel: str) -> None:
    (root / rel).unlink()
    os.mkfifo(root / rel)


CLI_CASES = {  # case -> (damage, file, words of the sentence)
    "inverted slice": (lambda r, rel: _rewrite(r, rel, lambda a: 255 - a), "Train_In/mask0010.png",
                       "is not the official Lucchi++ slice Train_In/mask0010.png"),
    "labels 0/100": (lambda r, rel: _rewrite(r, rel, lambda a: np.where(a > 127, 100, 0)), "Train_Out/4.png",
                     "holds the pixel values 0, 100, but Lucchi++ labels must be background 0 and foreground 255"),
    "truncated test slice": (_truncate, "Test_In/mask0100.png", "cannot decode"),
    "16-bit image": (_sixteen_bit, "Test_In/mask0003.png", "holds uint16 pixels, expected uint8 (8-bit)"),
    "symlink to a non-image": (_link("/etc/passwd"), "Train_In/mask0004.png", "cannot decode"),
    "symlink to /dev/zero": (_link("/dev/zero"), "Test_In/mask0004.png", "is a character device, not an image file"),
    "FIFO": (_fifo, "Test_Out/4.png", "is a named pipe (FIFO)"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_grid_plan_refuses_a_damaged_emlib_data_copy_in_one_sentence_before_any_work(
    staged_copy: Path, tmp_path: Path, monkeypatch, capsys, case: str
) -> None:
    damage, rel, words = CLI_CASES[case]
    damage(staged_copy, f"{LUCCHI}/{rel}")
    monkeypatch.setenv("EMLIB_DATA", str(staged_copy))  # the user's own copy: never "download --root <it> --force"
    out = tmp_path / "runs"
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["grid", "--plan", "--regime", "unet", "--out", str(out), "--quiet"])
    elapsed, text = time.perf_counter() - start, stderr.getvalue()
    assert rc == 2 and text.count("\n") == 1 and text.startswith("emlib: error: ") and words in text, text
    assert f"{LUCCHI}/{rel}" in text and "never downloads into" in text and "--force" not in text
    assert "free space" not in text and "Traceback" not in text and stdout.getvalue() == ""
    assert elapsed < 10 and not out.exists()


def test_grid_allow_modified_data_plans_runs_whose_data_fingerprint_says_modified(staged_copy: Path, tmp_path: Path) -> None:
    from emlib.config import RunConfig
    from emlib.preflight import input_fingerprints

    rc, _, stderr, _ = _grid_plan(staged_copy, tmp_path / "a")
    assert rc == 0 and stderr == ""
    _rewrite(staged_copy, f"{LUCCHI}/Test_In/mask0001.png", lambda a: 255 - a)
    rc, _, stderr, elapsed = _grid_plan(staged_copy, tmp_path / "b")
    assert rc == 2 and "pass --allow-modified-data" in stderr and elapsed < 10
    rc, stdout, stderr, _ = _grid_plan(staged_copy, tmp_path / "b", "--allow-modified-data")
    assert rc == 0 and "plan: 3 of 3 selected runs" in stdout and stderr == ""
    assert os.environ["EMLIB_ALLOW_MODIFIED_DATA"] == "1"  # for the run processes a launcher starts
    data = input_fingerprints(RunConfig(regime="unet"), root=staged_copy)["data"]
    assert data.startswith("modified:")


def test_data_info_reads_modified_data_only_when_told(tiny_root, monkeypatch, capsys) -> None:
    """The synthetic copy has the official names but not the official pixels."""
    root, _ = tiny_root
    monkeypatch.delenv("EMLIB_ALLOW_MODIFIED_DATA", raising=False)
    assert main(["data", "info", "vnc", "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not the official VNC" in err and "pass --allow-modified-data" in err
    assert main(["data", "info", "vnc", "--root", str(root), "--allow-modified-data"]) == 0
    assert "unlabelled" in capsys.readouterr().out
