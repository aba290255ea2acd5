"""Tests of emlib.viz.slices: overlays, the slice browser, the patch grid, histograms, the live viewer."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from emlib.viz.common import figure_badges
from emlib.errors import ConfigError, ShapeError
from emlib.viz import (
    OVERLAY_COLORS,
    plot_intensity_histograms,
    plot_patch_grid,
    plot_slice_browser,
    plot_slice_overlay,
    slice_viewer,
)

RANDOM = ["random weights"]  # the badge finish_figure puts on random-weight figures


def test_plot_slice_overlay_categories():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    pred = np.zeros((8, 8), bool)
    pred[3:7, 3:7] = True
    fig = plot_slice_overlay(img, mask, pred, weights_label="random weights", title="slice 0")
    assert isinstance(fig.data[0], go.Image)
    assert [t.name for t in fig.data[1:]] == ["TP", "FP", "FN"]
    assert fig.layout.title.text == "slice 0" and figure_badges(fig) == RANDOM
    z = np.asarray(fig.data[0].z)
    assert z.shape == (8, 8, 3)
    assert (z[0, 0] == img[0, 0]).all()  # untouched background stays grey
    assert len(plot_slice_overlay(img, mask, mode="contour").data) == 2
    assert len(plot_slice_overlay(img).data) == 1
    with pytest.raises(ShapeError, match="same|one shape"):
        plot_slice_overlay(img, mask[:4])
    with pytest.raises(ConfigError, match="mode"):
        plot_slice_overlay(img, mask, mode="outline")


def test_plot_slice_browser_has_one_step_per_slice():
    rng = np.random.default_rng(0)
    z = 5
    images = rng.integers(0, 256, size=(z, 300, 200), dtype=np.uint8)
    masks = rng.random((z, 300, 200)) > 0.8
    fig = plot_slice_browser(images, masks, max_side=64, weights_label="random weights",
                             slice_labels=[f"s{i}" for i in range(z)])
    assert len(fig.layout.sliders) == 1
    steps = fig.layout.sliders[0].steps
    assert len(steps) == z
    assert len(fig.data) == z + 1  # Z slices + one legend entry ("mask")
    assert [s.label for s in steps] == [f"s{i}" for i in range(z)]
    assert steps[2].args[0]["visible"][:z] == [False, False, True, False, False]
    assert sum(bool(t.visible) for t in fig.data[:z]) == 1
    assert fig.data[0].source.startswith("data:image/jpeg;base64,")
    assert figure_badges(fig) == RANDOM
    # downsampling keeps the HTML small
    assert len(fig.to_html(include_plotlyjs=False)) < 100_000
    png = plot_slice_browser(images[:2], masks[:2], preds=masks[:2], max_side=32, image_format="png")
    assert len(png.data) == 2 + 3 and len(png.layout.sliders[0].steps) == 2
    assert png.data[0].source.startswith("data:image/png;base64,")
    with pytest.raises(ShapeError, match=r"\(Z, H, W\)"):
        plot_slice_browser(images[0])


def test_plot_intensity_histograms():
    rng = np.random.default_rng(0)
    imgs = {"Lucchi++": rng.integers(0, 256, (2, 16, 16), dtype=np.uint8),
            "VNC": rng.integers(50, 200, (3, 16, 16), dtype=np.uint8)}
    fig = plot_intensity_histograms(imgs, bins=32, weights_label="random weights")
    assert len(fig.data) == 2 and len(fig.data[0].x) == 32
    assert np.asarray(fig.data[1].y).sum() == pytest.approx(1.0)
    assert figure_badges(fig) == RANDOM


def test_plot_patch_grid_draws_one_line_per_cell_border():
    img = np.zeros((28, 42), np.uint8)
    fig = plot_patch_grid(img, 14, title="tokens", weights_label="random weights")
    assert isinstance(fig.data[0], go.Image) and np.asarray(fig.data[0].z).shape == (28, 42, 3)
    xs = list(fig.data[1].x)
    assert xs.count(None) == (42 // 14 + 1) + (28 // 14 + 1)  # vertical + horizontal lines
    assert fig.layout.title.text == "tokens" and figure_badges(fig) == RANDOM
    assert fig.layout.width is None and fig.layout.yaxis.scaleanchor == "x"  # fits a phone's column, stays square
    with pytest.raises(ShapeError, match=r"\(H, W\)"):
        plot_patch_grid(np.zeros((2, 28, 28)), 14)


def _viewer_png(images: np.ndarray, masks: np.ndarray | None, max_side: int) -> np.ndarray:
    """The first picture :func:`slice_viewer` shows of a stack, decoded."""
    volume = type("Vol", (), {"images": images, "masks": masks, "slice_ids": [str(i) for i in range(len(images))],
                              "__len__": lambda self: len(images)})()
    return np.asarray(Image.open(io.BytesIO(slice_viewer(volume, max_side=max_side).children[1].value)))


def test_viewer_pictures_are_subsampled_and_tint_the_mask():
    img = np.full((2, 100, 60), 100, np.uint8)
    mask = np.zeros((2, 100, 60), bool)
    mask[:, :50] = True
    rgb = _viewer_png(img, mask, 50)
    assert rgb.shape == (50, 30, 3)
    tint = np.array([int(OVERLAY_COLORS["mask"][i : i + 2], 16) for i in (1, 3, 5)])
    np.testing.assert_allclose(rgb[0, 0], 0.55 * 100 + 0.45 * tint, atol=1)
    assert (rgb[-1, -1] == 100).all()
    plain = _viewer_png(img, None, 512)
    assert plain.shape == (100, 60, 3) and (plain == 100).all()


def test_slice_viewer_follows_the_slider():
    images = np.stack([np.full((16, 16), v, np.uint8) for v in (10, 200)])
    volume = type("Vol", (), {"images": images, "masks": images > 100, "slice_ids": ["a", "b"],
                              "__len__": lambda self: 2})()  # what the viewer reads of an emlib.data.Volume
    box = slice_viewer(volume)
    (slider, show, label), image = box.children[0].children, box.children[1]
    first = image.value
    slider.value = 1
    assert label.value == "b" and image.value != first
    show.value = False
    assert np.asarray(Image.open(io.BytesIO(image.value)))[0, 0].tolist() == [200, 200, 200]
