"""Every chapter follows the book's notebook conventions and runs on the smoke profile."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from emlib import book

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
PARAMETERS = {"profile", "backbone", "data_dir", "weights_dir", "device", "seed", "out_dir"}
HIDDEN = {"hide-input", "remove-input", "remove-cell", "hide-cell"}
#: Figure titles with these words show model outputs, so on the smoke profile they must say "random weights".
MODEL_WORDS = ("token", "embedding", "prediction", "predicted", "iou", "pca", "probe", "fréchet")


def _ids(path: Path) -> str:
    return path.stem


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``out_dir`` for every chapter of the session, as in a book build: runs trained by one
    chapter are read back, not retrained, by the next (tests/test_book.py uses the same folder)."""
    path = tmp_path_factory.getbasetemp() / "emlib-runs"
    path.mkdir(exist_ok=True)
    return path


def test_notebooks_folder_holds_only_py_sources() -> None:
    others = [p.name for p in (REPO / "notebooks").iterdir() if p.suffix != ".py" and p.name != "__pycache__"]
    assert NOTEBOOKS, "notebooks/ holds no chapters"
    assert not others, f"notebooks/ must hold only Jupytext .py sources, found {others}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=_ids)
def test_notebook_conventions(source: Path) -> None:
    nb = book.read_notebook_source(source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "first cell: the title"
    colab, params = code[0], code[1]
    assert "google.colab" in colab.source and "sys.modules" in colab.source, "first code cell: the Colab setup"
    assert HIDDEN & set(colab.metadata.get("tags", [])), "the Colab cell must be hidden in the book"
    assert "parameters" in params.metadata.get("tags", []), "second code cell: papermill parameters"
    names = set(re.findall(r"^(\w+)\s*=", params.source, flags=re.M))
    assert PARAMETERS <= names, f"parameters cell lacks {sorted(PARAMETERS - names)}"
    assert re.search(r'^profile\s*=\s*"smoke"', params.source, flags=re.M), "default profile must be smoke"
    def statements(cell: nbformat.NotebookNode) -> int:
        return sum(1 for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#"))

    long_cells = [c.source.splitlines()[0] for c in code if statements(c) > 15]
    assert not long_cells, f"code cells with more than 15 lines of code (move logic into emlib): {long_cells}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{exercise}" in markdown, "end the chapter with exercises"
    solutions = re.findall(r"\{solution\}[^\n]*\n((?::[^\n]*\n)*)", markdown)
    assert solutions and all(":class: dropdown" in opts for opts in solutions), "solutions must be hidden dropdowns"


def _figure_titles(nb: nbformat.NotebookNode) -> list[str]:
    """Layout titles of the plotly figures (kept by the post-processing in the output metadata)."""
    return [out["metadata"]["emlib_figure_title"] for cell in nb.cells for out in cell.get("outputs", [])
            if "emlib_figure_title" in out.get("metadata", {})]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=_ids)
def test_notebook_runs_on_smoke_profile(source: Path, shared_data: Path, runs_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    out = book.execute_chapter(source, tmp_path / f"{source.stem}.ipynb", profile="smoke",
                               parameters={"out_dir": str(runs_dir)}, cwd=REPO)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)
    assert any("colab-badge" in c.metadata.get("tags", []) for c in nb.cells)
    titles = _figure_titles(nb)
    plotly_outputs = sum("plotly-graph-div" in str(o.get("data", {}).get("text/html", ""))
                         for c in nb.cells for o in c.get("outputs", []))
    assert len(titles) == plotly_outputs
    for title in titles:
        if any(word in title.lower() for word in MODEL_WORDS):
            assert "random weights" in title, f"smoke figure {title!r} must say 'random weights'"
