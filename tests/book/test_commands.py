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
    assert _parse_params(["seed=3", "backbone=dinov2_vitb14", "data_dir=null", " device =cpu"]) == {
        "seed": 3, "backbone": "dinov2_vitb14", "data_dir": None, "device": "cpu"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        _parse_params(["seed"])


def test_a_parameter_key_is_never_run_as_code(tmp_path: Path) -> None:
    """Issue 23, item 9: the key of ``-p "import os; os.makedirs('MARK'); x=1"`` is refused in one line, exit 2,
    before any chapter runs or anything is written."""
    import time

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "emlib.book", "build", "--root", str(REPO), "--only", "01_data",
                           "--out", str(tmp_path / "out"), "-p", "import os; os.makedirs('MARK'); x=1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("emlib.book: error: -p import os; os.makedirs('MARK'); x=1 does not name a parameter")
    assert time.perf_counter() - t0 < 20  # the interpreter's start included
    assert not any(tmp_path.iterdir()) and not (REPO / "MARK").exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["-p", "profile=quick"], "-p profile=quick would run the chapters on quick while the build's banner, timings and "
                              "weights check follow --profile smoke; pass --profile quick instead of -p profile=quick"),
    (["-p", "seed=[1"], "the value '[1' is not a YAML value"),
    (["-p", "nope=1"], "-p nope is not a parameter of the chapters built (01_data)"),
])
def test_bad_parameters_exit_2_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv, words) -> None:
    assert main(["build", "--root", str(REPO), "--only", "01_data", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib.book: error: ") and words in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_an_out_holding_the_users_book_is_refused_with_nothing_overwritten(capsys: pytest.CaptureFixture[str],
                                                                           tmp_path: Path) -> None:
    (tmp_path / "book").mkdir()
    (tmp_path / "_config.yml").write_text("title: mine\n")
    (tmp_path / "book" / "intro.md").write_text("# mine\n")
    assert cli.main(["book", "build", "--root", str(REPO), "--only", "01_data", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emlib: error: --out {tmp_path} already holds files emlib did not make (_config.yml, book)")
    assert err.count("\n") == 1 and "pass a new or empty folder" in err
    assert (tmp_path / "_config.yml").read_text() == "title: mine\n" and (tmp_path / "book" / "intro.md").read_text() == "# mine\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["_config.yml", "book", "intro.md"]
    assert main(["build", "--root", str(REPO), "--only", "01_data", "--out", str(REPO / "book")]) == 2
    assert f"lies in the book's sources ({REPO / 'book'})" in capsys.readouterr().err
