"""The one-command build: every chapter executed, then ``jupyter-book build`` with execution off.

``python -m emlib.book build --profile smoke`` (or :func:`build_book`)

1. executes each chapter listed in the table of contents with papermill
   (:func:`emlib.book.execute.execute_chapter`) into ``book/chapters/<name>.ipynb``,
2. writes the one copy of plotly.js the pages load (``book/chapters/_static/plotly.min.js``),
3. runs ``jupyter-book build`` with execution off (the book never runs code itself), and
4. with ``--check`` opens every page in headless Chromium (:func:`emlib.book.check.check_book`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs

from emlib.book.check import CHROMIUM, CheckReport, check_book
from emlib.book.execute import execute_chapter, read_notebook_source
from emlib.book.toc import CHAPTER_DIR, SOURCE_DIR, BookError, find_root, list_chapters, write_toc_subset
from emlib.config import get_profile

__all__ = ["STATIC_DIR", "BuildReport", "build_book", "export_notebooks"]

#: Shared static files of the built book (one copy of plotly.js), relative to the book root.
STATIC_DIR = "book/chapters/_static"


def _write_static(book_root: Path) -> Path:
    """Write the one copy of plotly.js the book pages load (``book/chapters/_static/plotly.min.js``)."""
    static = book_root / STATIC_DIR
    static.mkdir(parents=True, exist_ok=True)
    target = static / "plotly.min.js"
    js = get_plotlyjs()
    if not target.is_file() or target.stat().st_size != len(js.encode()):
        target.write_text(js)
    return target


@dataclass
class BuildReport:
    """What :func:`build_book` did: where things are and how long each step took (seconds)."""

    book_root: Path
    html_dir: Path
    chapters: list[str]
    notebooks: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    check: CheckReport | None = None

    def summary(self) -> str:
        """One line per step."""
        lines = [f"{step}: {sec:.1f} s" for step, sec in self.timings.items()]
        lines.append(f"html: {self.html_dir / 'index.html'}")
        if self.check is not None:
            lines.append(self.check.summary())
        return "\n".join(lines)


def _stage(root: Path, out: Path) -> None:
    """Copy the book's own files (config, toc, front matter) into ``out`` for an out-of-tree build."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, out / name)
    chapters = (root / CHAPTER_DIR).resolve()
    for path in (root / "book").rglob("*"):
        if path.is_file() and chapters not in path.resolve().parents:
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _jupyter_book(book_root: Path, toc: Path | None, *, strict: bool) -> None:
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_root)]
    if toc is not None:
        cmd += ["--toc", str(toc)]
    if strict:
        cmd += ["-W", "--keep-going"]
    log = book_root / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, cwd=book_root, capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + "\n" + proc.stderr)
    log.write_text(text)
    if proc.returncode != 0:
        problems = [line.strip() for line in text.splitlines() if re.search(r"(WARNING|ERROR|Error|Exception)", line)]
        first = problems[0] if problems else (text.strip().splitlines() or ["no output"])[-1]
        raise BookError(
            f"jupyter-book build failed ({len(problems)} warnings/errors; warnings count as errors): "
            f"{first[:300]}; full log: {log}"
        )


def build_book(
    root: str | os.PathLike[str] | None = None,
    *,
    profile: str = "smoke",
    only: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    strict: bool = True,
    check: bool = False,
    chromium: str = CHROMIUM,
    progress: bool = True,
) -> BuildReport:
    """Execute the chapters and build the HTML book; optionally run the browser check.

    Parameters
    ----------
    root : path, default=None
        Repository root (found from the cwd when None).
    profile : str, default='smoke'
        Passed to every chapter as ``-p profile <profile>``.
    only : sequence of str, default=None
        Build only these chapters (names such as ``01_data``); the other chapter pages are
        left out of this build's table of contents.
    out : path, default=None
        Build in this folder instead of the repository (config, toc and front matter are copied
        there; executed notebooks go to ``out/book/chapters``, the HTML to ``out/_build/html``).
    parameters : dict, default=None
        Extra papermill parameters for every chapter (e.g. ``{"out_dir": "/tmp/runs"}``).
    strict : bool, default=True
        Sphinx warnings fail the build (``-W --keep-going``).
    check : bool, default=False
        Run :func:`check_book` after the build.
    chromium : str, default='/usr/bin/chromium'
        Browser for the check.
    progress : bool, default=True
        Print one line per step.

    Returns
    -------
    BuildReport
    """
    get_profile(profile)
    root = find_root() if root is None else Path(root).resolve()
    chapters = list_chapters(root)
    if only:
        unknown = sorted(set(only) - set(chapters))
        if unknown:
            raise BookError(f"--only names {unknown} that are not chapters in _toc.yml; choose from {chapters}")
        chapters = [c for c in chapters if c in set(only)]
    book_root = Path(out).resolve() if out else root
    if out:
        _stage(root, book_root)
    say = print if progress else (lambda *a, **k: None)
    timings: dict[str, float] = {}
    notebooks = {}
    for name in chapters:
        t0 = time.perf_counter()
        say(f"executing {SOURCE_DIR}/{name}.py (profile {profile}) ...", flush=True)
        notebooks[name] = execute_chapter(
            root / SOURCE_DIR / f"{name}.py",
            book_root / CHAPTER_DIR / f"{name}.ipynb",
            profile=profile,
            parameters=parameters,
            cwd=root,
        )
        timings[f"execute {name}"] = time.perf_counter() - t0
    _write_static(book_root)
    toc = None
    if only:
        toc = write_toc_subset(book_root, chapters)
    t0 = time.perf_counter()
    say("jupyter-book build (execution off) ...", flush=True)
    _jupyter_book(book_root, toc, strict=strict)
    timings["jupyter-book build"] = time.perf_counter() - t0
    report = BuildReport(book_root, book_root / "_build" / "html", chapters, notebooks, timings)
    if check:
        t0 = time.perf_counter()
        say("browser check ...", flush=True)
        report.check = check_book(report.html_dir, toc=toc or book_root / "_toc.yml", root=book_root,
                                  chromium=chromium)
        timings["browser check"] = time.perf_counter() - t0
    return report


def export_notebooks(
    dest: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *, gpu: bool = True
) -> list[Path]:
    """Write every chapter as an unexecuted ``.ipynb`` for Colab (``dest/book/chapters/<name>.ipynb``).

    The paths match the book pages, so the theme's Colab button and the chapter badges both work
    once CI pushes ``dest`` to the notebooks branch. ``gpu=True`` asks Colab for a GPU runtime.
    """
    import nbformat  # lazy: nbformat comes with the [book] extra

    base = find_root() if root is None else Path(root)
    written = []
    for name in list_chapters(base):
        nb = read_notebook_source(base / SOURCE_DIR / f"{name}.py")
        if gpu:
            nb.metadata["accelerator"] = "GPU"
            nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
        target = Path(dest) / CHAPTER_DIR / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written
