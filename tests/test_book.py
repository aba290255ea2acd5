"""The book builds in one command, every page renders in headless Chromium, failures are one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
import yaml

from emlib import book

REPO = Path(__file__).resolve().parents[1]
HAS_BROWSER = Path(book.CHROMIUM).is_file() and importlib.util.find_spec("playwright") is not None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> book.BuildReport:
    """The whole book, smoke profile, built out of tree (the repository is not touched)."""
    out = tmp_path_factory.mktemp("book")
    runs = tmp_path_factory.getbasetemp() / "emlib-runs"  # shared with tests/test_notebooks.py: no retraining
    runs.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMLIB_DATA", str(shared_data))
        return book.build_book(REPO, profile="smoke", out=out, parameters={"out_dir": str(runs)}, progress=False)


def test_every_toc_page_is_built(built: book.BuildReport) -> None:
    docs = book.toc_docnames(built.book_root)
    assert (built.html_dir / "index.html").is_file()
    missing = [d for d in docs if not (built.html_dir / f"{d}.html").is_file()]
    assert not missing
    assert built.chapters == book.list_chapters(REPO) and built.chapters


def test_chapter_pages_hide_injected_parameters_and_show_badge(built: book.BuildReport) -> None:
    for name in built.chapters:
        html = (built.html_dir / book.CHAPTER_DIR / f"{name}.html").read_text()
        assert "# Parameters" not in html, f"{name}: papermill's injected-parameters cell is visible"
        assert book.colab_url(name) in html, f"{name}: no Open in Colab badge"
        assert "* plotly.js v" not in html, f"{name}: plotly.js pasted into the page"
    assert (built.html_dir / "_static" / "plotly.min.js").is_file()


@pytest.mark.skipif(not HAS_BROWSER, reason=f"needs {book.CHROMIUM} (apt-get install chromium) and playwright")
def test_browser_check(built: book.BuildReport) -> None:
    report = book.check_book(built.html_dir, root=built.book_root)
    assert report.ok, "\n".join(report.failures())
    checked = {p.docname for p in report.pages}
    assert set(book.toc_docnames(built.book_root)) | {"index"} == checked
    for page in report.pages:
        assert not page.errors, page.errors
        assert page.screenshot is not None and page.screenshot.is_file() and page.screenshot.stat().st_size > 0
    chapters = [p for p in report.pages if p.docname.startswith(book.CHAPTER_DIR + "/")]
    assert chapters and all(p.figures > 0 and p.figures_rendered == p.figures for p in chapters)
    assert report.screenshots_dir == built.html_dir.parent / "screenshots"


def test_failing_cell_is_one_line_with_chapter_cell_and_partial_notebook(tmp_path: Path) -> None:
    source = tmp_path / "99_broken.py"
    source.write_text(
        '# %% [markdown]\n# # Broken\n\n# %% tags=["parameters"]\nprofile = "smoke"\n\n'
        '# %%\nx = 1\n\n# %%\nraise ValueError("boom")\n'
    )
    output = tmp_path / "out" / "99_broken.ipynb"
    with pytest.raises(book.BookError) as info:
        book.execute_chapter(source, output)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("chapter 99_broken failed at cell 4 of ")
    assert "ValueError: boom" in message and message.endswith(f"partial notebook: {output}")
    assert output.is_file()


def test_only_keeps_front_matter_and_the_chosen_chapters() -> None:
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "The study", "chapters": [{"file": "book/chapters/01_data"}, {"file": "book/chapters/02_x"}]},
        {"caption": "Later", "chapters": [{"file": "book/chapters/03_y"}]},
        {"caption": "Reference", "chapters": [{"file": "book/glossary"}]},
    ]}
    subset = book._filter_toc(toc, {"book/chapters/01_data"})
    assert list(book._toc_files(subset)) == ["book/intro", "book/chapters/01_data", "book/glossary"]
    assert [p["caption"] for p in subset["parts"]] == ["The study", "Reference"]


def test_badge_and_theme_colab_button_point_at_the_same_notebook() -> None:
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    theme = f"{config['launch_buttons']['colab_url']}/github/{repo}/blob/{config['repository']['branch']}"
    for name in book.list_chapters(REPO):
        assert book.colab_url(name) == f"{theme}/{book.CHAPTER_DIR}/{name}.ipynb"


def test_export_writes_clean_colab_notebooks(tmp_path: Path) -> None:
    written = book.export_notebooks(tmp_path, REPO)
    assert [p.stem for p in written] == book.list_chapters(REPO)
    for path in written:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["accelerator"] == "GPU" and nb.metadata["kernelspec"]["name"] == "python3"
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_cli_rejects_unknown_chapter_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert book.main(["build", "--root", str(REPO), "--only", "99_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emlib.book: error: --only names ['99_nope']") and err.count("\n") == 1
