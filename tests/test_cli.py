"""The console script: data info/verify print what they promise; user errors are one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from emlib.cli import main


def test_data_info_prints_every_split(tiny_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny_root
    assert main(["data", "info", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for text in ("Lucchi++", "VNC", "train", "test", "unlabelled", "5x5x5", "47.5x4.6x4.6", "%"):
        assert text in out
    assert "12" in out  # tiny Lucchi++ copy has 12 slices per split


def test_missing_data_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: no Lucchi++ data at") and err.count("\n") == 1
    assert "Traceback" not in err


def test_unknown_dataset_is_one_line_exit_2(tiny_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = tiny_root
    assert main(["data", "verify", "lucchi", "--root", str(root), "--quiet"]) == 2
    assert "unknown dataset 'lucchi'" in capsys.readouterr().err


def test_verify_staged_vnc(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify", "vnc", "--root", str(shared_data), "--quiet"]) == 0
    assert "vnc: 60 of 60 files match the official pixels (complete)" in capsys.readouterr().out
