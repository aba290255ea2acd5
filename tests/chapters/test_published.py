"""What a chapter calls with published results (emlib.chapters.published, and chapter_runs of emlib.chapters.settings).

The folder is the paper profile's dry run, exported once per session (``paper_dry_results``,
tests/conftest.py); every test reads it with no weights on the machine (``no_weights``), so a
chapter function that trained instead of reading would fail. The executed chapter and the build are
in tests/book/test_published.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from emlib.chapters.published import latent_table, published_note
from emlib.chapters.settings import chapter_runs, chapter_settings, grid_dir
from emlib.config import get_profile
from emlib.errors import ConfigError, WeightsError
from emlib.grid.runner import git_commit

BACKBONE = get_profile("paper-dry").base.backbone


def _key(frame: pd.DataFrame) -> list[tuple]:
    return sorted(zip(frame.run_id, frame.test_set, frame.test_labels, frame.iou_fg.round(12)))


def test_chapter_functions_read_the_paper_dry_folder_without_weights(paper_dry_results: dict, no_weights, shared_data: Path,
                                                                     tmp_path: Path) -> None:
    settings = chapter_settings("paper-dry", device="cpu", data_dir=shared_data, out_dir=tmp_path / "runs",
                                results_dir=paper_dry_results["folder"])
    rows = chapter_runs(settings, published=True)
    assert _key(rows) == _key(paper_dry_results["rows"]) and len(rows) == len(paper_dry_results["rows"])
    assert not grid_dir(settings).exists()  # nothing trained here
    assert chapter_runs(settings, regimes=("lora",), train_sets=("paired",), published=True).regime.unique().tolist() == ["lora"]
    with pytest.raises(WeightsError):  # a chapter that does not ask for them (it loads the models) makes its own runs
        chapter_runs(settings, regimes=("frozen",), train_sets=("vnc",))
    latents = latent_table(settings)
    assert latents.adapter.tolist() == paper_dry_results["latents"].adapter.tolist()
    assert latents.fd.round(9).tolist() == paper_dry_results["latents"].fd.round(9).tolist()
    note = published_note(settings)
    assert note.matches, note.problems
    text = note.text()
    for shown in (f"commit: {git_commit()} (this book: {git_commit()})", "the test machine", "-core CPU",
                  f"weights of {BACKBONE}: pretrained", "sha256:", f"{len(set(paper_dry_results['rows'].run_id))} runs of the `paper-dry`"):
        assert shown in text, shown
    assert note.remarks == [next(r for r in note.remarks if f"weights of {BACKBONE} are not on this machine" in r)]
    other = published_note(settings.__class__(**{**vars(settings), "data_dir": tmp_path}), commit="0000000")
    assert len(other.problems) == 2 and "not at this book's commit 0000000" in other.problems[0]
    assert "could not be fingerprinted" in other.problems[1]  # no data there: said, not skipped


def test_a_folder_of_another_profile_is_one_sentence(paper_dry_results: dict, no_weights, shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds runs of the paper-dry profile\(s\), not 'quick-dry'; build with the "
                                          r"profile it holds \(e.g. --profile paper --dry-run\)"):
        chapter_settings("quick-dry", device="cpu", data_dir=shared_data, results_dir=paper_dry_results["folder"])


def test_runs_missing_from_the_folder_are_trained_here_and_keep_their_order(
        paper_dry_results: dict, local_hub, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    from emlib.grid.published import export_results

    grid = Path(shutil.copytree(paper_dry_results["runs"] / "paper-dry", tmp_path / "old" / "paper-dry"))
    (dropped,) = grid.glob("vnc-frozen-*")
    shutil.rmtree(dropped)
    export_results([grid], tmp_path / "partial")
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with local_hub.activate():  # the missing run needs its weights, as any run made here
        settings = chapter_settings("paper-dry", device="cpu", data_dir=shared_data, out_dir=tmp_path / "runs",
                                    results_dir=tmp_path / "partial")
        rows = chapter_runs(settings, regimes=("frozen",), train_sets=("lucchi_pp", "vnc", "paired"), published=True)
    trained = sorted(p.parent.name for p in grid_dir(settings).glob("*/metrics.json"))
    assert trained == [dropped.name]  # only the run the folder lacks
    order = list(dict.fromkeys(rows.run_id))
    assert [r.split("-")[0] for r in order] == ["lucchi_pp", "vnc", "paired"]  # the configs' order
    original = paper_dry_results["rows"]
    assert _key(rows) == _key(original[original.regime == "frozen"])  # same numbers: same data, weights and seed
