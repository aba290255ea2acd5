"""The book's two editions: the answer key (solutions kept, the default) and the student edition (none).

``python -m emlib.book build --edition student`` builds a book whose pages hold every exercise and
no solution: after each chapter is executed, every ``:::{solution}`` block (a MyST colon fence, or a
backtick fence ```` ```{solution} ````) is cut out of the executed notebook's Markdown cells
(:func:`strip_solutions`), so neither the pages nor the notebooks the pages offer for download
carry one, and sphinx-exercise's ``hide_solutions`` is set in the generated ``_config.yml`` as a
second guard (:func:`edition_sphinx_config`). The default edition, ``answer-key``, is the online
book as it always was: each solution in a dropdown under its exercise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from emlib.errors import ConfigError

__all__ = ["EDITIONS", "DEFAULT_EDITION", "check_edition", "strip_solutions", "strip_notebook_solutions",
           "edition_sphinx_config"]

#: The editions a build can make: ``answer-key`` (solutions kept) and ``student`` (no solutions).
EDITIONS = ("answer-key", "student")
#: The edition of a build that names none: the answer key (the online book, solutions in dropdowns).
DEFAULT_EDITION = "answer-key"

_OPEN = re.compile(r"^\s{0,3}(?P<fence>:{3,}|`{3,})\{solution\}")
_GATED = re.compile(r"\{solution-(start|end)\}")


def check_edition(edition: str) -> str:
    """``edition`` when it is one of :data:`EDITIONS`; else ConfigError, one sentence naming them."""
    if edition not in EDITIONS:
        raise ConfigError(f"edition {edition!r} is not one of {', '.join(EDITIONS)}; pass --edition student for a "
                          "book without solutions, or leave it out for the answer key")
    return edition


def _closes(line: str, fence: str) -> bool:
    """True when ``line`` closes a fence opened by ``fence`` (the same character, at least as many, nothing after)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def strip_solutions(text: str) -> tuple[str, int]:
    """``text`` (MyST Markdown) without its ``{solution}`` blocks, and how many were cut.

    A block runs from its opening fence (``:::{solution} label`` or ```` ```{solution} label ````)
    to the first line that is only that fence character, at least as many times; fences nested
    inside (a ```` ```python ```` example) are kept inside it. Blank lines left where a block was are
    merged into one.

    Raises
    ------
    ConfigError
        An unclosed solution block, or sphinx-exercise's gated ``{solution-start}``/``{solution-end}``
        form (which spans cells and is not supported): one sentence naming the fix.

    Examples
    --------
    >>> strip_solutions("Q\\n\\n:::{solution} ex\\nA\\n```python\\nx\\n```\\n:::\\n\\nafter\\n")
    ('Q\\n\\nafter\\n', 1)
    """
    if _GATED.search(text):
        raise ConfigError("a chapter uses the gated {solution-start}/{solution-end} form, which the student edition "
                          "cannot strip; write the solution as one :::{solution} block")
    out: list[str] = []
    fence: str | None = None
    cut = 0
    for line in text.splitlines(keepends=True):
        if fence is None:
            m = _OPEN.match(line)
            if m:
                fence, cut = m.group("fence"), cut + 1
            else:
                out.append(line)
        elif _closes(line, fence):
            fence = None
    if fence is not None:
        raise ConfigError(f"a {{solution}} block opened with {fence} is never closed; close it with a line {fence}")
    joined = re.sub(r"\n{3,}", "\n\n", "".join(out)) if cut else "".join(out)
    return joined, cut


def strip_notebook_solutions(path: str | Path) -> int:
    """Cut the solutions out of the Markdown cells of the notebook at ``path`` (rewritten in place); how many.

    A Markdown cell left empty is removed. Every string of the notebook's metadata is stripped too:
    papermill records the notebook it was given (``metadata.papermill.input_path``), Markdown cells
    included. Code cells and outputs are untouched.
    """
    import nbformat  # lazy: a [book] dependency

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    total, cells = 0, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            try:
                cell.source, cut = strip_solutions(cell.source)
            except ConfigError as err:
                raise ConfigError(f"{path.name}: {err}") from None
            total += cut
            if cut and not cell.source.strip():
                continue
        cells.append(cell)
    nb.metadata, in_metadata = _strip_strings(nb.metadata)
    total += in_metadata
    if total:
        nb.cells = cells
        nbformat.write(nb, path)
    return total


def _strip_strings(value: Any) -> tuple[Any, int]:
    """``value`` (JSON-like) with :func:`strip_solutions` applied to every string that holds a solution; how many."""
    if isinstance(value, str):
        return strip_solutions(value) if "{solution}" in value else (value, 0)
    if isinstance(value, dict):
        pairs = {k: _strip_strings(v) for k, v in value.items()}
        return type(value)({k: v for k, (v, _) in pairs.items()}), sum(n for _, n in pairs.values())
    if isinstance(value, list):
        pairs = [_strip_strings(v) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    return value, 0


def edition_sphinx_config(edition: str) -> dict[str, Any]:
    """The Sphinx settings an edition adds to the generated ``_config.yml`` (``sphinx.config``)."""
    return {"hide_solutions": True} if check_edition(edition) == "student" else {}
