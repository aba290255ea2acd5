"""Tests of emlib.book.edition: the student edition holds every exercise and no solution."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from emlib.book.commands import _build_parser
from emlib.book.edition import (
    DEFAULT_EDITION,
    check_edition,
    edition_sphinx_config,
    strip_notebook_solutions,
    strip_solutions,
)
from emlib.book.execute import read_notebook_source
from emlib.book.repository import BookSource, write_book_config
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((REPO / "notebooks").glob("*.py"))


def _markdown(path: Path) -> str:
    return "\n".join(c.source for c in read_notebook_source(path).cells if c.cell_type == "markdown")


def test_a_solution_and_its_nested_code_fence_are_cut_and_the_exercise_kept() -> None:
    text = (":::{exercise}\n:label: ex-a\n\nHow many?\n:::\n\n:::{solution} ex-a\n:class: dropdown\n\n"
            "```python\nanswer = 42\n```\n\nForty-two.\n:::\n\nThe next paragraph.\n")
    stripped, cut = strip_solutions(text)
    assert cut == 1
    assert "answer = 42" not in stripped and "Forty-two" not in stripped and "{solution}" not in stripped
    assert stripped == ":::{exercise}\n:label: ex-a\n\nHow many?\n:::\n\nThe next paragraph.\n"


def test_a_longer_colon_fence_closes_only_on_as_many_colons() -> None:
    text = "::::{solution} ex-b\n:::{note}\ninner\n:::\nstill the solution\n::::\nafter\n"
    assert strip_solutions(text) == ("after\n", 1)


def test_a_backtick_solution_fence_is_cut() -> None:
    assert strip_solutions("```{solution} ex-c\nsecret\n```\nkept\n") == ("kept\n", 1)


def test_text_without_solutions_is_unchanged() -> None:
    text = "a\n\n\n\nb ```{solution}``` in a sentence\n"
    assert strip_solutions(text) == (text, 0)


@pytest.mark.parametrize("text, words", [
    (":::{solution} ex\nnever closed\n", "never closed"),
    ("```{solution-start} ex\n```\n", "solution-start"),
])
def test_unstrippable_markdown_is_one_sentence(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        strip_solutions(text)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_loses_every_solution_and_keeps_every_exercise(path: Path) -> None:
    text = _markdown(path)
    stripped, cut = strip_solutions(text)
    assert cut == len(re.findall(r"^:::\{solution\}", text, flags=re.M))
    assert "{solution}" not in stripped
    assert stripped.count("{exercise}") == text.count("{exercise}")


def test_a_notebook_is_rewritten_without_solutions_and_without_the_cells_left_empty(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(":::{exercise}\n:label: ex-a\nQ\n:::\n\n:::{solution} ex-a\nthe answer\n:::\n"),
        nbformat.v4.new_markdown_cell(":::{solution} ex-a\nonly an answer\n:::"),
        nbformat.v4.new_code_cell("x = ':::{solution} in code stays'"),
    ])
    nb.metadata["papermill"] = {"input_path": {"cells": [{"source": ":::{solution} ex-a\nin the metadata\n:::\n"}]}}
    path = tmp_path / "ch.ipynb"
    nbformat.write(nb, path)
    assert strip_notebook_solutions(path) == 3
    cells = nbformat.read(path, as_version=4).cells
    assert "in the metadata" not in path.read_text() and "answer" not in path.read_text().replace("in code stays", "")
    assert [c.cell_type for c in cells] == ["markdown", "code"]
    assert "answer" not in cells[0].source and "{exercise}" in cells[0].source
    assert "in code stays" in cells[1].source
    assert strip_notebook_solutions(path) == 0  # idempotent


def test_the_student_edition_hides_solutions_in_the_generated_config(tmp_path: Path) -> None:
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    source = BookSource("Org/emlib", commit="0" * 40)
    student = yaml.safe_load(write_book_config(tmp_path, source, sphinx_config=edition_sphinx_config("student")).read_text())
    assert student["sphinx"]["config"]["hide_solutions"] is True
    assert student["sphinx"]["config"]["bibtex_default_style"] == "plain"  # the rest of sphinx.config kept
    key = yaml.safe_load(write_book_config(tmp_path, source, sphinx_config=edition_sphinx_config("answer-key")).read_text())
    assert "hide_solutions" not in key["sphinx"]["config"]


def test_the_edition_option_defaults_to_the_answer_key_and_refuses_others(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _build_parser()
    assert parser.parse_args(["build"]).edition == DEFAULT_EDITION == "answer-key"
    assert parser.parse_args(["build", "--edition", "student"]).edition == "student"
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--edition", "teacher"])
    with pytest.raises(ConfigError, match="--edition student"):
        check_edition("teacher")


def _solution_lines(text: str) -> list[str]:
    """Plain-prose lines of the solutions in ``text`` (rendered as they are: no markup to escape)."""
    bodies = re.findall(r"^:::\{solution\}.*?\n(.*?)^:::\s*$", text, flags=re.M | re.S)
    return [line for body in bodies for line in body.splitlines() if len(line) > 20 and re.fullmatch(r"[A-Za-z ,.]+", line)]


@pytest.mark.slow
def test_a_student_build_of_one_chapter_shows_its_exercises_and_none_of_its_solutions(tmp_path, shared_data, monkeypatch):
    from emlib.book import build_book

    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    report = build_book(REPO, profile="smoke", out=tmp_path / "book", only=["01_data"], edition="student", progress=False)
    html = (report.html_dir / "book" / "chapters" / "01_data.html").read_text()
    source = _markdown(REPO / "notebooks" / "01_data.py")
    lines = _solution_lines(source)
    assert lines, "the chapter's solutions have prose lines to look for"
    assert not [line for line in lines if line in html]
    for label in re.findall(r"^:label: (ex-\S+)", source, flags=re.M):
        assert f'id="{label}"' in html
    offered = list(report.html_dir.rglob("01_data.ipynb"))  # the notebook the page offers for download
    assert offered and all("{solution}" not in p.read_text() for p in offered)
