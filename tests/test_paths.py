"""A relative path the user gives means the folder it meant where it was given: from another working folder,
in a subprocess, through papermill, and in a chapter opened from ``notebooks/``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from emlib.cli import main
from emlib.data import data_root
from emlib.paths import env_path, pin_env_paths, user_path

from .conftest import REPO, make_lucchi, make_vnc


def _child_env(**values: str) -> dict[str, str]:
    """The environment of a child Python that imports this checkout's emlib, with ``values`` on top."""
    return {**os.environ, "PYTHONPATH": str(REPO), **values}


def test_user_path_joins_a_relative_path_to_the_cwd_where_it_is_given(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert user_path("data/../runs") == tmp_path / "runs"
    assert user_path("~/x") == Path.home() / "x"
    assert user_path(tmp_path / "abs", base="/elsewhere") == tmp_path / "abs"


def test_a_relative_variable_is_read_against_the_cwd_then_kept_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMLIB_DATA", "data")
    monkeypatch.setenv("EMLIB_WEIGHTS", "")
    assert data_root() == tmp_path / "data" and os.environ["EMLIB_DATA"] == str(tmp_path / "data")
    monkeypatch.chdir(tmp_path.parent)  # read again from elsewhere: still the folder meant where it was read
    assert data_root() == tmp_path / "data" and env_path("EMLIB_WEIGHTS") is None
    assert pin_env_paths(("EMLIB_DATA", "EMLIB_WEIGHTS")) == {"EMLIB_DATA": tmp_path / "data"}


def _book_beside_data(tmp_path: Path) -> tuple[Path, Path]:
    """``tmp/repo`` (a book: ``_toc.yml``, ``notebooks/``) beside ``tmp/shared/data``."""
    repo, data = tmp_path / "repo", tmp_path / "shared" / "data"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (data / "lucchi_pp").mkdir(parents=True)
    return repo, data


def test_a_chapter_opened_from_notebooks_finds_the_data_beside_the_repository(tmp_path: Path, monkeypatch) -> None:
    """Jupyter runs the kernel in notebooks/; ``EMLIB_DATA=../shared/data`` was set at the repository root."""
    repo, data = _book_beside_data(tmp_path)
    monkeypatch.chdir(repo / "notebooks")
    monkeypatch.setenv("EMLIB_DATA", "../shared/data")
    assert data_root() == data and os.environ["EMLIB_DATA"] == str(data)
    here = repo / "shared" / "data"  # a folder that the path names from notebooks/ itself wins
    here.mkdir(parents=True)
    monkeypatch.setenv("EMLIB_DATA", "../shared/data")
    assert data_root() == here


def test_outside_a_books_notebooks_folder_the_cwd_alone_counts(tmp_path: Path, monkeypatch) -> None:
    repo, _ = _book_beside_data(tmp_path)
    (repo / "other").mkdir()
    monkeypatch.chdir(repo / "other")
    monkeypatch.setenv("EMLIB_DATA", "../shared/data")
    assert data_root() == repo / "shared" / "data"


def test_import_emlib_exports_relative_variables_absolute_to_its_subprocesses(tmp_path: Path) -> None:
    """The process given ``EMLIB_DATA=data`` changes folder, then starts a child: the child gets the folder meant."""
    code = ("import os, subprocess, sys; import emlib; os.chdir('/'); "
            "print(subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"EMLIB_DATA\"], "
            "os.environ[\"EMLIB_WEIGHTS\"])'], capture_output=True, text=True, check=True).stdout.strip())")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=_child_env(EMLIB_DATA="data", EMLIB_WEIGHTS="../w"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "data"), str(tmp_path.parent / "w")]


def test_the_cli_reads_relative_data_roots_against_its_cwd(tmp_path: Path, capsys, monkeypatch) -> None:
    """``--root data`` in-process after a change of folder, and ``EMLIB_DATA=data`` in a subprocess."""
    here = tmp_path / "here"
    make_lucchi(here / "data")
    make_vnc(here / "data")
    monkeypatch.chdir(here)
    monkeypatch.delenv("EMLIB_DATA", raising=False)
    assert main(["data", "info", "--root", "data"]) == 0
    assert f"data root: {here / 'data'}\n" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "-m", "emlib.cli", "data", "info", "lucchi_pp"], cwd=here,
                          capture_output=True, text=True, timeout=300, env=_child_env(EMLIB_DATA="data"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"data root: {here / 'data'}\n")


def test_a_chapter_run_by_papermill_elsewhere_reads_the_variable_as_meant(tmp_path: Path, monkeypatch) -> None:
    """The build's kernel runs in the repository; a relative ``EMLIB_DATA`` set where the build started reaches it."""
    from emlib.book.execute import execute_chapter

    source = tmp_path / "97_paths.py"
    source.write_text('# %% [markdown]\n# # Paths\n\n# %% tags=["parameters"]\nprofile = "smoke"\n\n'
                      '# %%\nimport os\nfrom emlib.data import data_root\nprint("ROOT", data_root(), os.getcwd())\n')
    (tmp_path / "start").mkdir()
    (tmp_path / "kernel").mkdir()
    monkeypatch.chdir(tmp_path / "start")
    monkeypatch.setenv("EMLIB_DATA", "data")
    output = tmp_path / "97_paths.ipynb"
    execute_chapter(source, output, cwd=tmp_path / "kernel", progress=False)
    printed = "".join(o.get("text", "") for c in nbformat.read(output, as_version=4).cells for o in c.get("outputs", []))
    assert f"ROOT {tmp_path / 'start' / 'data'} {tmp_path / 'kernel'}" in printed


@pytest.mark.parametrize("argv", [["grid", "--out", "runs"], ["data", "info", "--root", "runs"]])
def test_cli_folders_are_absolute_before_any_command_runs(argv: list[str], tmp_path: Path, monkeypatch) -> None:
    from emlib.cli import absolute_paths, build_parser

    monkeypatch.chdir(tmp_path)
    args = absolute_paths(build_parser().parse_args(argv))
    assert (args.out if argv[0] == "grid" else args.root) == str(tmp_path / "runs")
