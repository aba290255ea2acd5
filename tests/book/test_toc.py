"""Tests of emlib.book.toc: the book root, the pages and chapters of _toc.yml, the --only subset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emlib.book.toc import (
    CHAPTER_DIR,
    SOURCE_DIR,
    BookError,
    _filter_toc,
    _toc_files,
    find_root,
    list_chapters,
    toc_docnames,
    write_toc_subset,
)

REPO = Path(__file__).resolve().parents[2]


def test_only_keeps_front_matter_and_the_chosen_chapters() -> None:
    toc = {"format": "jb-book", "root": "book/intro", "parts": [
        {"caption": "The study", "chapters": [{"file": "book/chapters/01_data"}, {"file": "book/chapters/02_x"}]},
        {"caption": "Later", "chapters": [{"file": "book/chapters/03_y"}]},
        {"caption": "Reference", "chapters": [{"file": "book/glossary"}]},
    ]}
    subset = _filter_toc(toc, {"book/chapters/01_data"})
    assert list(_toc_files(subset)) == ["book/intro", "book/chapters/01_data", "book/glossary"]
    assert [p["caption"] for p in subset["parts"]] == ["The study", "Reference"]


def test_find_root_from_a_subfolder_and_one_line_error_elsewhere(tmp_path: Path) -> None:
    assert find_root(REPO / SOURCE_DIR) == REPO
    with pytest.raises(BookError, match="no book root above") as info:
        find_root(tmp_path)
    assert "\n" not in str(info.value)


def test_chapters_are_the_toc_pages_under_book_chapters_in_order() -> None:
    chapters = list_chapters(REPO)
    docs = toc_docnames(REPO)
    assert chapters and [f"{CHAPTER_DIR}/{c}" for c in chapters] == [d for d in docs if d.startswith(CHAPTER_DIR)]
    assert docs[0] == "book/intro"
    assert all((REPO / SOURCE_DIR / f"{c}.py").is_file() for c in chapters)


def test_toc_line_without_a_notebook_is_one_line_error(tmp_path: Path) -> None:
    for name in ("_config.yml", "_toc.yml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / SOURCE_DIR).mkdir()
    with pytest.raises(BookError, match=r"_toc.yml lists book/chapters/01_data but notebooks/01_data.py"):
        list_chapters(tmp_path)


def test_write_toc_subset(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text((REPO / "_toc.yml").read_text())
    first = list_chapters(REPO)[0]
    path = write_toc_subset(tmp_path, [first])
    assert path == tmp_path / "_build" / "_toc.subset.yml"
    files = list(_toc_files(yaml.safe_load(path.read_text())))
    assert [f for f in files if f.startswith(CHAPTER_DIR)] == [f"{CHAPTER_DIR}/{first}"]
    assert "book/glossary" in files
