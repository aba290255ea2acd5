"""Tests of emlib.book.check: every page of the smoke book renders in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from emlib.book import BuildReport
from emlib.book.check import (CHROMIUM, CHROMIUM_FLAGS, LAYOUT_JS, VIEWPORTS, CheckReport, PageReport, _check_links,
                              check_book)
from emlib.book.toc import CHAPTER_DIR, BookError, toc_docnames

from .conftest import HAS_BROWSER


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
        assert sorted(page.screenshots) == sorted(VIEWPORTS) and all(p.is_file() for p in page.screenshots.values())
    assert not [e for p in report.pages for e in p.errors if e.startswith("layout:")]  # no overflow, clipping, raw TeX
    chapters = [p for p in report.pages if p.docname.startswith(CHAPTER_DIR + "/")]
    assert chapters and all(p.figures_rendered == p.figures for p in chapters)
    study = [p for p in chapters if p.docname.split("/")[-1][:1].isdigit()]  # the numbered chapters draw; appendices may not
    assert study and all(p.figures > 0 for p in study)
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


_PAGE = """<html><head><style>.emlib-scroll {{ overflow-x: auto }} article {{ width: 600px }}
.cell_output .output {{ overflow-x: auto; max-width: 100% }}</style></head><body><main>
<article class="bd-article">{body}</article></main></body></html>"""


def _layout_problems(body: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[f for f in CHROMIUM_FLAGS if f != "--headless"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_content(_PAGE.format(body=body))
        problems = page.evaluate(LAYOUT_JS)
        browser.close()
    return problems


def test_layout_assertions_catch_overflow_raw_tex_and_cut_text() -> None:
    if not HAS_BROWSER:
        pytest.skip(f"needs {CHROMIUM} and playwright")
    wide = '<table style="width: 900px"><tr><td>x</td></tr></table>'
    assert _layout_problems(f'<div class="emlib-scroll">{wide}</div>') == []  # the book's scroll box holds it
    hidden = _layout_problems(f'<div class="cell_output"><div class="output">{wide}</div></div>')
    assert len(hidden) == 1 and hidden[0].startswith("wider than its column (900 px in 600 px): <table>")
    raw = _layout_problems('<span class="math">\\(x^2\\)</span>')
    assert raw == ['1 formulas not rendered (raw TeX): <span.math> "\\(x^2\\)"']
    cut = _layout_problems('<div class="cell_output"><table><tr><td>LoRA improves in-doma...</td></tr></table></div>')
    assert cut == ['text cut short: <td> "LoRA improves in-doma..."']
    svg = ('<div class="plotly-graph-div"><svg class="main-svg" width="300" height="100"></svg>'
           '<div class="legend" style="position: absolute; left: 250px; top: 20px; width: 200px; height: 20px">'
           'mask</div></div>')
    assert [p.split(":")[0] for p in _layout_problems(svg)] == ["plotly legend outside its figure \"\""]


_FIGURE = """<div class="plotly-graph-div" id="f"><svg class="main-svg" width="500" height="300">
<text class="gtitle" x="10" y="20" font-size="15">A long figure title that runs right</text>
<g class="annotation" data-index="0"><rect x="{x}" y="5" width="100" height="20"></rect></g></svg></div>
<script>document.getElementById('f').layout = {{annotations: [{{name: 'emlib-badge', yref: 'paper', y: 1}}]}};</script>"""


def test_layout_assertions_catch_a_badge_over_a_title_and_a_page_too_wide() -> None:
    if not HAS_BROWSER:
        pytest.skip(f"needs {CHROMIUM} and playwright")
    assert _layout_problems(_FIGURE.format(x=380)) == []  # the badge right of the title's end
    over = _layout_problems(_FIGURE.format(x=100))
    assert len(over) == 1 and over[0].startswith('plotly title over badge in "A long figure title')
    wide = _layout_problems('<div style="width: 1500px">x</div>')
    assert any(p.startswith("page wider than the window (") and "in 1000 px)" in p for p in wide)


def test_every_width_has_its_screenshot_name() -> None:
    assert sorted(VIEWPORTS) == [390, 1280]
