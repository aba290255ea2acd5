"""The notebooks Colab opens: every chapter as ``.ipynb``, its install pinned to the commit of the book.

``python -m emlib.book export DEST`` (or :func:`export_notebooks`) writes
``DEST/book/chapters/<name>.ipynb``, the paths the book pages have, so the workflow can push ``DEST``
to the ``notebooks`` branch where the "Open in Colab" badges and the theme's launch button look.
The repository and commit come from :func:`~emlib.book.repository.resolve_source`
(``--repository OWNER/NAME --commit SHA``; the workflow passes ``${{ github.repository }}`` and
``${{ github.sha }}``).

Every chapter starts with a "Colab only" code cell. In the source it installs the default branch:

.. code-block:: python

    EMLIB = "emlib-vfm @ git+https://github.com/<repository>@main"  # `emlib book export` pins it
    ...
    colab_setup("quick")  # the GPU, the data and the profile's weights, with progress bars

The export rewrites that ``EMLIB = ...`` line with the pinned requirement
(:attr:`~emlib.book.repository.BookSource.requirement`), and sets the profile of the Colab session,
in ``colab_setup(...)`` and in the parameters cell, to ``profile`` (``quick`` by default: what the
online edition shows). A chapter whose first cell lacks these lines stops the export, so nothing
unpinned is ever published. With ``executed=`` (``--executed book/chapters``, what the workflow
publishes) the chapters come with the outputs of the book's build; without it, unexecuted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emlib.book.execute import read_notebook_source
from emlib.book.repository import BookSource, resolve_source
from emlib.book.toc import CHAPTER_DIR, SOURCE_DIR, BookError, find_root, list_chapters
from emlib.config import get_profile

__all__ = ["INSTALL_LINE", "SETUP_CALL", "PROFILE_LINE", "pin_notebook", "export_notebooks"]

#: The install line of a chapter's first code cell (the requirement is group 2).
INSTALL_LINE = re.compile(r'^(\s*EMLIB = )"(emlib-vfm @ git\+[^"]+)"', re.M)
#: The call that prepares the Colab session, with its profile (group 2).
SETUP_CALL = re.compile(r'^(\s*colab_setup\()"([\w-]+)"', re.M)
#: The profile parameter of a chapter's parameters cell (group 2).
PROFILE_LINE = re.compile(r'^(profile\s*=\s*)"([\w-]+)"', re.M)


def _code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.get("cell_type") == "code"]


def pin_notebook(nb: Any, book_source: BookSource, *, profile: str = "quick", name: str = "chapter") -> Any:
    """Pin the Colab install of a chapter notebook to ``book_source`` and set its Colab profile (in place).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        A chapter read by :func:`~emlib.book.execute.read_notebook_source`.
    book_source : BookSource
        Repository and commit to install (its :attr:`~BookSource.requirement`).
    profile : str, default='quick'
        The profile the Colab session prepares (``colab_setup``) and the parameters cell starts with.
    name : str, default='chapter'
        The chapter's name, for the error message.

    Returns
    -------
    nbformat.NotebookNode
        ``nb``, with ``metadata["emlib"]`` recording repository, commit and profile.

    Raises
    ------
    BookError
        The first code cell has no ``EMLIB = "emlib-vfm @ git+..."`` line or ``colab_setup("...")`` call,
        or the second code cell no ``profile = "..."`` line.
    """
    get_profile(profile)  # an unknown profile fails here, with the list of known ones
    code = _code_cells(nb)
    first, params = (code + [None, None])[:2]
    checks = [(first, INSTALL_LINE, 'EMLIB = "emlib-vfm @ git+..."', "first"),
              (first, SETUP_CALL, 'colab_setup("PROFILE")', "first"),
              (params, PROFILE_LINE, 'profile = "PROFILE"', "second (parameters)")]
    for cell, pattern, what, which in checks:
        if cell is None or not pattern.search(cell.source):
            raise BookError(
                f"chapter {name} has no {what} line in its {which} code cell, so its Colab install cannot be "
                f"pinned; start the chapter with the Colab cell of the other chapters"
            )
    first.source = INSTALL_LINE.sub(lambda m: f'{m.group(1)}"{book_source.requirement}"', first.source, count=1)
    first.source = SETUP_CALL.sub(lambda m: f'{m.group(1)}"{profile}"', first.source, count=1)
    params.source = PROFILE_LINE.sub(lambda m: f'{m.group(1)}"{profile}"', params.source, count=1)
    for cell in code:  # an executed chapter also has papermill's cell with the parameters of its build
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = PROFILE_LINE.sub(lambda m: f'{m.group(1)}"{profile}"', cell.source, count=1)
    nb.metadata["emlib"] = {"repository": book_source.repository, "commit": book_source.commit,
                            "profile": profile, "requirement": book_source.requirement}
    return nb


def export_notebooks(
    dest: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    book_source: BookSource | None = None,
    profile: str = "quick",
    only: Sequence[str] | None = None,
    gpu: bool = True,
    executed: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write every chapter as an ``.ipynb`` for Colab (``dest/book/chapters/<name>.ipynb``), its install pinned.

    Parameters
    ----------
    dest : path
        Folder to write into (the workflow pushes it to the ``notebooks`` branch).
    root : path, default=None
        The book root (found from the cwd when None).
    book_source : BookSource, default=None
        Repository and commit the first cells install; None derives them from ``root``
        (:func:`~emlib.book.repository.resolve_source`).
    profile : str, default='quick'
        The profile each notebook starts with on Colab (see :func:`pin_notebook`).
    only : sequence of str, default=None
        Export only these chapters.
    gpu : bool, default=True
        Ask Colab for a GPU runtime (notebook metadata).
    executed : path, default=None
        A folder of executed chapters (``book/chapters`` after ``python -m emlib.book build``): publish
        those, with their outputs, so a reader sees the results before running anything. None: the
        unexecuted sources (``notebooks/<name>.py``).

    Returns
    -------
    list of Path
        The written notebooks, in the order of the table of contents.
    """
    import nbformat  # lazy: nbformat comes with the [book] extra

    base = find_root() if root is None else Path(root).resolve()
    book_source = book_source or resolve_source(base)
    get_profile(profile)
    chapters = list_chapters(base, only=only)
    notebooks = {}
    if executed is not None:
        missing = [name for name in chapters if not (Path(executed) / f"{name}.ipynb").is_file()]
        if missing:
            raise BookError(f"no executed notebook of {missing} in {executed}; build the book first "
                            f"(`python -m emlib.book build --profile {profile}`) or export without --executed")
    for name in chapters:  # every chapter pinned before anything is written
        if executed is None:
            nb = read_notebook_source(base / SOURCE_DIR / f"{name}.py")
        else:
            nb = nbformat.read(Path(executed) / f"{name}.ipynb", as_version=4)
        notebooks[name] = pin_notebook(nb, book_source, profile=profile, name=name)
        if gpu:
            nb.metadata["accelerator"] = "GPU"
            nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    written = []
    for name, nb in notebooks.items():
        target = Path(dest) / CHAPTER_DIR / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written
