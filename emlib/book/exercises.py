"""The chapters' exercises: parsed from the sources, run with the chapter, listed for the teacher.

Every chapter ends with ``:::{exercise}`` / ``:::{solution}`` fences (sphinx-exercise, MyST colon
fences) in its last Markdown cell. :func:`parse_exercises` reads them from a chapter's Markdown:
the label, the title (the directive's argument), the exercise text and the ``python`` code blocks
of its solution. :func:`solution_cells` turns those code blocks into code cells that
:func:`emlib.book.execute.execute_chapter` (``solutions=True``) appends to the chapter, so they run
in the chapter's own state after its last cell, as a reader who reaches the exercises would run
them; the executed notebook keeps only a record of them (:data:`SOLUTIONS_METADATA`), never the
cells. The test suite's smoke build runs them all, so a broken solution fails CI.

sphinx-exercise (1.2) refuses directive options it does not know (``:label:``, ``:class:``,
``:nonumber:``, ``:hidden:`` only), so what each exercise practises and its difficulty live here,
in :data:`EXERCISE_METADATA`, keyed by label; :func:`exercise_list` joins both for the teacher's kit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emlib.book.toc import SOURCE_DIR, BookError, list_chapters

__all__ = ["Exercise", "EXERCISE_METADATA", "SOLUTION_TAG", "SOLUTIONS_METADATA", "parse_exercises",
           "chapter_exercises", "book_exercises", "solution_cells", "exercise_list", "exercises_markdown"]

#: Tag of the solution cells :func:`solution_cells` makes (removed from the executed chapter).
SOLUTION_TAG = "exercise-solution"
#: Key, in an executed chapter's notebook metadata, of the solutions that ran: ``[{"label", "seconds"}]``.
SOLUTIONS_METADATA = "emlib_solutions"

#: What each exercise practises and its difficulty (1: a few lines from the chapter's own cells; 2: combine
#: two chapters' tools or reason about the numbers; 3: a new experiment, a training run, a GPU recommended).
EXERCISE_METADATA: dict[str, tuple[str, int]] = {
    "ex-data-fg-per-slice": ("reading masks as arrays; slice-to-slice variation of a test set", 1),
    "ex-data-pairing": ("pairing image and label files by parsed number, not by file name", 1),
    "ex-data-fov": ("pixel size and patch size: what one token covers", 1),
    "ex-sees-memory": ("token counts and memory at the paper's resolution", 1),
    "ex-sees-separate-pca": ("reading a PCA picture of tokens; joint versus separate fits", 2),
    "ex-sees-quick": ("looking at pretrained features before measuring them", 2),
    "ex-frozen-linear-head": ("building a model from a RunConfig; counting parameters", 1),
    "ex-frozen-fp-fn": ("pooled foreground IoU from pixel counts", 1),
    "ex-lora-count": ("where LoRA's parameters sit; checking a formula by a count", 1),
    "ex-lora-rank": ("training a run with a changed configuration", 3),
    "ex-paired-balance": ("a controlled experiment: balancing the paired training set", 3),
    "ex-paired-unet": ("filtering and pivoting the results table", 1),
    "ex-pairing-audit-train": ("auditing a published image-label pairing", 1),
    "ex-latents-stack2": ("embeddings of another split and their Fréchet distance", 2),
    "ex-latents-nslices": ("how the Fréchet distance depends on the sample size", 2),
    "ex-latents-joint-probe": ("a held-out linear probe across datasets", 3),
    "ex-paper-per-regime": ("checking a paper claim on a filtered table", 1),
    "ex-paper-seeds": ("making a verdict robust to seed noise", 2),
    "ex-beyond-combine": ("combining two remedies in one run", 3),
    "ex-beyond-coral-weight": ("scanning a loss weight", 3),
    "ex-beyond-fd": ("Fréchet distance before and after per-dataset standardisation", 2),
    "ex-protocol-profiles": ("reading the profiles' settings", 1),
}

_OPEN = re.compile(r"^(?P<colons>:{3,})\{(?P<kind>exercise|solution)\}[ \t]*(?P<arg>.*?)\s*$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):[ \t]*(?P<value>.*?)\s*$")
_CODE = re.compile(r"^```(?:python|py|ipython3?)[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Exercise:
    """One exercise of a chapter and its solution's code blocks (``code``: empty for a written answer)."""

    chapter: str
    label: str
    title: str
    text: str
    code: tuple[str, ...] = ()
    practises: str = ""
    difficulty: int | None = None


