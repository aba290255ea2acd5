"""Tests of emlib.book.check: every page of the smoke book renders in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from emlib.book import BuildReport
from emlib.book.check import CHROMIUM, CheckReport, PageReport, _check_links, check_book
from emlib.book.toc import CHAPTER_DIR, BookError, toc_docnames


def test_browser_check(smoke_book: BuildReport) -> None:
    report = smoke_book.check
    if report is None:
        pytest.skip(f"needs {CHROMIUM} (apt-get install chromium) and playwright")
    assert report.ok, "\n".join(report.failures())
    checked = {p.docname for p in report.pages}
    assert set(toc_docnames(smoke_book.book_root)) | {"index"} == checked
    for page in report.pages:
        assert not page.errors, page.errors
        assert page.screenshot is not None and page.screenshot.is_file() and page.screenshot.stat().st_size > 0
    chapters = [p for p in report.pages if p.docname.startswith(CHAPTER_DIR + "/")]
    assert chapters and all(p.figures > 0 and p.figures_rendered == p.figures for p in chapters)
    assert report.screenshots_dir == smoke_book.html_dir.parent / "screenshots"


def test_broken_links_and_anchors_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1>')
    base = "http://127.0.0.1:1/"
    links = [base + "a.html#top", base + "a.html#nope", base + "b.html", "https://example.org/x"]
    assert _check_links(links, base, tmp_path, {}) == [
        "broken anchor /a.html#nope",
        "broken link /b.html (no file b.html)",
    ]


def test_report_lists_each_problem_in_one_line(tmp_path: Path) -> None:
    good = PageReport("index", "u", figures=1, figures_rendered=1)
    bad = PageReport("book/chapters/01_data", "u", errors=["console error: x"], figures=3, figures_rendered=1)
    report = CheckReport(tmp_path, [good, bad], tmp_path / "shots")
    assert good.ok and not bad.ok and not report.ok
    assert report.failures() == ["book/chapters/01_data: console error: x",
                                 "book/chapters/01_data: 2 of 3 plotly figures did not render"]
    assert report.summary().startswith("browser check: 2 pages, 2/4 plotly figures rendered")


def test_check_without_a_built_book_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BookError, match="no built book|no Chromium|playwright"):
        check_book(tmp_path / "_build" / "html")
