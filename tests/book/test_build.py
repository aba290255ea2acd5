"""Tests of emlib.book.build: the whole smoke book builds in one call, and the Colab export."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from emlib.book import BookError, BuildReport, build_book
from emlib.book.build import export_notebooks
from emlib.book.execute import colab_url
from emlib.book.toc import CHAPTER_DIR, list_chapters, toc_docnames
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_every_toc_page_is_built(smoke_book: BuildReport) -> None:
    docs = toc_docnames(smoke_book.book_root)
    assert (smoke_book.html_dir / "index.html").is_file()
    missing = [d for d in docs if not (smoke_book.html_dir / f"{d}.html").is_file()]
    assert not missing
    assert smoke_book.chapters == list_chapters(REPO) and smoke_book.chapters
    assert set(smoke_book.notebooks) == set(smoke_book.chapters)
    assert [f"execute {c}" for c in smoke_book.chapters] == list(smoke_book.timings)[: len(smoke_book.chapters)]
    assert "jupyter-book build" in smoke_book.timings and "html: " in smoke_book.summary()


def test_chapter_pages_hide_injected_parameters_and_show_badge(smoke_book: BuildReport) -> None:
    for name in smoke_book.chapters:
        html = (smoke_book.html_dir / CHAPTER_DIR / f"{name}.html").read_text()
        assert "# Parameters" not in html, f"{name}: papermill's injected-parameters cell is visible"
        assert colab_url(name) in html, f"{name}: no Open in Colab badge"
        assert "* plotly.js v" not in html, f"{name}: plotly.js pasted into the page"
    assert (smoke_book.html_dir / "_static" / "plotly.min.js").is_file()


def test_unknown_profile_or_chapter_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        build_book(REPO, profile="nope", out=tmp_path)
    with pytest.raises(BookError, match=r"--only names \['99_nope'\]"):
        build_book(REPO, only=["99_nope"], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_export_writes_clean_colab_notebooks(tmp_path: Path) -> None:
    written = export_notebooks(tmp_path, REPO)
    assert [p.stem for p in written] == list_chapters(REPO)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["accelerator"] == "GPU" and nb.metadata["kernelspec"]["name"] == "python3"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
