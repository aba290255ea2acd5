"""The two pairings of images with labels (emlib.data.pairing): the correct one, and the authors' published one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emlib.data import read_volume, slice_pairs
from emlib.data.pairing import published_labels
from emlib.errors import ConfigError


def test_published_pairing_zips_the_sorted_file_lists_of_lucchi(tiny_root) -> None:
    root, truth = tiny_root
    given = [label.name for _, _, label in slice_pairs("lucchi_pp", "test", root, pairing="published")]
    # sorted label names: 0, 1, 10, 11, 2, 3, ... 9, handed to mask0000 ... mask0011 in turn
    assert given == ["0.png", "1.png", "10.png", "11.png", *[f"{k}.png" for k in range(2, 10)]]
    vol = read_volume("lucchi_pp", "test", root=root, pairing="published")
    np.testing.assert_array_equal(vol.images, truth["lucchi_pp"]["test_images"])  # images stay in stack order
    np.testing.assert_array_equal(vol.masks, truth["lucchi_pp"]["test_masks"][[0, 1, 10, 11, *range(2, 10)]])
    assert vol.slice_ids == read_volume("lucchi_pp", "test", root=root).slice_ids


def test_published_pairing_keeps_vnc_paired_by_stem(tiny_root) -> None:
    root, _ = tiny_root
    for split in ("train", "test", "unlabelled"):
        assert slice_pairs("vnc", split, root, pairing="published") == slice_pairs("vnc", split, root)


def test_the_correct_pairing_is_the_default_and_a_typo_is_one_sentence(tiny_root) -> None:
    root, _ = tiny_root
    assert slice_pairs("lucchi_pp", "train", root) == slice_pairs("lucchi_pp", "train", root, pairing="correct")
    with pytest.raises(ConfigError, match=r"pairing='sorted' is not allowed; choose one of \['correct', 'published'\]"):
        slice_pairs("lucchi_pp", "train", root, pairing="sorted")


def test_published_labels_on_the_staged_test_split(shared_data: Path) -> None:
    pairs = slice_pairs("lucchi_pp", "test", shared_data, pairing="published")
    names = [(image.name, label.name) for _, image, label in pairs]
    assert names[:4] == [("mask0000.png", "0.png"), ("mask0001.png", "1.png"), ("mask0002.png", "10.png"),
                         ("mask0003.png", "100.png")]
    assert sum(image.stem == f"mask{int(label.stem):04d}" for _, image, label in pairs) == 2


def test_published_labels_leave_matching_stems_alone() -> None:
    pairs = [("00", Path("raw/00.tif"), Path("mito/00.png")), ("10", Path("raw/10.tif"), Path("mito/10.png"))]
    assert published_labels(pairs) == pairs