def _fences(markdown: str, *, chapter: str) -> list[tuple[str, str, dict[str, str], str]]:
    """Each top-level exercise/solution fence: (kind, argument, options, body)."""
    lines, found, i = markdown.splitlines(), [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        close = re.compile(rf"^{m['colons']}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
        if end is None:
            raise BookError(f"chapter {chapter}: the {{{m['kind']}}} fence opened by {lines[i]!r} is never closed; "
                            f"end it with a line {m['colons']}")
        body, options = lines[i + 1 : end], {}
        while body and (opt := _OPTION.match(body[0])):
            options[opt["key"]] = opt["value"]
            body = body[1:]
        found.append((m["kind"], m["arg"], options, "\n".join(body).strip() + "\n"))
        i = end + 1
    return found


def parse_exercises(markdown: str, *, chapter: str) -> list[Exercise]:
    """The exercises of one chapter's Markdown, in order, each with its solution's ``python`` code blocks.

    Parameters
    ----------
    markdown : str
        The chapter's Markdown cells, joined.
    chapter : str
        The chapter's name (``04_lora``), for the records and the error messages.

    Raises
    ------
    BookError
        An exercise without ``:label:``, two with one label, a solution naming no exercise of the
        chapter, or a fence never closed.

    Examples
    --------
    >>> md = ":::{exercise} Count\\n:label: ex-a\\n\\nHow many?\\n:::\\n\\n:::{solution} ex-a\\n"
    >>> md += ":class: dropdown\\n\\n```python\\n1 + 1\\n```\\n:::\\n"
    >>> [(e.label, e.title, e.code) for e in parse_exercises(md, chapter="x")]
    [('ex-a', 'Count', ('1 + 1\\n',))]
    """
    exercises: dict[str, Exercise] = {}
    for kind, arg, options, body in _fences(markdown, chapter=chapter):
        if kind == "exercise":
            label = options.get("label", "")
            if not label:
                raise BookError(f"chapter {chapter}: the exercise {arg or body.splitlines()[0]!r} has no :label:; "
                                "add one (e.g. `:label: ex-<chapter>-<topic>`) so its solution can name it")
            if label in exercises:
                raise BookError(f"chapter {chapter}: two exercises are labelled {label}; give each its own label")
            practises, difficulty = EXERCISE_METADATA.get(label, ("", None))
            exercises[label] = Exercise(chapter, label, arg, body, practises=practises, difficulty=difficulty)
        else:
            if arg not in exercises:
                raise BookError(f"chapter {chapter}: a solution names {arg!r}, which is no exercise above it; "
                                f"write `:::{{solution}} <label>` with the label of its exercise")
            code = tuple(m["code"] for m in _CODE.finditer(body))
            ex = exercises[arg]
            exercises[arg] = Exercise(ex.chapter, ex.label, ex.title, ex.text, ex.code + code, ex.practises,
                                      ex.difficulty)
    return list(exercises.values())


def _markdown(nb: Any) -> str:
    return "\n".join(str(c.get("source", "")) for c in nb.cells if c.get("cell_type") == "markdown")


def chapter_exercises(source: str | os.PathLike[str] | Any, *, chapter: str | None = None) -> list[Exercise]:
    """The exercises of one chapter: ``source`` is ``notebooks/<name>.py`` or a notebook read from it."""
    if isinstance(source, (str, os.PathLike)):
        import jupytext  # lazy: the [book] extra

        path = Path(source)
        return parse_exercises(_markdown(jupytext.read(path, fmt="py:percent")), chapter=chapter or path.stem)
    return parse_exercises(_markdown(source), chapter=chapter or "chapter")


def book_exercises(root: str | os.PathLike[str]) -> list[Exercise]:
    """The exercises of every chapter of the table of contents (repository ``root``), in book order."""
    root = Path(root)
    return [ex for name in list_chapters(root) for ex in chapter_exercises(root / SOURCE_DIR / f"{name}.py")]


def solution_cells(nb: Any, *, chapter: str) -> list[Any]:
    """Code cells running the solutions of ``nb``'s exercises, one per code block, in order.

    Each cell starts with a comment naming the exercise, is tagged :data:`SOLUTION_TAG` and
    ``remove-cell``, and carries the label in ``metadata["emlib_exercise"]``.
    """
    import nbformat  # lazy: the [book] extra

    cells = []
    for ex in chapter_exercises(nb, chapter=chapter):
        for k, code in enumerate(ex.code, start=1):
            part = f", block {k}" if len(ex.code) > 1 else ""
            cells.append(nbformat.v4.new_code_cell(
                f"# solution of exercise {ex.label}{part} ({chapter})\n{code}",
                metadata={"tags": [SOLUTION_TAG, "remove-cell"], "emlib_exercise": ex.label},
            ))
    return cells


def exercise_list(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The teacher's list: one row per exercise of the book (chapter, label, title, practises, difficulty).

    ``difficulty`` is 1 to 3 (:data:`EXERCISE_METADATA`); ``runs_code`` says whether its solution has code.
    """
    return [{"chapter": ex.chapter, "label": ex.label, "title": ex.title, "practises": ex.practises,
             "difficulty": ex.difficulty, "runs_code": bool(ex.code)} for ex in book_exercises(root)]


def _chapter_number(name: str) -> str:
    m = re.match(r"0*(\d+[a-z]?)_", name)
    return m.group(1) if m else "appendix"


def exercises_markdown(root: str | os.PathLike[str]) -> str:
    """The teacher's table of the book's exercises as MyST Markdown (a ``{ref}`` to each, chapter, difficulty
    in stars, what it practises), from :func:`exercise_list`."""
    lines = ["| exercise | chapter | difficulty | practises |", "|---|---|---|---|"]
    for row in exercise_list(root):
        stars = "★" * (row["difficulty"] or 0) or "?"
        lines.append(f"| {{ref}}`{row['label']}` | {_chapter_number(row['chapter'])} | {stars} | {row['practises']} |")
    return "\n".join(lines) + "\n"
