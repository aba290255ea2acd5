"""Tests of emlib.chapters.settings: chapter settings from the profile, data, tables, backbone inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from emlib.config import BUILD_ENV, DRY_RUN_LABEL, get_profile, grid_configs
from emlib.data import load_volume
from emlib.errors import ConfigError
from emlib.chapters.pages import page_facts
from emlib.chapters.settings import (
    ChapterSettings,
    chapter_command,
    chapter_configs,
    chapter_settings,
    ensure_data,
    grid_dir,
    limit_cpu_threads,
    physical_extent_table,
    token_grid_table,
)


def test_settings_follow_the_profile() -> None:
    s = chapter_settings("smoke", device="cpu")
    assert (s.backbone, s.weights_label, s.device, s.pretrained) == ("dinov2_vits14", "random weights", "cpu", False)
    assert (s.view_slices, s.token_crop, s.token_long_edge, s.token_slices, s.cpu_threads) == (4, 224, None, 4, 1)
    quick = chapter_settings("quick", device="cpu")
    assert (quick.view_slices, quick.token_crop, quick.token_long_edge, quick.token_slices) == (None, None, 518, 8)
    assert quick.weights_label == "pretrained" and quick.cpu_threads is None
    paper = chapter_settings("paper", device="cpu", backbone="dinov2_vits14")
    assert (paper.backbone, paper.token_long_edge, paper.profile) == ("dinov2_vits14", 1022, get_profile("paper"))
    assert paper.seeds == get_profile("paper").seeds and chapter_settings("paper", seed=3).seeds == (3,)


def test_settings_table_says_what_made_the_page(smoke: ChapterSettings, shared_data: Path) -> None:
    table = smoke.table()
    assert list(table.columns) == ["setting", "value"]
    rows = dict(zip(table["setting"], table["value"]))
    assert list(rows) == ["profile", "runs", "backbone", "weights", "data", "weights folder", "device", "seed",
                          "output folder", "slices shown", "backbone input"]
    assert rows["runs"] == get_profile("smoke").summary()
    assert rows["profile"].startswith("smoke: ") and rows["weights"] == "random weights"
    assert rows["data"] == str(shared_data) and rows["weights folder"] == "$EMLIB_WEIGHTS or the hubs"
    assert (rows["slices shown"], rows["backbone input"], rows["output folder"]) == ("4", "224x224 crop", "runs")
    quick = dict(chapter_settings("quick", device="cpu").table().values.tolist())
    assert (quick["slices shown"], quick["backbone input"]) == ("all", "long side 518")
    assert "<table" in smoke._repr_html_() and "emlib-badge" in smoke._repr_html_()


def test_settings_table_of_a_book_build_shows_no_local_folder(shared_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BUILD_ENV, "1")
    monkeypatch.setenv("EMLIB_DATA", str(shared_data))
    built = chapter_settings("smoke", device="cpu", out_dir=tmp_path / "runs")
    rows = dict(built.table().values.tolist())
    assert rows["data"] == "a local copy ($EMLIB_DATA)" and rows["output folder"] == "a local folder (parameter out_dir)"
    assert str(shared_data) not in built._repr_html_() and str(tmp_path) not in built._repr_html_()
    given = dict(chapter_settings("smoke", device="cpu", data_dir=shared_data).table().values.tolist())
    assert given["data"] == "a local folder (parameter data_dir)"


@pytest.mark.parametrize("name", ["smoke", "quick", "paper", "quick-dry", "paper-dry"])
def test_profile_words_and_page_facts_come_from_the_config(name: str) -> None:
    """The text that describes a profile is generated from its config (issue 11, point 7)."""
    prof = get_profile(name)
    b = prof.base
    summary = prof.summary()
    assert f"{b.epochs} epochs" in summary and f"batch {b.batch_size}" in summary
    assert ("every test slice" in summary) == (b.eval_slices is None)
    assert not any(ch.isdigit() for ch in prof.description), "numbers belong in the config, not the description"
    facts = page_facts(chapter_settings(name, device="cpu"))
    assert facts["epochs"] == b.epochs and f"{b.epochs} epochs" in facts["training"]
    assert facts["training"] == prof.facts()["training"] and facts["training"] in summary  # one description
    assert facts["test_slices"] == ("every" if b.eval_slices is None else b.eval_slices)
    assert facts["embedding_slices"] == (prof.embedding_slices or "all")


def test_settings_errors_weights_dir_and_live_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        chapter_settings("nope")
    with pytest.raises(ConfigError):
        chapter_settings("smoke", backbone="no_such_backbone")
    with pytest.raises(ConfigError, match="not a torch device"):
        chapter_settings("smoke", device="gpu please")
    with pytest.raises(ConfigError, match=r"^seed=18446744073709551616 must be in \[0, 4294967295\]"):
        chapter_settings("smoke", device="cpu", seed=2**64)  # issue 23, item 10: not torch's Overflow in a chapter
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match=r"^device='mps' was asked for but there is no Apple GPU \(MPS\) here"):
            chapter_settings("smoke", device="mps")
    monkeypatch.delenv("EMLIB_WEIGHTS", raising=False)
    monkeypatch.delenv(BUILD_ENV, raising=False)
    s = chapter_settings("smoke", device="auto", weights_dir=tmp_path)
    assert s.live and s.weights_dir == tmp_path and os.environ["EMLIB_WEIGHTS"] == str(tmp_path)
    assert s.device == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(BUILD_ENV, "1")
    assert not chapter_settings("smoke", device="cpu").live


def test_ensure_data_and_physical_extent(smoke: ChapterSettings, shared_data: Path) -> None:
    paths = ensure_data(smoke)
    assert set(paths) == {"lucchi_pp", "vnc"} and all(p.is_dir() and shared_data in p.parents for p in paths.values())
    lucchi = load_volume("lucchi_pp", "test", root=smoke.data_dir, slices=[0])
    table = physical_extent_table({"Lucchi++": lucchi})
    row = table.loc["Lucchi++"]
    assert row["slice (px)"] == "768 x 1024" and row["pixel (nm)"] == "5 x 5" and row["z / xy"] == 1.0


def test_token_grid_table_uses_the_protocol_resize() -> None:
    table = token_grid_table({"Lucchi++": (768, 1024), "VNC": (1024, 1024)})
    assert len(table) == 4
    lucchi14 = table[(table.index == "Lucchi++") & (table["patch"] == 14)].iloc[0]
    assert lucchi14["resized"] == "756 x 1022" and lucchi14["grid"] == "54 x 73" and lucchi14["tokens"] == 54 * 73


def test_limit_cpu_threads_only_where_the_profile_says(smoke: ChapterSettings) -> None:
    before = torch.get_num_threads()
    try:
        assert limit_cpu_threads(chapter_settings("quick", device="cpu")) == before
        assert limit_cpu_threads(smoke) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_dry_run_settings_say_so_everywhere() -> None:
    """A dry run's pages: its own profile name, grid folder, weights label and reproducing command (issue 12)."""
    dry = chapter_settings("paper-dry", device="cpu")
    assert (dry.profile.name, dry.dry_run, dry.pretrained, dry.backbone) == ("paper-dry", True, True, "dinov2_vits14_reg")
    assert dry.weights_label == DRY_RUN_LABEL and "random" in dry.weights_label  # figures get the badge
    rows = dict(dry.table().values.tolist())
    assert rows["profile"].startswith("paper-dry: a dry run of paper") and rows["weights"] == DRY_RUN_LABEL
    assert rows["runs"].startswith("dry run of paper: ")
    assert grid_dir(dry) == Path("runs") / "paper-dry"
    assert chapter_command(dry, regimes=["lora"]).startswith("emlib grid --profile paper --dry-run --out runs/paper-dry")
    assert {c.run_id for c in chapter_configs(dry)} == {c.run_id for c in grid_configs("paper-dry", backbone="dinov2_vits14_reg")}
    assert page_facts(dry)["weights"] == DRY_RUN_LABEL and page_facts(dry)["profile"] == "paper-dry"
    assert not chapter_settings("quick", device="cpu").dry_run


def test_every_chapter_parameter_reaches_its_runs() -> None:
    """Issue 22: a chapter's seed and device reach the runs it trains; the device does not move its run folders."""
    one = chapter_settings("smoke", device="cpu", seed=1)
    configs = chapter_configs(one)
    assert configs and {c.seed for c in configs} == {1} and {c.device for c in configs} == {"cpu"}
    assert {c.run_id for c in configs} == {c.run_id for c in grid_configs("smoke", seeds=[1])}
    assert chapter_command(one, regimes=["lora"]).endswith("--regime lora --seed 1")
    paper = chapter_settings("paper", device="cpu")  # seed=None: the profile's five seeds
    assert {c.seed for c in chapter_configs(paper, regimes=["lora"], train_sets=["vnc"])} == {0, 1, 2, 3, 4}
    assert "--seed" not in chapter_command(paper)
    gpu = ChapterSettings(**{**one.__dict__, "device": "cuda"})  # as on a GPU (none here): the same run folders
    assert [c.device for c in chapter_configs(gpu)] == ["cuda"] * len(configs)
    assert [c.run_id for c in chapter_configs(gpu)] == [c.run_id for c in configs]
