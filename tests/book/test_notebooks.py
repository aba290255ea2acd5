"""Every chapter follows the book's notebook conventions and runs on the smoke profile.

The chapters are executed once, by the session's smoke build (``smoke_book`` in conftest.py); the
tests here read its executed notebooks.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from emlib.book import BuildReport
from emlib.book.execute import read_notebook_source
from emlib.book.publish import INSTALL_LINE

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
PARAMETERS = {"profile", "backbone", "data_dir", "weights_dir", "device", "seed", "out_dir"}
#: Figure titles with these words show model outputs, so on the smoke profile they must say "random weights".
MODEL_WORDS = ("token", "embedding", "prediction", "predicted", "iou", "pca", "probe", "fréchet")


def _ids(path: Path) -> str:
    return path.stem


def test_notebooks_folder_holds_only_py_sources() -> None:
    others = [p.name for p in (REPO / "notebooks").iterdir() if p.suffix != ".py" and p.name != "__pycache__"]
    assert NOTEBOOKS, "notebooks/ holds no chapters"
    assert not others, f"notebooks/ must hold only Jupytext .py sources, found {others}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=_ids)
def test_notebook_conventions(source: Path) -> None:
    nb = read_notebook_source(source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "first cell: the title"
    params = code[0]
    assert not [c for c in code if "google.colab" in c.source or INSTALL_LINE.search(c.source)], \
        "no Colab cell in the source: `emlib book export` inserts it, pinned (emlib.book.publish.colab_cell)"
    assert "parameters" in params.metadata.get("tags", []), "first code cell: papermill parameters"
    names = set(re.findall(r"^(\w+)\s*(?::[^=\n]*)?=", params.source, flags=re.M))  # `seed: int | None = None` too
    assert PARAMETERS <= names, f"parameters cell lacks {sorted(PARAMETERS - names)}"
    assert re.search(r'^profile\s*=\s*"smoke"', params.source, flags=re.M), "default profile must be smoke"
    def statements(cell: nbformat.NotebookNode) -> int:
        # lines of code; an import wrapped over several lines (``from emlib import (...)``) is one
        source = re.sub(r"^(from \S+ import \()[^)]*\)", r"\1)", cell.source, flags=re.M)
        return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))

    long_cells = [c.source.splitlines()[0] for c in code if statements(c) > 15]
    assert not long_cells, f"code cells with more than 15 lines of code (move logic into emlib): {long_cells}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{exercise}" in markdown, "end the chapter with exercises"
    solutions = re.findall(r"\{solution\}[^\n]*\n((?::[^\n]*\n)*)", markdown)
    assert solutions and all(":class: dropdown" in opts for opts in solutions), "solutions must be hidden dropdowns"


def _figures(nb: nbformat.NotebookNode) -> list[tuple[str, list[str]]]:
    """Title and badges of each plotly figure (kept by the post-processing in the output metadata)."""
    return [(out["metadata"]["emlib_figure_title"], out["metadata"].get("emlib_figure_badges", []))
            for cell in nb.cells for out in cell.get("outputs", []) if "emlib_figure_title" in out.get("metadata", {})]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=_ids)
def test_notebook_runs_on_smoke_profile(source: Path, smoke_book: BuildReport) -> None:
    assert source.stem in smoke_book.notebooks, f"{source.name} is not in _toc.yml, so the book never runs it"
    nb = nbformat.read(smoke_book.notebooks[source.stem], as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and all("remove-cell" in c.metadata["tags"] for c in injected)
    assert any("colab-badge" in c.metadata.get("tags", []) for c in nb.cells)
    figures = _figures(nb)
    plotly_outputs = sum("plotly-graph-div" in str(o.get("data", {}).get("text/html", ""))
                         for c in nb.cells for o in c.get("outputs", []))
    assert len(figures) == plotly_outputs
    for title, badges in figures:
        if any(word in title.lower() for word in MODEL_WORDS):
            assert "random weights" in badges, f"smoke figure {title!r} must carry the 'random weights' badge"
