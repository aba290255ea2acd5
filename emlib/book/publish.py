"""The notebooks Colab opens: every chapter as ``.ipynb``, its install pinned to the commit of the book.

``python -m emlib.book export DEST`` (or :func:`export_notebooks`) writes
``DEST/book/chapters/<name>.ipynb``, the paths the book pages have, so the workflow can push ``DEST``
to the ``notebooks`` branch where the "Open in Colab" badges and the theme's launch button look.
The repository and commit come from :func:`~emlib.book.repository.resolve_source`
(``--repository OWNER/NAME --commit SHA``; the workflow passes ``${{ github.repository }}`` and
``${{ github.sha }}``).

The chapter sources carry no Colab cell: the export inserts one, before the parameters cell, that
installs emlib at the pinned commit (:attr:`~emlib.book.repository.BookSource.requirement`) and
prepares the session (:func:`~emlib.chapters.colab.colab_setup`):

.. code-block:: python

    EMLIB = "emlib-vfm @ git+https://github.com/<repository>@<commit>"
    ...
    colab_setup("quick")  # the GPU, the data and the profile's weights, with progress bars

A chapter whose header metadata holds ``emlib: {colab_setup: {families: true}}`` fetches one backbone
per family too. The profile of the Colab session, in ``colab_setup(...)`` and in the parameters cell,
is ``profile`` (``quick`` by default: what the online edition shows); a chapter without a parameters
cell stops the export, so nothing unpinned is ever published.

The Markdown cells are rewritten from MyST into what Jupyter renders (:mod:`emlib.book.myst`): glued
values from the executed chapter, citations as plain text with a references cell at the end, terms
as links to the online glossary, exercises as headings and solutions collapsed. With ``executed=``
(``--executed book/chapters``, what the workflow publishes) the chapters come with the outputs and
glued values of the book's build; without it, unexecuted (a glued value shows its name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emlib.book.execute import read_notebook_source
from emlib.book.myst import MystContext, MystError, cited_keys, myst_to_markdown, parse_bibliography, references_markdown
from emlib.book.repository import BookSource, resolve_source
from emlib.book.toc import CHAPTER_DIR, SOURCE_DIR, BookError, find_root, list_chapters
from emlib.config import get_profile

__all__ = ["INSTALL_LINE", "SETUP_CALL", "PROFILE_LINE", "COLAB_TAG", "colab_cell", "pin_notebook", "read_glue",
           "read_bibliography", "markdown_for_colab", "export_notebooks"]

#: The install line of the Colab cell (the requirement is group 2).
INSTALL_LINE = re.compile(r'^(\s*EMLIB = )"(emlib-vfm @ git\+[^"]+)"', re.M)
#: A folder parameter papermill injected for the build (``out_dir``, ``data_dir``, ``weights_dir``, ``cache_dir``):
#: dropped from an exported chapter, whose parameters cell then gives the reader's own defaults.
BUILD_PATH_LINE = re.compile(r'^(?:out_dir|data_dir|weights_dir|cache_dir)\s*=.*\n?', re.M)
#: The call that prepares the Colab session, with its profile (group 2).
SETUP_CALL = re.compile(r'^(\s*colab_setup\()"([\w-]+)"', re.M)
#: The profile parameter of a chapter's parameters cell (group 2).
PROFILE_LINE = re.compile(r'^(profile\s*=\s*)"([\w-]+)"', re.M)
#: The tag of the Colab cell the export inserts.
COLAB_TAG = "colab-install"
#: The MIME prefix of glued values (MyST-NB's, the one :func:`emlib.chapters.pages.glue_facts` writes).
GLUE_PREFIX = "application/papermill.record/"
#: The glossary page of the book, relative to the online edition.
GLOSSARY_PAGE = "book/glossary.html"

_COLAB_SOURCE = """\
# Colab only: install emlib at the commit this book was built from (nothing happens anywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    EMLIB = "{requirement}"  # the commit this notebook was exported from
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", EMLIB], check=True)
    from emlib import colab_setup

    colab_setup("{profile}"{options})  # the GPU (device="auto" uses it), the data and the weights, with progress bars
