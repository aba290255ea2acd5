"""The study-companion book: the one-command build and the browser check (no science in here).

A chapter is a Jupytext percent-format notebook ``notebooks/<name>.py``; the book lists it as
``book/chapters/<name>`` in ``_toc.yml``. **Adding a chapter = adding the ``.py`` file and that
one ``_toc.yml`` line.** ``python -m emlib.book build --profile smoke`` (or ``emlib book build``) then

1. converts each chapter listed in the table of contents with jupytext (in memory),
2. executes it once with papermill (``-p profile smoke``) into ``book/chapters/<name>.ipynb``;
   the kernel gets ``PLOTLY_RENDERER`` so plotly writes HTML the static book can show; one
   progress line per code cell says which chapter and cell run and for how long,
3. post-processes the executed notebook: the ``injected-parameters`` cell is tagged
   ``remove-cell``, an "Open in Colab" badge goes under the title, and on a profile without
   pretrained weights (smoke) a banner names the profile and weights and links to the online
   edition; plotly.js is served once from ``_static`` instead of being pasted into every page,
   MathJax-from-CDN tags are dropped (the book serves MathJax itself, see :mod:`emlib.book.sphinx`),
4. writes the chapter timings that the instructor's guide shows (``book/chapters/timings.md``),
5. runs ``jupyter-book build`` with execution off (the book never runs code itself), and
6. with ``--check`` (or ``python -m emlib.book check``) opens every page in headless Chromium,
   failing on JavaScript errors, broken internal links, missing images, plotly figures that did
   not render, and layout faults (an element wider than its column, a plotly title or legend
   outside its figure, maths left as raw TeX, output text cut short with "..."), and saves one
   screenshot per page under ``_build/screenshots/``.

A failing cell stops the build with one line naming the chapter, the cell and where the partial
notebook is. Colab opens notebooks, not ``.py`` files: the workflow publishes ``.ipynb`` copies
whose first code cell, added by the export, installs emlib at the commit the book was built from
and whose Markdown holds no MyST (``python -m emlib.book export``) to the ``notebooks`` branch at the same paths the book pages have, so both the badge and
the theme's Colab launch button open them. The repository in every link is derived, never typed in.

- :mod:`emlib.book.toc`: the book root, the table of contents and its chapters;
- :mod:`emlib.book.execute`: one chapter executed with papermill and post-processed, the Colab badge;
- :mod:`emlib.book.exercises`: the chapters' exercises and solutions (run by ``--solutions``), the teacher's list;
- :mod:`emlib.book.parameters`: the ``-p`` values, checked against each chapter's parameters cell before anything runs;
- :mod:`emlib.book.build`: the whole build;
- :mod:`emlib.book.shards`: the build in shards (``--shard I/N`` trains a share of the runs, ``--merge`` builds from them);
- :mod:`emlib.book.repository`: the repository and commit the book comes from (links, buttons, Colab pins);
- :mod:`emlib.book.publish`: the export of the chapters for Colab, their install pinned;
- :mod:`emlib.book.myst`: the book's MyST as Markdown Jupyter renders (glue, citations, terms, solutions);
- :mod:`emlib.book.check`: the browser check;
- :mod:`emlib.book.sphinx`: the Sphinx extension listed in ``_config.yml``;
- :mod:`emlib.book.commands`: ``python -m emlib.book`` and ``emlib book``.

What the chapters themselves call (settings, data, backbones) is in :mod:`emlib.chapters.settings`.
"""

from __future__ import annotations

from emlib.book.build import STATIC_DIR, TIMINGS, BuildReport, build_book, write_timings
from emlib.book.check import CHROMIUM, LAYOUT_JS, CheckReport, PageReport, check_book
from emlib.book.commands import add_book_command, main
from emlib.book.execute import (
    PLOTLY_RENDERER,
    CellProgress,
    colab_badge_markdown,
    colab_url,
    execute_chapter,
    postprocess_notebook,
    profile_banner_markdown,
    read_notebook_source,
)
from emlib.book.exercises import Exercise, book_exercises, exercise_list, exercises_markdown
from emlib.book.publish import export_notebooks, pin_notebook
from emlib.book.repository import FALLBACK_REPOSITORY, NOTEBOOKS_BRANCH, BookSource, resolve_source, write_book_config
from emlib.book.shards import ShardReport, book_runs, build_shard, merge_shards
from emlib.book.toc import CHAPTER_DIR, SOURCE_DIR, BookError, find_root, list_chapters, toc_docnames

__all__ = [
    "BookError",
    "BookSource",
    "resolve_source",
    "write_book_config",
    "FALLBACK_REPOSITORY",
    "NOTEBOOKS_BRANCH",
    "SOURCE_DIR",
    "CHAPTER_DIR",
    "STATIC_DIR",
    "TIMINGS",
    "LAYOUT_JS",
    "CellProgress",
    "profile_banner_markdown",
    "write_timings",
    "PLOTLY_RENDERER",
    "CHROMIUM",
    "find_root",
    "toc_docnames",
    "list_chapters",
    "colab_url",
    "colab_badge_markdown",
    "read_notebook_source",
    "execute_chapter",
    "postprocess_notebook",
    "build_book",
    "BuildReport",
    "build_shard",
    "merge_shards",
    "book_runs",
    "ShardReport",
    "Exercise",
    "book_exercises",
    "exercise_list",
    "exercises_markdown",
    "export_notebooks",
    "pin_notebook",
    "check_book",
    "CheckReport",
    "PageReport",
    "add_book_command",
    "main",
]
