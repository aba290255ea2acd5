"""Tests of emlib.viz.tables: figures of result tables, with the right traces and titles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from emlib.viz.common import figure_badges
from emlib.errors import ConfigError
from emlib.viz import plot_diagnostics_table, plot_grouped_bars, plot_iou_matrix, plot_remedy_scatter, plot_remedy_table

RANDOM = ["random weights"]  # the badge finish_figure puts on random-weight figures


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
    assert figure_badges(fig) == RANDOM
    with pytest.raises(ConfigError, match="columns"):
        plot_iou_matrix(df.drop(columns="regime"))


def test_plot_diagnostics_table_takes_the_random_label_from_the_table():
    df = pd.DataFrame({"backbone": ["fake"], "weights_label": ["random weights"], "fd": [79.3219]})
    tab = plot_diagnostics_table(df)
    assert isinstance(tab.data[0], go.Table)
    assert list(tab.data[0].cells.values[2]) == ["79.322"]
    assert figure_badges(tab) == RANDOM


def test_plot_remedy_table_one_bar_trace_per_test_set_and_regime():
    summary = pd.DataFrame({
        "regime": ["frozen", "frozen", "lora", "lora"],
        "remedy": ["lucchi_pp", "paired", "lucchi_pp", "paired"],
        "kind": ["reference", "remedy", "reference", "remedy"],
        "iou_fg_lucchi_pp": [0.8, 0.7, 0.85, 0.75],
        "iou_fg_vnc": [0.2, 0.5, 0.25, 0.55],
        "weights_label": ["random weights"] * 4,
    })
    fig = plot_remedy_table(summary)
    assert len(fig.data) == 4 and all(isinstance(t, go.Bar) for t in fig.data)
    assert list(fig.data[0].y) == ["lucchi_pp (reference)", "paired"]
    assert figure_badges(fig) == RANDOM
    with pytest.raises(ConfigError, match="alignment_summary"):
        plot_remedy_table(summary.drop(columns="kind"))


def test_grouped_bars_one_trace_per_colour_and_panel() -> None:
    table = pd.DataFrame({
        "train_set": ["lucchi_pp"] * 4 + ["vnc"] * 4,
        "test_set": ["lucchi_pp", "vnc"] * 4,
        "regime": (["frozen"] * 2 + ["lora"] * 2) * 2,
        "iou_fg": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
    })
    fig = plot_grouped_bars(table, x="test_set", y="iou_fg", color="regime", facet="train_set",
                            title="IoU", weights_label="random weights")
    assert len(fig.data) == 4 and figure_badges(fig) == RANDOM
    assert list(fig.data[1].y) == [0.3, 0.4]
    with pytest.raises(ConfigError, match="lacks the columns"):
        plot_grouped_bars(table, x="nope", y="iou_fg", color="regime")


def test_plot_remedy_scatter_one_trace_per_regime_and_kind_at_the_mean_score() -> None:
    summary = pd.DataFrame({
        "regime": ["frozen"] * 3 + ["lora"] * 2,
        "remedy": ["baseline", "histmatch", "feature norm", "baseline", "histmatch"],
        "kind": ["baseline", "remedy", "remedy", "baseline", "remedy"],
        "iou_fg_lucchi_pp": [0.6, 0.7, 0.8, 0.5, 0.9],
        "iou_fg_vnc": [0.2, 0.3, 0.4, 0.1, 0.5],
        "fd": [80.0, 60.0, np.nan, 70.0, 50.0],
        "probe_auroc": [1.0, 0.9, np.nan, 1.0, 0.8],
        "latent_space": ["backbone", "backbone", "not measured", "backbone", "backbone"],
        "weights_label": ["random weights"] * 5,
    })
    fig = plot_remedy_scatter(summary)
    assert [t.name for t in fig.data] == ["frozen, baseline", "frozen, remedy", "lora, baseline", "lora, remedy"]
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    np.testing.assert_allclose(np.asarray(fig.data[1].y, dtype=float), [0.5, 0.6])
    assert list(fig.data[1].hovertext) == ["histmatch", "feature norm"]
    assert fig.data[0].marker.color != fig.data[2].marker.color  # colour: the regime
    assert fig.data[0].marker.symbol != fig.data[1].marker.symbol  # symbol: the kind of run
    assert "Fréchet distance" in fig.layout.xaxis.title.text and figure_badges(fig) == RANDOM
    assert figure_badges(plot_remedy_scatter(summary, weights_label="pretrained")) == []
    by_probe = plot_remedy_scatter(summary.drop(columns="fd"), x="probe_auroc")
    assert list(by_probe.data[0].x) == [1.0]
    with pytest.raises(ConfigError, match="alignment_summary"):
        plot_remedy_scatter(summary.drop(columns="fd"))
