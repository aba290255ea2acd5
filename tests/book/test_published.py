"""A book that renders from a results folder made elsewhere (emlib.book.published, emlib.chapters.published).

The folder is the paper profile's DRY RUN (``paper-dry``: the pretrained code path on a local hub of
random values), made once per session with the chapter functions chapter 7 calls (the runs of its
backbone and the latent diagnostics) and exported with :func:`emlib.grid.published.export_results`
(``paper_dry_results``, tests/conftest.py). Everything that reads it runs with NO weights on the
machine (``no_weights``: an empty, offline hub), so a chapter that trained instead of reading would
fail (the chapter functions themselves: tests/chapters/test_published.py):

- chapter 7 executed with the folder (as ``build --results`` runs it) shows that note, no warning;
- a folder whose runs were made at another commit carries a visible warning on the page of a
  one-chapter HTML build (``--results``; other data or weights: tests/grid/test_published.py);
- a bad folder is refused by the build before any work, in one sentence.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from emlib.book import build as build_mod
from emlib.book.commands import main as book_main
from emlib.book.execute import execute_chapter
from emlib.book.published import check_results, results_environment, served_chapters
from emlib.book.toc import BookError
from emlib.config import get_profile
from emlib.errors import DataError
from emlib.grid.published import RESULTS_ENV, export_results, read_published
from emlib.grid.runner import git_commit

REPO = Path(__file__).resolve().parents[2]
CHAPTER = "07_results_vs_paper"
BACKBONE = get_profile("paper-dry").base.backbone


@pytest.fixture(scope="module")
def elsewhere(paper_dry_results: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same runs as if made at another commit (their rows say 0000000), exported: a folder that does not match."""
    grid = Path(shutil.copytree(paper_dry_results["runs"] / "paper-dry", tmp_path_factory.mktemp("old") / "paper-dry"))
    for metrics in grid.glob("*/metrics.json"):
        saved = json.loads(metrics.read_text())
        saved["rows"] = [{**row, "git_commit": "0000000"} for row in saved["rows"]]
        metrics.write_text(json.dumps(saved))
    folder = tmp_path_factory.mktemp("published-old") / "old-results"
    export_results([grid], folder)
    return folder


