"""Tests of emlib.viz: every figure builds from arrays/tables, with the right traces and titles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from emlib.errors import ConfigError, ShapeError
from emlib.viz import (
    format_title,
    plot_diagnostics_table,
    plot_embedding_pca,
    plot_iou_matrix,
    plot_intensity_histograms,
    plot_patch_pca,
    plot_pca_side_by_side,
    plot_slice_browser,
    plot_slice_overlay,
)

RANDOM = "(random weights)"


@pytest.fixture
def pca_data():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(12, 3))
    labels = np.array(["Lucchi++"] * 7 + ["VNC"] * 5)
    hover = [f"slice {i}" for i in range(12)]
    return coords, labels, hover


def test_format_title():
    assert format_title("A", "random weights") == "A (random weights)"
    assert format_title("A (random weights)", "random weights") == "A (random weights)"
    assert format_title("A", "dinov2 lvd142m") == "A"
    assert format_title("A", None) == "A"


def test_plot_embedding_pca_2d_and_3d(pca_data):
    coords, labels, hover = pca_data
    fig = plot_embedding_pca(coords[:, :2], labels, hover_text=hover, explained_variance=[0.5, 0.2],
                             weights_label="random weights")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 2 and {t.name for t in fig.data} == {"Lucchi++", "VNC"}
    assert RANDOM in fig.layout.title.text
    assert "50.0 %" in fig.layout.xaxis.title.text
    assert list(fig.data[1].text) == hover[7:]
    fig3 = plot_embedding_pca(coords, labels, weights_label="lvd142m")
    assert isinstance(fig3.data[0], go.Scatter3d)
    assert RANDOM not in fig3.layout.title.text
    with pytest.raises(ShapeError, match="one label per row"):
        plot_embedding_pca(coords, labels[:3])


def test_plot_pca_side_by_side(pca_data):
    coords, labels, hover = pca_data
    frozen = {"coords": coords, "labels": labels, "explained_variance": [0.4, 0.3], "hover_text": hover}
    fig = plot_pca_side_by_side(frozen, (coords * 0.5, labels), subplot_titles=("frozen FD 79.3", "LoRA FD 45.0"),
                                weights_label="random weights")
    assert len(fig.data) == 4
    assert sum(t.showlegend for t in fig.data) == 2  # legend shared
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert RANDOM in fig.layout.title.text
    with pytest.raises(ConfigError, match="coords"):
        plot_pca_side_by_side({"labels": labels}, frozen)


def test_plot_patch_pca():
    rng = np.random.default_rng(0)
    maps = {"Lucchi++": rng.random((5, 7, 3)), "VNC": rng.random((6, 6, 3))}
    fig = plot_patch_pca(maps, weights_label="random weights")
    assert len(fig.data) == 2 and all(isinstance(t, go.Image) for t in fig.data)
    assert RANDOM in fig.layout.title.text
    images = {k: rng.integers(0, 256, (70, 98), dtype=np.uint8) for k in maps}
    assert len(plot_patch_pca(maps, images=images).data) == 4
    with pytest.raises(ShapeError, match=r"\(h, w, 3\)"):
        plot_patch_pca({"a": rng.random((4, 4))})


def test_plot_iou_matrix_aggregates_seeds():
    rows = []
    for regime in ("frozen", "LoRA"):
        for train in ("Lucchi++", "VNC", "paired"):
            for test in ("Lucchi++", "VNC"):
                for seed in range(2):
                    rows.append(dict(regime=regime, train_set=train, test_set=test, seed=seed, iou_fg=0.5 + 0.1 * seed))
    df = pd.DataFrame(rows)
    fig = plot_iou_matrix(df, weights_label="random weights")
    assert len(fig.data) == 2 and all(isinstance(t, go.Heatmap) for t in fig.data)
    assert np.asarray(fig.data[0].z).shape == (3, 2)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), 0.55)
    assert "0.55 ± 0.07" in np.asarray(fig.data[0].text).ravel().tolist()
    assert RANDOM in fig.layout.title.text
    with pytest.raises(ConfigError, match="columns"):
        plot_iou_matrix(df.drop(columns="regime"))


def test_plot_slice_overlay_categories():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    pred = np.zeros((8, 8), bool)
    pred[3:7, 3:7] = True
    fig = plot_slice_overlay(img, mask, pred, weights_label="random weights", title="slice 0")
    assert isinstance(fig.data[0], go.Image)
    assert [t.name for t in fig.data[1:]] == ["TP", "FP", "FN"]
    assert fig.layout.title.text == "slice 0 (random weights)"
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
    assert RANDOM in fig.layout.title.text
    # downsampling keeps the HTML small
    assert len(fig.to_html(include_plotlyjs=False)) < 100_000
    png = plot_slice_browser(images[:2], masks[:2], preds=masks[:2], max_side=32, image_format="png")
    assert len(png.data) == 2 + 3 and len(png.layout.sliders[0].steps) == 2
    with pytest.raises(ShapeError, match=r"\(Z, H, W\)"):
        plot_slice_browser(images[0])


def test_plot_intensity_histograms_and_table():
    rng = np.random.default_rng(0)
    imgs = {"Lucchi++": rng.integers(0, 256, (2, 16, 16), dtype=np.uint8),
            "VNC": rng.integers(50, 200, (3, 16, 16), dtype=np.uint8)}
    fig = plot_intensity_histograms(imgs, bins=32, weights_label="random weights")
    assert len(fig.data) == 2 and len(fig.data[0].x) == 32
    assert np.asarray(fig.data[1].y).sum() == pytest.approx(1.0)
    assert RANDOM in fig.layout.title.text
    df = pd.DataFrame({"backbone": ["fake"], "weights_label": ["random weights"], "fd": [79.3219]})
    tab = plot_diagnostics_table(df)
    assert isinstance(tab.data[0], go.Table)
    assert list(tab.data[0].cells.values[2]) == ["79.322"]
    assert RANDOM in tab.layout.title.text


def test_grouped_bars_one_trace_per_colour_and_panel() -> None:
    from emlib.viz import plot_grouped_bars

    table = pd.DataFrame({
        "train_set": ["lucchi_pp"] * 4 + ["vnc"] * 4,
        "test_set": ["lucchi_pp", "vnc"] * 4,
        "regime": (["frozen"] * 2 + ["lora"] * 2) * 2,
        "iou_fg": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
    })
    fig = plot_grouped_bars(table, x="test_set", y="iou_fg", color="regime", facet="train_set",
                            title="IoU", weights_label="random weights")
    assert len(fig.data) == 4 and "(random weights)" in fig.layout.title.text
    assert list(fig.data[1].y) == [0.3, 0.4]
    with pytest.raises(ConfigError, match="lacks the columns"):
        plot_grouped_bars(table, x="nope", y="iou_fg", color="regime")
