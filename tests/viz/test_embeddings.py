"""Tests of emlib.viz.embeddings: PCA scatters and patch-token maps, with the right traces and titles."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from emlib.viz.common import figure_badges
from emlib.errors import ConfigError, ShapeError
from emlib.viz import plot_embedding_pca, plot_patch_pca, plot_pca_side_by_side

RANDOM = ["random weights"]  # the badge finish_figure puts on random-weight figures


@pytest.fixture
def pca_data():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(12, 3))
    labels = np.array(["Lucchi++"] * 7 + ["VNC"] * 5)
    hover = [f"slice {i}" for i in range(12)]
    return coords, labels, hover


def test_plot_embedding_pca_2d_and_3d(pca_data):
    coords, labels, hover = pca_data
    fig = plot_embedding_pca(coords[:, :2], labels, hover_text=hover, explained_variance=[0.5, 0.2],
                             weights_label="random weights")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 2 and {t.name for t in fig.data} == {"Lucchi++", "VNC"}
    assert figure_badges(fig) == RANDOM
    assert "50.0 %" in fig.layout.xaxis.title.text
    assert list(fig.data[1].text) == hover[7:]
    fig3 = plot_embedding_pca(coords, labels, weights_label="lvd142m")
    assert isinstance(fig3.data[0], go.Scatter3d)
    assert not figure_badges(fig3)
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
    assert figure_badges(fig) == RANDOM
    with pytest.raises(ConfigError, match="coords"):
        plot_pca_side_by_side({"labels": labels}, frozen)


def test_plot_patch_pca():
    rng = np.random.default_rng(0)
    maps = {"Lucchi++": rng.random((5, 7, 3)), "VNC": rng.random((6, 6, 3))}
    fig = plot_patch_pca(maps, weights_label="random weights")
    assert len(fig.data) == 2 and all(isinstance(t, go.Image) for t in fig.data)
    assert figure_badges(fig) == RANDOM
    images = {k: rng.integers(0, 256, (70, 98), dtype=np.uint8) for k in maps}
    assert len(plot_patch_pca(maps, images=images).data) == 4
    with pytest.raises(ShapeError, match=r"\(h, w, 3\)"):
        plot_patch_pca({"a": rng.random((4, 4))})
