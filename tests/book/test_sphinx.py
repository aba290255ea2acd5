"""Tests of emlib.book.sphinx: the extension drops scripts registered twice on a page."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from emlib.book.sphinx import _dedupe_scripts, setup

REPO = Path(__file__).resolve().parents[2]


def test_duplicate_scripts_are_dropped_once_each() -> None:
    inline = SimpleNamespace(filename=None, attributes={"body": "const THEBE_JS_URL = 1"})
    other_inline = SimpleNamespace(filename="", attributes={"body": "x"})
    plotly = SimpleNamespace(filename="plotly.min.js", attributes={})
    context = {"script_files": [inline, plotly, inline, other_inline, plotly]}
    _dedupe_scripts(None, "index", "page.html", context, None)
    assert context["script_files"] == [inline, plotly, other_inline]


def test_setup_connects_the_hook_and_config_lists_the_extension() -> None:
    calls = []
    app = SimpleNamespace(connect=lambda *args, **kwargs: calls.append((args, kwargs)))
    assert setup(app)["parallel_read_safe"]
    assert calls == [(("html-page-context", _dedupe_scripts), {"priority": 900})]
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert "emlib.book.sphinx" in config["sphinx"]["extra_extensions"]
