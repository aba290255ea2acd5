"""Tests of emlib.models.weightfile: one stat names what is not a regular file, zip archives are judged by
their declared sizes before inflating, and a weights file's SHA-256 is computed once."""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emlib.errors import WeightsError
from emlib.models import weightfile
from emlib.models.weightfile import check_archive, weights_file_problem, weights_sha256


def test_what_is_not_a_regular_file_is_named_from_one_stat(tmp_path: Path):
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.pth")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "file.pth").write_bytes(b"x")
    assert weights_file_problem(tmp_path / "file.pth") == ""
    assert weights_file_problem(tmp_path / "none.pth") == "does not exist"
    assert weights_file_problem(tmp_path / "file.pth" / "x") == "does not exist (a folder on its path is a file)"
    assert weights_file_problem(tmp_path / "folder") == "is a folder, not a file"
    assert weights_file_problem(tmp_path / "fifo") == "is a FIFO (named pipe), not a regular file"
    assert weights_file_problem("/dev/zero") == "is a character device, not a regular file"
    assert weights_file_problem(tmp_path / "dangling") == f"is a broken symbolic link (to {tmp_path / 'gone.pth'})"
    assert weights_file_problem(tmp_path / "loop") == "is a symbolic link loop"


def zip_bomb(path: Path, inflated: int) -> Path:
    """A valid zip holding one deflated member of ``inflated`` zero bytes (a 512 MB member is about 0.5 MB on disk),
    written without inflating it: one fully flushed deflate block of 16 MB of zeros, repeated."""
    chunk, name = 1 << 24, b"archive/data/0"
    block = (comp := zlib.compressobj(9, zlib.DEFLATED, -15)).compress(bytes(chunk)) + comp.flush(zlib.Z_FULL_FLUSH)
    n = inflated // chunk
    data = block * n + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc, zero = 0, bytes(chunk)
    for _ in range(n):
        crc = zlib.crc32(zero, crc)
    size = n * chunk
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


def test_a_zip_bomb_is_judged_from_its_central_directory(tmp_path: Path, monkeypatch):
    bomb = zip_bomb(tmp_path / "bomb.pth", 512 << 20)
    assert bomb.stat().st_size < 2_000_000
    with zipfile.ZipFile(bomb) as archive:  # a real archive: it does inflate to zeros
        assert archive.open("archive/data/0").read(1000) == bytes(1000)
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda *a, **k: pytest.fail("a member was inflated"))
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"bomb\.pth is a zip archive whose 1 member would inflate to 0\.5 GB, more than "
                                           r"the 0\.1 GB a checkpoint of x can need, so it was not opened \(it may be a zip "
                                           r"bomb\); use the file the hub or the publisher serves\.$"):
        check_archive(bomb, 100_000_000, backbone="x")
    assert time.monotonic() - start < 2
    check_archive(bomb, 1 << 30, backbone="x")


def test_real_checkpoints_pass_the_archive_check(tmp_path: Path):
    zipped, safe = tmp_path / "z.pth", tmp_path / "s.safetensors"
    tensors = {"a": torch.zeros(1000), "b": torch.ones(10)}
    torch.save(tensors, zipped)
    save_file(tensors, str(safe))
    check_archive(zipped, 100_000, backbone="x")
    check_archive(safe, 10, backbone="x")  # not an archive: nothing inflates
    with pytest.raises(WeightsError, match=r"z\.pth is a zip archive whose \d+ members would inflate to 0\.0 GB, more than "
                                           r"the 0\.0 GB a checkpoint of x can need"):
        check_archive(zipped, 10, backbone="x")


# ---- the SHA-256, computed once per file -------------------------------------------------------


@pytest.fixture()
def counted(tmp_path: Path, monkeypatch) -> list:
    """Every hashing of a file's bytes, with the SHA-256s remembered in a file of this test only."""
    monkeypatch.setattr(weightfile, "SHA256_CACHE", tmp_path / "cache" / "weights-sha256.json")
    calls: list = []
    real = weightfile.file_sha256
    monkeypatch.setattr(weightfile, "file_sha256", lambda path: calls.append(path) or real(path))
    return calls


def test_the_sha256_is_computed_once_and_again_when_the_file_changes(tmp_path: Path, counted: list):
    import hashlib

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"one")
    assert weights_sha256(path) == hashlib.sha256(b"one").hexdigest() and len(counted) == 1
    assert weights_sha256(path) == hashlib.sha256(b"one").hexdigest() and len(counted) == 1  # from the cache file
    entry = json.loads(weightfile.SHA256_CACHE.read_text())[str(path.resolve())]
    assert entry[:2] == [3, path.stat().st_mtime_ns] and entry[3] == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two")  # rewritten: another mtime (and size)
    assert weights_sha256(path) == hashlib.sha256(b"two").hexdigest() and len(counted) == 2
    assert not list(weightfile.SHA256_CACHE.parent.glob("*.incomplete"))  # written under a per-process name, then moved


def test_a_damaged_or_unwritable_cache_only_costs_the_hashing(tmp_path: Path, counted: list, monkeypatch):
    import hashlib

    path = tmp_path / "w.pth"
    path.write_bytes(b"x")
    weightfile.SHA256_CACHE.parent.mkdir(parents=True)
    weightfile.SHA256_CACHE.write_text('{"rows": [')  # truncated
    assert weights_sha256(path) == hashlib.sha256(b"x").hexdigest()
    entry = json.loads(weightfile.SHA256_CACHE.read_text())[str(path.resolve())]
    json.loads(weightfile.SHA256_CACHE.read_text())  # rewritten whole
    weightfile.SHA256_CACHE.write_text(json.dumps({str(path.resolve()): [*entry[:3], "not a hash"]}))
    assert weights_sha256(path) == hashlib.sha256(b"x").hexdigest() and len(counted) == 2  # a bad entry is not trusted
    monkeypatch.setattr(weightfile, "SHA256_CACHE", tmp_path / "file" / "cache.json")
    (tmp_path / "file").write_bytes(b"")  # its folder is a file: nothing can be written there
    assert weights_sha256(path) == hashlib.sha256(b"x").hexdigest()
