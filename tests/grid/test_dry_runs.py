"""Dry runs of the quick and paper profiles, end to end on a local weights hub (issue 12, part 3).

A dry run (``quick-dry``, ``paper-dry``: :meth:`emlib.config.Profile.dry_run`) loads PRETRAINED
weights through the very code path of a real run, here from a local hub of random values in the
upstream formats with the hubs offline (:func:`emlib.testing.write_local_hub`). These tests run:

- ``emlib grid --profile quick --dry-run`` and ``--profile paper --dry-run`` (in this process, the
  hub activated): every regime, training set and backbone family has its rows, labelled with the
  hub's files and the dry run's profile name;
- ``python -m emlib.book build --profile quick --dry-run`` of the chapters whose figures depend on
  pretrained weights (02, 06, 07) in a subprocess on the hub, reusing the quick grid's runs;
- the same book build of chapter 2 on an EMPTY hub, offline: it completes, and the page carries a
  note naming each missing backbone instead of failing (once a KeyError on an empty table);
- the book build of a chapter that trains, on the empty hub: one sentence before any work.

Module-scoped, so the hub is written once and the grid runs are made once (chapters 6 and 7 read
them back). Measured on 2 shared CPU cores: see the report of issue 12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from emlib.book.execute import profile_banner_markdown
from emlib.config import SCORED_TEST_SETS, TEST_LABELS
from emlib.cli import main
from emlib.config import get_profile, grid_configs
from emlib.models import get_backbone_spec
from emlib.testing import LocalHub, write_local_hub

REPO = Path(__file__).resolve().parents[2]
#: The backbones the dry runs load: each family's smallest (chapter 2's pictures), and DINOv2 with registers (paper).
FAMILIES = ("dinov2_vits14", "dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16")
PICTURED = get_profile("quick-dry").family_backbones  # chapter 2 of the quick dry run shows one backbone per family


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LocalHub:
    """The session's local hub when tests/conftest.py has one, else one written here (FAMILIES)."""
    try:
        found = request.getfixturevalue("local_hub")
    except pytest.FixtureLookupError:
        found = None
    if found is not None and set(FAMILIES) <= set(found.backbones):
        return found
    return write_local_hub(tmp_path_factory.mktemp("hub"), backbones=FAMILIES)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs folder of this module (``out_dir``; grids in ``<it>/quick-dry`` and ``<it>/paper-dry``)."""
    return tmp_path_factory.mktemp("dry-runs")


@pytest.fixture(scope="module")
def clean_env(shared_data: Path) -> dict[str, str]:
    """This process's environment without weights folders, with the staged data."""
    env = {k: v for k, v in os.environ.items() if k not in ("EMLIB_WEIGHTS", "HF_TOKEN")}
    return {**env, "EMLIB_DATA": str(shared_data)}


