"""The real download code, exercised offline against a server on 127.0.0.1 serving zips the tests build,
and the check of a local copy against the packaged pixel registry."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from emlib.data import DATASETS, fetch_dataset, read_volume, verify_dataset
from emlib.data import fetch as fetch_module
from emlib.errors import ChecksumError, DataError

from ..conftest import make_lucchi, make_vnc, write_png

@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving the folder it returns."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("EMLIB_DATA", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()

def _zip_folder(folder: Path, archive: Path) -> str:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder))
    return hashlib.sha256(archive.read_bytes()).hexdigest()

def _lucchi_archive(tmp_path: Path, served: Path) -> tuple[str, dict[str, np.ndarray]]:
    build = tmp_path / "build"
    truth = make_lucchi(build, n=4)
    sha = _zip_folder(build / "lucchi_pp", served / "lucchi_pp.zip")
    return sha, truth

def test_lucchi_download_unpacks_the_official_layout(server, tmp_path: Path) -> None:
    url, served = server
    sha, truth = _lucchi_archive(tmp_path, served)
    source = dataclasses.replace(DATASETS["lucchi_pp"], url=f"{url}/lucchi_pp.zip", archive_sha256=sha)
    root = tmp_path / "root"
    folder = fetch_dataset("lucchi_pp", root=root, source=source, progress=False)
    assert folder == root / "lucchi_pp" / "Lucchi++"
    vol = read_volume("lucchi_pp", "test", root=root)
    np.testing.assert_array_equal(vol.masks, truth["test_masks"])
    # a second call finds the data and does not download again
    (served / "lucchi_pp.zip").unlink()
    assert fetch_dataset("lucchi_pp", root=root, source=source, progress=False) == folder

def test_lucchi_checksum_mismatch_leaves_nothing(server, tmp_path: Path) -> None:
    url, served = server
    _lucchi_archive(tmp_path, served)
    source = dataclasses.replace(DATASETS["lucchi_pp"], url=f"{url}/lucchi_pp.zip", archive_sha256="0" * 64)
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match="does not have the expected SHA-256") as info:
        fetch_dataset("lucchi_pp", root=root, source=source, progress=False)
    assert "\n" not in str(info.value)
    assert not (root / "lucchi_pp" / "Lucchi++").exists()
    assert not list((root / "lucchi_pp").rglob("*.zip"))

def test_unreachable_server_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMLIB_DATA", raising=False)
    source = dataclasses.replace(DATASETS["lucchi_pp"], url="http://127.0.0.1:9/lucchi_pp.zip")
    with pytest.raises(DataError, match="could not download Lucchi\\+\\+ .*EMLIB_DATA"):
        fetch_dataset("lucchi_pp", root=tmp_path, source=source, progress=False)

def _vnc_archive(tmp_path: Path, served: Path) -> dict[str, tuple[str, str]]:
    build = tmp_path / "build"
    make_vnc(build, n=4)
    top = build / "vnc" / "groundtruth-drosophila-vnc-master"
    pinned = build / "vnc" / "groundtruth-drosophila-vnc-4a5f051466d24d8dc1e855ab55658bb1b1dcd6bf"
    top.rename(pinned)
    _zip_folder(build / "vnc", served / "vnc.zip")
    return {
        str(p.relative_to(pinned)): ("unused", hashlib.sha256(p.read_bytes()).hexdigest())
        for p in pinned.rglob("*")
        if p.is_file()
    }

def test_vnc_download_checks_every_file(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    registry = _vnc_archive(tmp_path, served)
    monkeypatch.setattr(fetch_module, "pixel_registry", lambda name: registry)
    source = dataclasses.replace(DATASETS["vnc"], url=f"{url}/vnc.zip")
    root = tmp_path / "root"
    folder = fetch_dataset("vnc", root=root, source=source, progress=False)
    assert folder.name == "groundtruth-drosophila-vnc-master"
    assert len(read_volume("vnc", "all", root=root)) == 4

def test_vnc_file_checksum_mismatch_installs_nothing(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    registry = _vnc_archive(tmp_path, served)
    registry["stack1/raw/01.tif"] = ("unused", "f" * 64)
    monkeypatch.setattr(fetch_module, "pixel_registry", lambda name: registry)
    source = dataclasses.replace(DATASETS["vnc"], url=f"{url}/vnc.zip")
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match="stack1/raw/01.tif .* upstream SHA-256"):
        fetch_dataset("vnc", root=root, source=source, progress=False)
    assert not (root / "vnc" / "groundtruth-drosophila-vnc-master").exists()
    assert not [p for p in (root / "vnc").iterdir() if p.name.startswith(".vnc-")]

def test_emlib_data_never_downloads(tiny_root, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = tiny_root
    monkeypatch.setenv("EMLIB_DATA", str(root))
    source = dataclasses.replace(DATASETS["vnc"], url="http://127.0.0.1:9/never.zip")
    assert fetch_dataset("vnc", source=source, progress=False) == root / "vnc" / "groundtruth-drosophila-vnc-master"

# ------------------------------------------------------------------ verify against the registry

def test_verify_passes_staged_vnc_and_catches_a_changed_pixel(shared_data: Path, tmp_path: Path) -> None:
    report = verify_dataset("vnc", root=shared_data)
    assert report.complete and report.checked == 60
    copy = tmp_path / "vnc"
    shutil.copytree(shared_data / "vnc", copy)
    target = copy / "groundtruth-drosophila-vnc-master" / "stack1" / "mitochondria" / "05.png"
    from PIL import Image

    arr = np.asarray(Image.open(target).convert("L")).copy()
    arr[0, 0] = 255 - arr[0, 0]
    write_png(target, arr)
    with pytest.raises(ChecksumError, match="05.png does not match the official data"):
        verify_dataset("vnc", root=tmp_path)

def test_verify_reports_a_missing_optional_folder_and_fails_on_a_file_missing_from_a_folder(
    shared_data: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "vnc"
    shutil.copytree(shared_data / "vnc", copy)
    stack2 = copy / "groundtruth-drosophila-vnc-master" / "stack2" / "raw"
    (stack2 / "19.tif").unlink()  # stack2/raw exists, so it claims to be complete
    with pytest.raises(DataError, match=r"VNC copy at .* lacks stack2/raw/19\.tif; restore it \(run `emlib data download vnc --root"):
        verify_dataset("vnc", root=tmp_path)
    shutil.rmtree(stack2.parent)  # a copy without the optional stack2 is incomplete, not wrong
    report = verify_dataset("vnc", root=tmp_path)
    assert not report.complete and len(report.missing) == 20 and report.checked == 40
    assert report.missing[0] == "stack2/raw/00.tif"
