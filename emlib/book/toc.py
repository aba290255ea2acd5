"""The book's table of contents: where the book is, which pages and chapters it lists.

A chapter is a Jupytext percent-format notebook ``notebooks/<name>.py``; the book lists it as
``book/chapters/<name>`` in ``_toc.yml``. **Adding a chapter = adding the ``.py`` file and that
one ``_toc.yml`` line.**
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emlib.errors import EmlibError

__all__ = [
    "BookError",
    "SOURCE_DIR",
    "CHAPTER_DIR",
    "find_root",
    "toc_docnames",
    "list_chapters",
    "write_toc_subset",
]

#: Chapter sources and where the executed notebooks go (relative to the book root).
SOURCE_DIR = "notebooks"
CHAPTER_DIR = "book/chapters"


class BookError(EmlibError, RuntimeError):
    """The book could not be built or checked; the message says which chapter/page and why."""


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The book root: the nearest folder (upwards from ``start`` or the cwd) with ``_toc.yml`` and ``notebooks/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "_config.yml").is_file() and (folder / SOURCE_DIR).is_dir():
            return folder
    raise BookError(
        f"no book root above {here} (a folder with _config.yml, _toc.yml and {SOURCE_DIR}/); "
        "run from the repository or pass --root"
    )


def _read_toc(toc_path: Path) -> dict[str, Any]:
    import yaml  # lazy: PyYAML comes with the [book] extra

    try:
        toc = yaml.safe_load(toc_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BookError(f"cannot read the table of contents {toc_path}: {err}") from None
    if not isinstance(toc, dict) or "root" not in toc:
        raise BookError(f"{toc_path} has no 'root' entry; it must be a jupyter-book _toc.yml")
    return toc


def _toc_files(node: Any) -> Iterator[str]:
    """Every ``file`` (and ``root``) entry of a toc, in order."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _strip_suffix(doc: str) -> str:
    return re.sub(r"\.(ipynb|md|py)$", "", doc.strip("/"))


def toc_docnames(root: Path, toc: str | os.PathLike[str] | None = None) -> list[str]:
    """Docnames (paths without suffix) of every page in the table of contents."""
    return [_strip_suffix(f) for f in _toc_files(_read_toc(Path(toc) if toc else root / "_toc.yml"))]


def list_chapters(root: str | os.PathLike[str] | None = None, *, only: Sequence[str] | None = None) -> list[str]:
    """Names of the chapters in the table of contents (``book/chapters/<name>``), in book order.

    Parameters
    ----------
    root : path, default=None
        The book's root (None: found from the current folder).
    only : sequence of str, default=None
        Keep only these chapters (``--only``), still in book order.

    Raises
    ------
    BookError
        A chapter in ``_toc.yml`` has no ``notebooks/<name>.py``, or ``only`` names one that is not in it.
    """
    base = find_root(root) if root is None else Path(root)
    names = []
    for doc in toc_docnames(base):
        if doc.startswith(CHAPTER_DIR + "/"):
            name = doc[len(CHAPTER_DIR) + 1 :]
            if not (base / SOURCE_DIR / f"{name}.py").is_file():
                raise BookError(
                    f"_toc.yml lists {doc} but {SOURCE_DIR}/{name}.py does not exist; add the notebook or drop the line"
                )
            names.append(name)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise BookError(f"--only names {unknown} that are not chapters in _toc.yml; choose from {names}")
        names = [c for c in names if c in set(only)]
    return names


def _filter_toc(node: Any, keep: set[str]) -> Any:
    """A copy of a toc without the chapter pages not in ``keep`` (emptied parts/sections dropped)."""
    if isinstance(node, list):
        items = [_filter_toc(item, keep) for item in node]
        return [i for i in items if i is not None]
    if isinstance(node, dict):
        doc = node.get("file")
        if isinstance(doc, str):
            doc = _strip_suffix(doc)
            if doc.startswith(CHAPTER_DIR + "/") and doc not in keep:
                return None
        out = {}
        for key, value in node.items():
            if isinstance(value, (list, dict)):
                value = _filter_toc(value, keep)
                if value in (None, []):
                    continue
            out[key] = value
        if "file" not in out and "root" not in out and not any(isinstance(v, list) for v in out.values()):
            return None
        return out
    return node



def write_toc_subset(book_root: Path, chapters: Sequence[str]) -> Path:
    """Write the book's ``_toc.yml`` without the chapters not in ``chapters`` (``_build/_toc.subset.yml``)."""
    import yaml  # lazy: PyYAML comes with the [book] extra

    subset = _filter_toc(_read_toc(book_root / "_toc.yml"), {f"{CHAPTER_DIR}/{c}" for c in chapters})
    toc = book_root / "_build" / "_toc.subset.yml"
    toc.parent.mkdir(parents=True, exist_ok=True)
    toc.write_text(yaml.safe_dump(subset, sort_keys=False))
    return toc
