"""Tests of emlib.book.commands: ``python -m emlib.book`` and ``emlib book`` fail in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emlib import cli
from emlib.book.commands import _parse_params, main
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_cli_rejects_unknown_chapter_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--root", str(REPO), "--only", "99_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib.book: error: --only names ['99_nope']") and err.count("\n") == 1


def test_emlib_book_is_the_same_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["book", "build", "--root", str(REPO), "--only", "99_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib: error: --only names ['99_nope']") and err.count("\n") == 1
    assert cli.main(["book", "export", str(tmp_path), "--root", str(REPO)]) == 0
    assert (tmp_path / "book" / "chapters" / "01_data.ipynb").is_file()


def test_python_dash_m_runs_the_same_main() -> None:
    proc = subprocess.run([sys.executable, "-m", "emlib.book", "build", "--help"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0 and "--profile" in proc.stdout and "--check" in proc.stdout


def test_parameters_are_yaml_values() -> None:
    assert _parse_params(["seed=3", "backbone=dinov2_vitb14", "data_dir=null"]) == {
        "seed": 3, "backbone": "dinov2_vitb14", "data_dir": None}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _parse_params(["seed"])
