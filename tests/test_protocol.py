"""The authors' protocol item by item (emlib.protocol): the appendix page's table, read from the profile."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emlib.config import LoraSettings, get_profile
from emlib.errors import ConfigError
from emlib.protocol import MATCHES, PROTOCOL_ITEMS, protocol_table


def test_every_item_names_the_authors_file_and_a_known_match() -> None:
    table = protocol_table("paper")
    assert list(table.columns) == ["item", "authors_file", "authors_setting", "ours", "match", "how"]
    assert table.item.is_unique and len(table) == len(PROTOCOL_ITEMS)
    assert set(table.match) <= set(MATCHES) and table.authors_file.str.len().gt(10).all()
    # anything but a plain match says how to get the authors' value, or why it is missing
    assert table[table.match != "yes"].how.str.len().gt(10).all()


def test_the_paper_profile_matches_the_authors_code_where_this_project_reproduces_it() -> None:
    t = protocol_table("paper").set_index("item")
    for item in ("segmentation loss", "DINOv2 variant", "DINOv2 position-embedding resize", "batch sizes",
                 "validation split", "optimiser", "schedule", "paired scoring"):
        assert t.loc[item, "match"] == "yes", item
    assert t.loc["DINOv2 variant", "ours"] == "dinov2_vitl14_reg"
    assert t.loc["batch sizes", "ours"] == t.loc["batch sizes", "authors_setting"]
    assert t.loc["LoRA", "match"] == t.loc["seeds", "match"] == t.loc["paired training set", "match"] == "selectable"
    assert t.loc["Fréchet distance", "match"] == "selectable" and "image_set=" in t.loc["Fréchet distance", "how"]


def test_our_side_is_read_from_the_profile() -> None:
    paper = get_profile("paper")
    changed = replace(paper, base=paper.base.replace(loss="dice", backbone="dinov2_vitl14", lora=LoraSettings(rank=8, alpha=16)),
                      batch_sizes=(("paired", 2),))
    t = protocol_table(changed).set_index("item")
    assert t.loc["segmentation loss", ["ours", "match"]].tolist() == ["dice", "no"]
    assert t.loc["DINOv2 variant", ["ours", "match"]].tolist() == ["dinov2_vitl14", "no"]
    assert t.loc["LoRA", "match"] == "no" and "rank 8, alpha 16" in t.loc["LoRA", "ours"]
    assert t.loc["batch sizes", "match"] == "no" and "openclip vnc: 1" in t.loc["batch sizes", "ours"]
    assert protocol_table("smoke").set_index("item").loc["input size", "match"] == "no"  # crops, on purpose


def test_an_unknown_profile_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match="papr"):
        protocol_table("papr")