"""


def _tagged(cell: Any, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def colab_cell(book_source: BookSource, *, profile: str = "quick", families: bool = False) -> Any:
    """The Colab cell the export puts before a chapter's parameters cell: the pinned install, then the setup.

    Parameters
    ----------
    book_source : BookSource
        Repository and commit to install (its :attr:`~BookSource.requirement`).
    profile : str, default='quick'
        The profile ``colab_setup`` prepares.
    families : bool, default=False
        Fetch one backbone per family too (``colab_setup(..., families=True)``).

    Returns
    -------
    nbformat.NotebookNode
        A code cell tagged :data:`COLAB_TAG` and ``hide-input``.
    """
    import nbformat  # lazy: nbformat comes with the [book] extra

    options = ", families=True" if families else ""
    source = _COLAB_SOURCE.format(requirement=book_source.requirement, profile=profile, options=options)
    return nbformat.v4.new_code_cell(source.rstrip("\n"), metadata={"tags": [COLAB_TAG, "hide-input"]})


def pin_notebook(nb: Any, book_source: BookSource, *, profile: str = "quick", name: str = "chapter") -> Any:
    """Insert the pinned Colab cell before a chapter's parameters cell and set its Colab profile (in place).

    Parameters
    ----------
    nb : nbformat.NotebookNode
        A chapter read by :func:`~emlib.book.execute.read_notebook_source` (or executed by the build).
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
        The chapter has no parameters cell with a ``profile = "..."`` line.
    """
    get_profile(profile)  # an unknown profile fails here, with the list of known ones
    params = next((c for c in nb.cells if c.get("cell_type") == "code" and _tagged(c, "parameters")), None)
    if params is None or not PROFILE_LINE.search(params.source):
        raise BookError(
            f'chapter {name} has no parameters cell with a profile = "PROFILE" line, so its Colab profile cannot be '
            f'set; start the chapter\'s code with the parameters cell of the other chapters (tags=["parameters"])'
        )
    meta = dict(nb.metadata.get("emlib", {}))
    families = bool(meta.get("colab_setup", {}).get("families", False))
    nb.cells = [c for c in nb.cells if not _tagged(c, COLAB_TAG)]  # exported twice: one Colab cell
    nb.cells.insert(nb.cells.index(params), colab_cell(book_source, profile=profile, families=families))
    params.source = PROFILE_LINE.sub(lambda m: f'{m.group(1)}"{profile}"', params.source, count=1)
    for cell in nb.cells:  # an executed chapter also has papermill's cell with the parameters of its build
        if cell.get("cell_type") == "code" and _tagged(cell, "injected-parameters"):
            cell.source = PROFILE_LINE.sub(lambda m: f'{m.group(1)}"{profile}"', cell.source, count=1)
            cell.source = BUILD_PATH_LINE.sub("", cell.source)  # the builder's folders mean nothing on Colab
    nb.metadata["emlib"] = {**meta, "repository": book_source.repository, "commit": book_source.commit,
                            "profile": profile, "requirement": book_source.requirement}
    return nb


def read_glue(nb: Any) -> dict[str, str]:
    """The values an executed chapter glued (``text/plain`` of each ``scrapbook`` record), by name.

    A chapter records them with :func:`~emlib.chapters.pages.glue_facts` or ``myst_nb.glue``; an
    unexecuted chapter has none.
    """
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get("scrapbook", {})
            prefix = record.get("mime_prefix", GLUE_PREFIX)
            text = out.get("data", {}).get(f"{prefix}text/plain")
            if record.get("name") and text is not None:
                values[record["name"]] = "".join(text) if isinstance(text, list) else str(text)
    return values


def read_bibliography(root: Path) -> dict[str, Any]:
    """Every entry of the book's ``bibtex_bibfiles`` (``_config.yml``), by key."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text()) if (root / "_config.yml").is_file() else {}
    refs: dict[str, Any] = {}
    for bib in (config or {}).get("bibtex_bibfiles", []):
        refs.update(parse_bibliography((root / bib).read_text(encoding="utf-8")))
    return refs


def markdown_for_colab(nb: Any, context: MystContext, *, name: str = "chapter") -> Any:
    """Rewrite a chapter's Markdown cells from MyST into what Jupyter renders, and end it with its references.

    Raises
    ------
    BookError
        MyST the export cannot convert (a citation missing from the bibliography), naming the chapter.
    """
    import nbformat

    markdown = [c for c in nb.cells if c.get("cell_type") == "markdown"]
    keys = cited_keys("\n".join(c.source for c in markdown))
    try:
        for cell in markdown:
            cell.source = myst_to_markdown(cell.source, context)
    except MystError as err:
        raise BookError(f"chapter {name}: {err}") from None
    references = references_markdown(keys, context.references)
    if references:
        nb.cells.append(nbformat.v4.new_markdown_cell(references, metadata={"tags": ["references"]}))
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
    references = read_bibliography(base)
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
        context = MystContext(glue=read_glue(nb), references=references,
                              glossary_url=book_source.online_edition + GLOSSARY_PAGE)
        nb = markdown_for_colab(nb, context, name=name)
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
