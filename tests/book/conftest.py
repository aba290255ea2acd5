"""The one smoke build of the whole book that the notebook, build and browser tests read.

Every chapter is executed once per test session (by :func:`emlib.book.build_book`, as in
``python -m emlib.book build --profile smoke --check``), never a second time by another test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from emlib.book import CHROMIUM, BookError, BuildReport, build_book

REPO = Path(__file__).resolve().parents[2]
#: The browser check needs Debian's Chromium and playwright; without them the build skips the check.
HAS_BROWSER = Path(CHROMIUM).is_file() and importlib.util.find_spec("playwright") is not None


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the smoke book's chapters write their runs to (``out_dir``; the grid is ``<it>/smoke``)."""
    return tmp_path_factory.mktemp("emlib-runs")


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory: pytest.TempPathFactory, shared_data: Path, smoke_runs: Path) -> BuildReport:
    """The whole book, smoke profile, built out of tree (the repository is not touched), browser-checked
    when Chromium and playwright are here (``report.check``, else None), every exercise solution run after
    its chapter (``solutions=True``: a broken solution fails the build)."""
    out = tmp_path_factory.mktemp("book")
    runs = smoke_runs
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMLIB_DATA", str(shared_data))
        try:
            return build_book(REPO, profile="smoke", out=out, parameters={"out_dir": str(runs)}, check=HAS_BROWSER,
                              progress=False, solutions=True)
        except BookError as err:
            failure = str(err)  # one line naming the chapter, the cell and the partial notebook
    pytest.fail(f"the smoke book did not build: {failure}", pytrace=False)
