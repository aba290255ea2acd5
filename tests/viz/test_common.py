"""Tests of emlib.viz.common: the random-weights title rule and the shared colours."""

from __future__ import annotations

import numpy as np

from emlib.viz.common import DATASET_COLORS, color_map, format_title, to_uint8


def test_format_title():
    assert format_title("A", "random weights") == "A (random weights)"
    assert format_title("A (random weights)", "random weights") == "A (random weights)"
    assert format_title("A", "dinov2 lvd142m") == "A"
    assert format_title("A", None) == "A"


def test_dataset_colours_are_fixed_and_others_get_fallbacks():
    colors = color_map(["VNC", "other", "Lucchi++", "more"])
    assert colors["VNC"] == DATASET_COLORS["VNC"] and colors["Lucchi++"] == DATASET_COLORS["Lucchi++"]
    assert colors["other"] != colors["more"]


def test_to_uint8_scales_floats_and_keeps_uint8():
    a = np.array([[0, 7], [200, 255]], np.uint8)
    assert to_uint8(a) is a
    assert to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]
