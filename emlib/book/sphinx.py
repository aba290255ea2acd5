"""The book's Sphinx extension (listed as ``emlib.book.sphinx`` in ``_config.yml``'s ``extra_extensions``)."""

from __future__ import annotations

from typing import Any

__all__ = ["setup"]


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


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: drop scripts registered twice on a page.

    With jupyter-book 1.0.4 and Sphinx 7.4, sphinx-thebe's inline configuration script ends up in
    every page twice, and the second copy throws ``Identifier 'THEBE_JS_URL' has already been
    declared`` in the browser console (even in ``jupyter-book create``'s template book).
    """
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
