"""The data root, the official layouts, and the stat that refuses what is not a regular file before anything opens it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from emlib.data import read_volume
from emlib.data.layout import check_file, fix_hint, modified_allowed
from emlib.errors import DataError

LUCCHI = Path("lucchi_pp") / "Lucchi++"


@pytest.fixture()
def no_hang():
    """Fail (not hang) a test whose read blocks: SIGALRM after 10 s."""
    def stuck(*_):
        raise TimeoutError("the read blocked")
    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _replace(path: Path, make) -> None:
    path.unlink()
    make(path)


CASES = {  # what takes a slice's place -> the words the sentence must hold
    "fifo": (os.mkfifo, "is a named pipe (FIFO), which a read would wait on forever, not an image file"),
    "dev-zero": (lambda p: os.symlink("/dev/zero", p), "(a symbolic link to /dev/zero) is a character device, not an image file"),
    "folder": (os.mkdir, "is a folder, not an image file"),
    "dangling": (lambda p: os.symlink("/nowhere/at/all.png", p), "is a broken symbolic link (to /nowhere/at/all.png, which does not exist)"),
    "loop": (lambda p: os.symlink(p.name, p), "is a symbolic link that loops back on itself"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("where", ["Test_In/mask0004.png", "Test_Out/4.png"])
def test_a_slice_that_is_not_a_regular_file_is_refused_by_a_stat(tiny_root, no_hang, case: str, where: str) -> None:
    root, _ = tiny_root
    make, words = CASES[case]
    path = root / LUCCHI / where
    _replace(path, make)
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        read_volume("lucchi_pp", "test", root=root)
    text = str(info.value)
    assert text.startswith(f"{path}") and words in text and "replace it with the official file" in text, text
    assert "\n" not in text and "free space" not in text and "permissions" not in text
    assert time.perf_counter() - start < 10


def test_check_file_returns_the_stat_of_a_regular_file_or_a_link_to_one(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"12345")
    os.symlink(target, tmp_path / "b.png")
    assert check_file(target, "HINT").st_size == check_file(tmp_path / "b.png", "HINT").st_size == 5
    with pytest.raises(DataError, match=r"c\.png is missing; replace it with the official file \(HINT\)$"):
        check_file(tmp_path / "c.png", "HINT")


def test_advice_for_the_emlib_data_copy_never_says_to_download_into_it(tmp_path: Path, monkeypatch) -> None:
    """Callers that pass the resolved data root (the evaluation does) get the advice of the EMLIB_DATA copy."""
    monkeypatch.setenv("EMLIB_DATA", str(tmp_path / "copy"))
    for root in (None, tmp_path / "copy", str(tmp_path / "copy") + "/"):
        text = fix_hint("lucchi_pp", root)
        assert "--root" not in text and "--force" not in text and "never downloads into" in text
    assert fix_hint("lucchi_pp", tmp_path / "other") == f"run `emlib data download lucchi_pp --root {tmp_path / 'other'} --force`"


def test_modified_data_is_allowed_by_the_argument_else_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("EMLIB_ALLOW_MODIFIED_DATA", raising=False)
    assert not modified_allowed() and modified_allowed(True)
    monkeypatch.setenv("EMLIB_ALLOW_MODIFIED_DATA", "1")
    assert modified_allowed() and not modified_allowed(False)