def _grid(profile: str, hub: LocalHub, out: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """``emlib grid --profile PROFILE --dry-run`` in this process, on the hub; its results table."""
    monkeypatch.setenv("EMLIB_DATA", str(data))
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    with hub.activate():
        assert main(["grid", "--profile", profile, "--dry-run", "--out", str(out), "--quiet"]) == 0
    return pd.read_csv(out / "results.csv")


def _check_rows(results: pd.DataFrame, profile: str, hub: LocalHub) -> None:
    dry = get_profile(profile, dry_run=True)
    expected = {(c.train_set, c.regime, "unet" if c.regime == "unet" else c.backbone) for c in grid_configs(dry)}
    assert set(zip(results.train_set, results.regime, results.backbone)) == expected
    assert len(results) == len(SCORED_TEST_SETS) * len(TEST_LABELS) * len(expected) and set(results.test_set) == set(SCORED_TEST_SETS)
    assert set(results.profile) == {dry.name}  # every row says it is a dry run
    assert results.iou_fg.between(0, 1).all() and (results.epochs_trained >= 1).all()
    pretrained = results[results.regime != "unet"]
    for backbone, labels in pretrained.groupby("backbone").weights_label:
        (label,) = set(labels)  # the hub's file, by name and checksum: the pretrained code path ran
        assert label.startswith("pretrained") and "sha256:" in label, label
        assert str(hub.root) in label or f"hf:{get_backbone_spec(backbone).hf_repo}/" in label, label


def test_quick_dry_run_grid(hub: LocalHub, runs: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _grid("quick", hub, runs / "quick-dry", shared_data, monkeypatch)
    _check_rows(results, "quick", hub)
    assert set(results.regime) == {"frozen", "lora", "unet"} and "paired" in set(results.train_set)
    assert (runs / "quick-dry" / "results.json").is_file()


def test_paper_dry_run_grid(hub: LocalHub, runs: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = _grid("paper", hub, runs / "paper-dry", shared_data, monkeypatch)
    _check_rows(results, "paper", hub)
    assert {b.split("_")[0] for b in results.backbone} == {"dinov2", "dinov3", "openclip"}
    assert set(results.regime) == {"frozen", "lora"} and (results.best_epoch.notna()).all()  # validation ran
    sizes = {(c.train_set, c.backbone): c.batch_size for c in grid_configs("paper-dry")}
    assert sizes[("paired", "dinov2_vits14_reg")] == sizes[("lucchi_pp", "openclip_vitb16")] == 2  # the paper's batch sizes
    assert sizes[("vnc", "openclip_vitb16")] == 4 and sizes[("vnc", "dinov2_vits14_reg")] == 1
    assert "dinov2_vits14_reg" in set(results.backbone)  # DINOv2 with registers, as the authors' factory loads it


def test_dry_run_banner_says_the_numbers_mean_nothing() -> None:
    banner = profile_banner_markdown("paper-dry")
    assert banner.startswith(":::{admonition} Dry run: numbers mean nothing\n:class: warning emlib-profile-banner")
    assert "pretrained-weights code path with random values from a local test hub" in banner
    assert get_profile("paper-dry").summary() in banner and 'profile = "paper"' in banner


def _build(env: dict[str, str], out: Path, runs: Path, *chapters: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "emlib.book", "build", "--profile", "quick", "--dry-run", "--only", *chapters,
           "--out", str(out), "-p", f"out_dir={runs}"]
    return subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def _page(out: Path, chapter: str) -> str:
    return (out / "_build" / "html" / "book" / "chapters" / f"{chapter}.html").read_text()


def test_quick_dry_run_book_on_the_local_hub(hub: LocalHub, runs: Path, clean_env: dict[str, str],
                                             tmp_path: Path) -> None:
    chapters = ("02_what_a_foundation_model_sees", "06_latent_diagnostics", "07_results_vs_paper")
    proc = _build({**clean_env, **hub.env}, tmp_path / "book", runs, *chapters)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    for chapter in chapters:
        page = _page(tmp_path / "book", chapter)
        assert "Dry run: numbers mean nothing" in page and "random values from a local test hub" in page
        assert "quick-dry" in page
    seen = _page(tmp_path / "book", chapters[0])
    assert "emlib-missing-weights" not in seen  # the hub holds every family
    assert all(name in seen for name in PICTURED) and seen.count("plotly-graph-div") >= 3  # token pictures
    assert "random values (dry run)" in seen  # the figures' badge
    assert (runs / "quick-dry" / "latents" / "domain_report.csv").is_file()


def test_missing_weights_leave_a_note_not_a_keyerror(runs: Path, clean_env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty-hub"
    env = {**clean_env, "HF_HOME": str(empty / "hf"), "HF_HUB_CACHE": str(empty / "hf" / "hub"),
           "TORCH_HOME": str(empty / "torch"), "HF_HUB_OFFLINE": "1"}
    proc = _build(env, tmp_path / "book", runs, "02_what_a_foundation_model_sees")
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = _page(tmp_path / "book", "02_what_a_foundation_model_sees")
    assert "KeyError" not in page and "emlib-missing-weights" in page
    assert "no backbone could be loaded" in page and "this page has no token pictures" in page  # the output, not the code
    for name in PICTURED:
        assert f"<strong>{name}</strong>" in page and f"emlib weights fetch {name}" in page
    assert "weights_dir" in page
    # a chapter that trains cannot do without its backbone: one sentence, before any chapter runs
    proc = _build(env, tmp_path / "book2", runs, "03_frozen_backbone")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "03_frozen_backbone train with dinov2_vits14" in proc.stderr
    assert "emlib weights fetch dinov2_vits14" in proc.stderr and "-p weights_dir=FOLDER" in proc.stderr
    assert not (tmp_path / "book2" / "book" / "chapters" / "03_frozen_backbone.ipynb").exists()