def test_chapters_served_by_the_folder_need_no_weights(paper_dry_results: dict, no_weights, tmp_path: Path) -> None:
    published = check_results(paper_dry_results["folder"], get_profile("paper-dry"))
    chapters = ["03_frozen_backbone", "05b_published_pairing", "06_latent_diagnostics", CHAPTER]
    needs = build_mod._NEEDS_WEIGHTS
    assert served_chapters(REPO, chapters, published, get_profile("paper-dry"), {}, needs=needs) == [CHAPTER]
    # another backbone's runs are not in the folder: the chapter trains them, so it needs their weights
    assert served_chapters(REPO, [CHAPTER], published, get_profile("paper-dry"), {"backbone": "dinov2_vits14"},
                           needs=needs) == []
    fake = tmp_path / "repo"
    (fake / "notebooks").mkdir(parents=True)
    sources = {"asks": "rows = chapter_runs(settings, regimes=('lora',), published=True)\nlatent_table(settings)\n",
               "trains": "# reads `chapter_runs(settings, published=True)`, then\nrows = chapter_runs(settings)\n",
               "loads": "rows = chapter_runs(settings, published=True)\nload_trained(run_dir)\n",
               "embeds": "rows = chapter_runs(settings, published=True)\nlatent_diagnostics(settings)\n"}
    for name, source in sources.items():
        (fake / "notebooks" / f"{name}.py").write_text(source)
    assert served_chapters(fake, list(sources), published, get_profile("paper-dry"), {}, needs=needs) == ["asks"]
    with pytest.raises(BookError, match=r"^03_frozen_backbone train with dinov2_vits14_reg"):  # before any work
        build_mod.build_book(REPO, profile="paper", dry_run=True, only=["03_frozen_backbone"], results=paper_dry_results["folder"],
                             out=tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()


def _page_notes(notebook: Path) -> list[str]:
    nb = nbformat.read(notebook, as_version=4)
    return [str(out.get("data", {}).get("text/html", "")) for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "emlib-published" in str(out.get("data", {}).get("text/html", ""))]


def test_chapter_7_executed_from_the_folder_names_its_provenance(paper_dry_results: dict, no_weights, local_hub,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "07.ipynb"
    with results_environment(read_published(paper_dry_results["folder"])):
        execute_chapter(REPO / "notebooks" / f"{CHAPTER}.py", out, profile="paper-dry", cwd=REPO,
                        parameters={"out_dir": str(tmp_path / "runs"), "device": "cpu"})
    (note,) = _page_notes(out)
    assert 'class="admonition note emlib-published"' in note and "mismatch" not in note
    assert f"commit: {git_commit()}" in note and "the test machine" in note and f"weights of {BACKBONE}" in note
    assert "dinov2_vits14_reg4_pretrain.pth sha256:" in note and str(local_hub.root) not in note  # no local folder
    assert not list((tmp_path / "runs" / "paper-dry").glob("*/metrics.json"))  # nothing trained
    table = pd.read_csv(tmp_path / "runs" / "paper-dry" / "paper_comparison.csv")
    assert set(table.claim_id) >= {"fd_frozen", "paired_collapses"}  # the comparison made from the folder's tables


def test_a_folder_of_another_commit_carries_a_warning_on_the_built_page(elsewhere: Path, no_weights, tmp_path: Path) -> None:
    env = {**os.environ, **no_weights.env}
    cmd = [sys.executable, "-m", "emlib.book", "build", "--profile", "paper", "--dry-run", "--only", CHAPTER,
           "--out", str(tmp_path / "book"), "--results", str(elsewhere), "-p", f"out_dir={tmp_path / 'runs'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    page = (tmp_path / "book" / "_build" / "html" / "book" / "chapters" / f"{CHAPTER}.html").read_text()
    assert "emlib-published-mismatch" in page and "Published results that do not match this book" in page
    assert f"computed at commit 0000000, not at this book&#x27;s commit {git_commit()}" in page
    assert "Dry run: numbers mean nothing" in page  # the dry run's banner stays
    timings = json.loads((tmp_path / "book" / "book" / "chapters" / "timings.json").read_text())
    assert timings["latest"]["partial"] == "--only"


def test_a_bad_results_folder_ends_the_build_before_any_work(paper_dry_results: dict, no_weights, tmp_path: Path, capsys) -> None:
    copy = Path(shutil.copytree(paper_dry_results["folder"], tmp_path / "copy"))
    (next((copy / "paper-dry").glob("paired-lora-*")) / "adapter.safetensors").write_bytes(b"\0" * 8)  # weights
    argv = ["build", "--profile", "paper", "--dry-run", "--only", CHAPTER, "--out", str(tmp_path / "book"), "--results"]
    assert book_main([*argv, str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "adapter.safetensors, a weights or pickle file" in err and "delete" in err
    assert book_main([*argv, str(tmp_path / "nowhere")]) == 2
    assert "is not a folder; pass the folder `emlib results export RUNS --into DIR` wrote" in capsys.readouterr().err
    assert book_main(["build", "--profile", "quick", "--only", CHAPTER, "--out", str(tmp_path / "book"), "--results",
                      str(paper_dry_results["folder"])]) == 2
    assert "not 'quick'; build with the profile it holds (e.g. --profile paper --dry-run)" in capsys.readouterr().err
    assert not (tmp_path / "book").exists()
    with pytest.raises(DataError):
        read_published(copy)


def test_results_environment_hands_the_folder_to_the_kernels_and_clears_one_not_asked_for(
        paper_dry_results: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    published = read_published(paper_dry_results["folder"])
    monkeypatch.setenv(RESULTS_ENV, "/somewhere/a/shell/left")
    with results_environment(None):  # a build without --results: the chapters never read a folder unasked
        assert RESULTS_ENV not in os.environ
    with results_environment(published):
        assert os.environ[RESULTS_ENV] == str(paper_dry_results["folder"].resolve())
    assert os.environ[RESULTS_ENV] == "/somewhere/a/shell/left"
