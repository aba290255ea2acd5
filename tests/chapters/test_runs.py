"""Tests of emlib.chapters.runs: the one list of the runs the chapters train."""

from __future__ import annotations

from emlib.chapters.runs import CHAPTER_RUNS, book_configs
from emlib.chapters.settings import chapter_configs, chapter_settings
from emlib.config import grid_configs
from emlib.grid.remedies import alignment_configs


def test_each_chapter_trains_its_selection_and_a_shared_run_is_listed_once() -> None:
    settings = chapter_settings("smoke", device="cpu")
    lora = book_configs("smoke", {"04_lora": {"device": "cpu"}})
    assert [c.run_id for c in lora] == [c.run_id for c in chapter_configs(settings, regimes=("frozen", "lora"),
                                                                              train_sets=("lucchi_pp", "vnc"))]
    both = book_configs("smoke", {"03_frozen_backbone": {}, "04_lora": {}})
    assert len(both) == len({c.run_id for c in both}) == 4  # chapter 3's two frozen runs are chapter 4's too
    published = book_configs("smoke", {"05b_published_pairing": {}})
    assert {c.pairing for c in published} == {"correct", "published"} and {c.train_set for c in published} == {"paired"}
    everything = {c.run_id for c in book_configs("smoke", {name: {} for name in CHAPTER_RUNS})}
    assert {c.run_id for c in grid_configs("smoke")} <= everything
    assert {c.run_id for _, c in alignment_configs("smoke")} <= everything
    assert book_configs("smoke", {"01_data": {}, "protocol_appendix": {}}) == []


def test_the_chapter_parameters_pick_the_runs_as_the_chapters_do() -> None:
    seeded = book_configs("smoke", {"03_frozen_backbone": {"seed": 4, "backbone": "dinov2_vitb14"}})
    assert {(c.seed, c.backbone) for c in seeded} == {(4, "dinov2_vitb14")}
    remedies = book_configs("smoke", {"08_beyond_the_paper": {"seed": 4, "regimes": ["frozen"], "backbone": "dinov2_vitb14"}})
    # chapter 8 calls run_alignment_grid with the chapter's backbone and regimes, the profile's first seed
    assert {c.regime for c in remedies} == {"frozen"} and {c.seed for c in remedies} == {0}
    assert {c.backbone for c in remedies} == {"dinov2_vitb14"}
    assert [c.run_id for c in remedies] == [c.run_id for _, c in alignment_configs("smoke", regimes=("frozen",),
                                                                                  backbone="dinov2_vitb14")]
