"""The book's Sphinx extension (listed as ``emlib.book.sphinx`` in ``_config.yml``'s ``extra_extensions``).

- Scripts registered twice on a page are dropped (sphinx-thebe's inline configuration otherwise
  throws in the browser console).
- MathJax is served from the book itself: the MathJax 3 files of the ``sphinx-mathjax-offline``
  package (a ``[book]`` dependency) are copied into ``_static/mathjax`` and ``mathjax_path`` points
  there, so maths renders offline and in the browser check. Only what the TeX-to-HTML renderer
  needs is copied (about 3 MB), not the package's other renderers and speech maps.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["MATHJAX_PACKAGE", "MATHJAX_PATH", "PARTIAL_ENV", "mathjax_source", "copy_mathjax", "setup"]

#: Set (to "1") by ``python -m emlib.book build --only ...``: pages that link to every chapter (the
#: instructor's guide) then leave the links to the chapters left out as text instead of failing.
PARTIAL_ENV = "EMLIB_BOOK_PARTIAL"

#: The PyPI package whose MathJax 3 files the book serves.
MATHJAX_PACKAGE = "sphinx-mathjax-offline"
#: ``mathjax_path`` of the book, relative to ``_static``.
MATHJAX_PATH = "mathjax/tex-chtml.js"
#: What ``tex-chtml.js`` loads on demand: TeX extensions (autoload), fonts, the menu, assistive MathML.
_MATHJAX_PARTS = ("tex-chtml.js", "input/tex", "output/chtml", "ui", "a11y")


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for js in context.get("script_files", []):
        name = getattr(js, "filename", js) or ""  # None and "" both mean an inline script
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def mathjax_source() -> Path | None:
    """The MathJax 3 folder of the installed ``sphinx-mathjax-offline`` package, or None without it."""
    try:
        dist = metadata.distribution(MATHJAX_PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file("sphinx-mathjax-offline/static/mathjax")))
    return folder if (folder / "tex-chtml.js").is_file() else None


def copy_mathjax(static_dir: str | Path, source: Path | None = None) -> Path | None:
    """Copy the MathJax files the book needs into ``<static_dir>/mathjax``; None when the package is missing."""
    source = source or mathjax_source()
    if source is None:
        return None
    target = Path(static_dir) / "mathjax"
    for part in _MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return target


def _use_local_mathjax(app: Any, config: Any) -> None:
    if mathjax_source() is not None and str(config.mathjax_path).startswith("http"):
        config.mathjax_path = MATHJAX_PATH
    if os.environ.get(PARTIAL_ENV):
        config.suppress_warnings = [*config.suppress_warnings, "ref.doc", "ref.ref"]


def _copy_mathjax(app: Any, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html" and app.config.mathjax_path == MATHJAX_PATH:
        copy_mathjax(Path(app.outdir) / "_static")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: drop scripts registered twice on a page; serve MathJax from ``_static``.

    With jupyter-book 1.0.4 and Sphinx 7.4, sphinx-thebe's inline configuration script ends up in
    every page twice, and the second copy throws ``Identifier 'THEBE_JS_URL' has already been
    declared`` in the browser console (even in ``jupyter-book create``'s template book). MathJax
    comes from a CDN by default, so offline the maths stays raw TeX; with ``sphinx-mathjax-offline``
    installed the book serves its own copy.
    """
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("config-inited", _use_local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
