"""Tests of emlib.book.exercises: the parser, the teacher's list, and every solution run by the smoke build."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from emlib.book import BuildReport
from emlib.book.execute import execute_chapter, strip_solutions
from emlib.book.exercises import (
    EXERCISE_METADATA,
    SOLUTION_TAG,
    SOLUTIONS_METADATA,
    book_exercises,
    chapter_exercises,
    exercise_list,
    exercises_markdown,
    parse_exercises,
    solution_cells,
)
from emlib.book.toc import BookError

REPO = Path(__file__).resolve().parents[2]

MARKDOWN = """## Exercises

:::{exercise} Add two numbers
:label: ex-add

Add them.
:::

:::{solution} ex-add
:class: dropdown

```python
total = 1 + 1
```

Some words, then a shell block that is not run:

```bash
echo no
```

```python
assert total == 2
```
:::

:::{exercise} Think
:label: ex-think

Why?
:::

:::{solution} ex-think
:class: dropdown

Because.
:::
"""


def test_parser_reads_labels_titles_and_only_python_blocks() -> None:
    add, think = parse_exercises(MARKDOWN, chapter="99_x")
    assert (add.chapter, add.label, add.title) == ("99_x", "ex-add", "Add two numbers")
    assert add.code == ("total = 1 + 1\n", "assert total == 2\n")
    assert add.text.strip() == "Add them."
    assert (think.label, think.title, think.code) == ("ex-think", "Think", ())


@pytest.mark.parametrize(("markdown", "words"), [
    (":::{exercise} T\nno label\n:::\n", "has no :label:"),
    (":::{exercise}\n:label: ex-a\n:::\n:::{exercise}\n:label: ex-a\n:::\n", "two exercises are labelled ex-a"),
    (":::{solution} ex-missing\n:::\n", "no exercise above it"),
    (":::{exercise} T\n:label: ex-a\nnever closed\n", "never closed"),
])
def test_parser_refuses_malformed_exercises_in_one_sentence(markdown: str, words: str) -> None:
    with pytest.raises(BookError) as info:
        parse_exercises(markdown, chapter="99_x")
    assert words in str(info.value) and "99_x" in str(info.value) and "\n" not in str(info.value)


def test_every_exercise_of_the_book_has_a_title_and_teacher_metadata() -> None:
    exercises = book_exercises(REPO)
    labels = [ex.label for ex in exercises]
    assert len(labels) == len(set(labels)), "exercise labels must be unique across the book"
    assert set(labels) == set(EXERCISE_METADATA), "EXERCISE_METADATA must list exactly the book's exercises"
    assert all(ex.title for ex in exercises), [ex.label for ex in exercises if not ex.title]
    rows = exercise_list(REPO)
    assert [r["label"] for r in rows] == labels
    assert all(r["practises"] and r["difficulty"] in (1, 2, 3) for r in rows)
    assert {r["chapter"] for r in rows} >= {"01_data", "04_lora", "08_beyond_the_paper"}


def test_solution_cells_are_tagged_removed_and_name_their_exercise() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(MARKDOWN)])
    cells = solution_cells(nb, chapter="99_x")
    assert [c.metadata["emlib_exercise"] for c in cells] == ["ex-add", "ex-add"]
    assert all({SOLUTION_TAG, "remove-cell"} <= set(c.metadata["tags"]) for c in cells)
    assert cells[0].source.startswith("# solution of exercise ex-add, block 1 (99_x)\n")
    nb.cells.extend(cells)
    strip_solutions(nb)
    assert len(nb.cells) == 1 and [r["label"] for r in nb.metadata[SOLUTIONS_METADATA]] == ["ex-add", "ex-add"]


def _chapter(tmp_path: Path, solution_code: str) -> Path:
    source = tmp_path / "99_ex.py"
    body = MARKDOWN.replace("assert total == 2", solution_code)
    markdown = "\n".join(f"# {line}".rstrip() for line in body.splitlines())
    source.write_text(f'# %% [markdown]\n# # Ex\n\n# %% tags=["parameters"]\nprofile = "smoke"\n\n'
                      f'# %%\nstate = 40\n\n# %% [markdown]\n{markdown}\n')
    return source


def test_solutions_run_in_the_chapter_state_and_a_broken_one_names_its_exercise(tmp_path: Path) -> None:
    good = _chapter(tmp_path, "assert total + state == 42")
    output = execute_chapter(good, tmp_path / "out" / "99_ex.ipynb", solutions=True)
    nb = nbformat.read(output, as_version=4)
    assert not any(SOLUTION_TAG in c.metadata.get("tags", []) for c in nb.cells)
    assert [r["label"] for r in nb.metadata[SOLUTIONS_METADATA]] == ["ex-add", "ex-add"]

    broken = _chapter(tmp_path, "from emlib.paper import no_such_name")
    with pytest.raises(BookError) as info:
        execute_chapter(broken, tmp_path / "out" / "99_ex.ipynb", solutions=True)
    message = str(info.value)
    assert message.startswith("chapter 99_ex: the solution of exercise ex-add ")
    assert "ImportError" in message and "\n" not in message


def test_every_solution_runs_on_the_smoke_build(smoke_book: BuildReport) -> None:
    """The session's smoke build runs with ``solutions=True`` (tests/book/conftest.py): each chapter's
    executed notebook records every code block of its solutions, and a failing one failed the build."""
    missing = {}
    for name, path in smoke_book.notebooks.items():
        expected = [ex.label for ex in chapter_exercises(REPO / "notebooks" / f"{name}.py") for _ in ex.code]
        ran = [r["label"] for r in nbformat.read(path, as_version=4).metadata.get(SOLUTIONS_METADATA, [])]
        if ran != expected:
            missing[name] = sorted(set(expected) - set(ran))
    assert not missing, f"solutions not run by the smoke build: {missing}"


def test_exercises_markdown_is_one_table_row_per_exercise_with_stars() -> None:
    table = exercises_markdown(REPO).splitlines()
    assert len(table) == 2 + len(EXERCISE_METADATA)
    assert "| {ref}`ex-lora-rank` | 4 | ★★★ |" in "\n".join(table)
    assert any(line.startswith("| {ref}`ex-pairing-audit-train` | 5b | ★ |") for line in table)
    assert any(line.startswith("| {ref}`ex-protocol-profiles` | appendix |") for line in table)
