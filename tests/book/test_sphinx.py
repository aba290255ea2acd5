"""Tests of emlib.book.sphinx: the extension drops scripts registered twice on a page."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from emlib.book.sphinx import MATHJAX_PATH, _dedupe_scripts, _use_local_mathjax, copy_mathjax, mathjax_source, setup

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
    assert calls[0] == (("html-page-context", _dedupe_scripts), {"priority": 900})
    assert [c[0][0] for c in calls[1:]] == ["config-inited", "build-finished"]
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert "emlib.book.sphinx" in config["sphinx"]["extra_extensions"]


def test_mathjax_is_served_from_the_installed_package(tmp_path: Path) -> None:
    source = mathjax_source()
    assert source is not None, "pip install sphinx-mathjax-offline (the [book] extra) to serve MathJax offline"
    config = SimpleNamespace(mathjax_path="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js")
    _use_local_mathjax(None, config)
    assert config.mathjax_path == MATHJAX_PATH
    target = copy_mathjax(tmp_path)
    assert (tmp_path / "mathjax" / "tex-chtml.js").is_file() and target == tmp_path / "mathjax"
    fonts = list((target / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert fonts and not (target / "sre").exists()  # fonts for offline pages; no speech maps (MBs)
