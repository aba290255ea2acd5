"""Figures of result tables: the IoU matrix, diagnostics and remedy tables, grouped bars."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emlib.errors import ConfigError
from emlib.viz.common import color_map, finish_figure, unique_in_order

__all__ = ["plot_iou_matrix", "plot_diagnostics_table", "plot_remedy_table", "plot_grouped_bars", "plot_paper_numbers",
           "plot_remedy_scatter"]


def _table_weights_label(table: pd.DataFrame, weights_label: str | None) -> str | None:
    """``weights_label``, or when it is None the first random label of the table's ``weights_label`` column."""
    if weights_label is None and "weights_label" in table.columns:
        random_rows = [w for w in table["weights_label"].astype(str) if "random" in w.lower()]
        weights_label = random_rows[0] if random_rows else None
    return weights_label


def _score_columns(
    summary: pd.DataFrame, value: str, test_sets: Mapping[str, str] | None, needed: Sequence[str], fix: str
) -> tuple[dict[str, str], list[str]]:
    """The test sets (suffix -> display name; Lucchi++ and VNC by default) and their ``<value>_<suffix>``
    columns of a remedy summary; ConfigError naming the missing columns and ``fix``."""
    test_sets = dict(test_sets or {"lucchi_pp": "Lucchi++", "vnc": "VNC"})
    cols = [f"{value}_{t}" for t in test_sets]
    missing = [c for c in (*needed, *cols) if c not in summary.columns]
    if missing:
        raise ConfigError(f"summary lacks the columns {missing}; pass {fix}")
    return test_sets, cols


def plot_iou_matrix(
    df: pd.DataFrame,
    *,
    value: str = "iou_fg",
    train_col: str = "train_set",
    test_col: str = "test_set",
    regime_col: str = "regime",
    title: str = "Foreground IoU by training and test set",
    weights_label: str | None = None,
    zmin: float = 0.0,
    zmax: float = 1.0,
    colorscale: str = "Viridis",
) -> go.Figure:
    """Heatmaps of a score per (training set, test set), one panel per regime.

    Parameters
    ----------
    df : pandas.DataFrame
        Tidy results with columns ``train_col``, ``test_col``, ``regime_col``
        and ``value``. Several rows per cell (seeds) are averaged and the cell
        text shows mean ± standard deviation.
    value : str, default='iou_fg'
    train_col, test_col, regime_col : str
        Column names.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure.
    zmin, zmax : float, default=0, 1
        Colour range, shared by all panels.
    colorscale : str, default='Viridis'

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One annotated ``go.Heatmap`` per regime; rows are training sets,
        columns test sets.
    """
    missing = [c for c in (value, train_col, test_col, regime_col) if c not in df.columns]
    if missing:
        raise ConfigError(f"df lacks the columns {missing}; pass a tidy table with {train_col}, {test_col}, "
                          f"{regime_col} and {value}")
    regimes = unique_in_order(df[regime_col].tolist())
    trains = unique_in_order(df[train_col].tolist())
    tests = unique_in_order(df[test_col].tolist())
    agg = df.groupby([regime_col, train_col, test_col], sort=False)[value].agg(["mean", "std", "count"])
    fig = make_subplots(rows=1, cols=len(regimes), subplot_titles=[str(r) for r in regimes],
                        shared_yaxes=True, horizontal_spacing=0.06)
    for col, regime in enumerate(regimes, start=1):
        z = np.full((len(trains), len(tests)), np.nan)
        text = np.full((len(trains), len(tests)), "", dtype=object)
        for i, tr in enumerate(trains):
            for j, te in enumerate(tests):
                key = (regime, tr, te)
                if key in agg.index:
                    m, s, c = agg.loc[key]
                    z[i, j] = m
                    text[i, j] = f"{m:.2f}" if c < 2 or not np.isfinite(s) else f"{m:.2f} ± {s:.2f}"
        fig.add_trace(
            go.Heatmap(
                z=z, x=[str(t) for t in tests], y=[str(t) for t in trains], text=text,
                texttemplate="%{text}", coloraxis="coloraxis", name=str(regime),
                hovertemplate="train %{y}<br>test %{x}<br>" + value + " %{z:.3f}<extra>" + str(regime) + "</extra>",
            ),
            row=1, col=col,
        )
        fig.update_xaxes(title_text="test set", row=1, col=col)
    fig.update_yaxes(title_text="training set", autorange="reversed", row=1, col=1)
    finish_figure(fig, title, weights_label, legend="none",
                  coloraxis=dict(colorscale=colorscale, cmin=zmin, cmax=zmax, colorbar_title=value))
    return fig


def plot_diagnostics_table(
    df: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    decimals: int = 3,
    title: str = "Latent diagnostics",
    weights_label: str | None = None,
) -> go.Figure:
    """A table figure of diagnostics rows (e.g. :func:`emlib.diagnostics.domain_report`).

    Parameters
    ----------
    df : pandas.DataFrame
    columns : sequence of str, default=None
        Columns to show, in order; all by default.
    decimals : int, default=3
        Rounding of float columns.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure. When it is
        ``None`` and ``df`` has a ``weights_label`` column with a random label,
        that is used.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Table`` trace.
    """
    cols = list(df.columns) if columns is None else list(columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ConfigError(f"df lacks the columns {missing}; pass columns from {list(df.columns)}")
    weights_label = _table_weights_label(df, weights_label)
    cells = []
    for c in cols:
        s = df[c]
        if pd.api.types.is_float_dtype(s):
            cells.append([f"{v:.{decimals}f}" if pd.notna(v) else "" for v in s])
        else:
            cells.append([str(v) for v in s])
    fig = go.Figure([go.Table(header=dict(values=cols, align="left"), cells=dict(values=cells, align="left"))])
    finish_figure(fig, title, weights_label, legend="none")
    return fig


def plot_remedy_table(
    summary: pd.DataFrame,
    *,
    value: str = "iou_fg",
    test_sets: Mapping[str, str] | None = None,
    title: str = "Remedies for paired training: foreground IoU per test set",
    weights_label: str | None = None,
) -> go.Figure:
    """Horizontal bars of a score per remedy and test set, one panel per regime.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`emlib.alignment.alignment_summary` output: columns ``regime``, ``remedy``, ``kind``
        and ``<value>_<test set>`` per test set.
    value : str, default='iou_fg'
    test_sets : dict of str → str, default=None
        Column suffix → display name; ``{"lucchi_pp": "Lucchi++", "vnc": "VNC"}`` by default.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure. When it is ``None`` and
        ``summary`` has a ``weights_label`` column with a random label, that is used.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Bar`` trace per test set and regime; rows are remedies in table order, the
        reference rows (single-dataset training) labelled as such.
    """
    test_sets, _ = _score_columns(summary, value, test_sets, ("regime", "remedy", "kind"),
                                  "emlib.alignment.alignment_summary(...)")
    weights_label = _table_weights_label(summary, weights_label)
    regimes = unique_in_order(summary["regime"].tolist())
    colors = color_map(list(test_sets.values()))
    fig = make_subplots(rows=1, cols=len(regimes), subplot_titles=[str(r) for r in regimes], shared_yaxes=True,
                        horizontal_spacing=0.04)
    for col, regime in enumerate(regimes, start=1):
        part = summary[summary["regime"] == regime]
        labels = [f"{r} (reference)" if k == "reference" else str(r) for r, k in zip(part["remedy"], part["kind"])]
        for key, name in test_sets.items():
            fig.add_trace(
                go.Bar(y=labels, x=part[f"{value}_{key}"], orientation="h", name=name, marker_color=colors[name],
                       legendgroup=name, showlegend=col == 1,
                       hovertemplate="%{y}<br>" + name + ": %{x:.3f}<extra>" + str(regime) + "</extra>"),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=value, range=[0, 1], row=1, col=col)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    finish_figure(fig, title, weights_label, legend="right", barmode="group", legend_title_text="test set",
                  height=max(360, 28 * len(summary) // max(1, len(regimes)) + 160))
    return fig


def plot_grouped_bars(
    table: pd.DataFrame,
    *,
    x: str,
    y: str,
    color: str,
    facet: str | None = None,
    title: str = "",
    weights_label: str | None = None,
    y_range: tuple[float, float] | None = None,
    shared_y: bool = True,
) -> go.Figure:
    """Grouped bars of ``y`` over ``x``, one colour per ``color`` value, one panel per ``facet`` value.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy table with the columns named by ``x``, ``y``, ``color`` (and ``facet``); rows sharing
        the same cell are averaged (e.g. over seeds).
    y_range : (float, float), default=None
        Fixed y-axis range, e.g. ``(0, 1)`` for IoU.
    shared_y : bool, default=True
        One y axis for all panels; False gives each panel its own (values in different units).

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Bar`` trace per colour value and panel.
    """
    needed = [c for c in (x, y, color, facet) if c is not None]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ConfigError(f"table lacks the columns {missing}; it has {list(table.columns)}")
    keys = [c for c in (facet, x, color) if c is not None]
    means = table.groupby(keys, sort=False, dropna=False)[y].mean().reset_index()
    panels = unique_in_order(means[facet].tolist()) if facet else [None]
    colors = color_map([str(v) for v in unique_in_order(means[color].tolist())])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[str(p) for p in panels] if facet else None,
                        shared_yaxes=shared_y, horizontal_spacing=0.05 if shared_y else 0.12)
    for col, panel in enumerate(panels, start=1):
        part = means if facet is None else means[means[facet] == panel]
        for value in unique_in_order(means[color].tolist()):
            rows = part[part[color] == value]
            fig.add_trace(
                go.Bar(x=[str(v) for v in rows[x]], y=rows[y], name=str(value), marker_color=colors[str(value)],
                       legendgroup=str(value), showlegend=col == 1,
                       hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y:.3f}}<extra>{value}</extra>"),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=x, row=1, col=col)
    fig.update_yaxes(title_text=y, row=1, col=1)
    if not shared_y:
        fig.update_xaxes(title_text=None)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    # a legend right of the plot: above it, its entries wrap into rows on a phone and climb into the title
    finish_figure(fig, title, weights_label, legend="right", barmode="group", legend_title_text=color)
    return fig


def plot_paper_numbers(numbers: pd.DataFrame, *, title: str = "Fig. 1 numbers: paper vs this build",
                       weights_label: str | None = None) -> go.Figure:
    """The paper's Fig. 1 numbers next to this build's, distances and probe scores on separate axes.

    Parameters
    ----------
    numbers : pandas.DataFrame
        :func:`emlib.paper.book_vs_paper_numbers` output: ``claim_id``, ``source``, ``value``. Claims
        whose id starts with ``fd`` are Fréchet distances (one panel); the others are probe scores in
        [0, 1] (another panel, its own axis), so neither is flattened by the other's scale.

    Returns
    -------
    fig : plotly.graph_objects.Figure
    """
    missing = [c for c in ("claim_id", "source", "value") if c not in numbers.columns]
    if missing:
        raise ConfigError(f"numbers lacks the columns {missing}; pass emlib.paper.book_vs_paper_numbers(...)")
    kind = np.where(numbers["claim_id"].astype(str).str.startswith("fd"), "Fréchet distance", "probe score (0 to 1)")
    table = numbers.assign(panel=kind, claim=numbers["claim_id"].astype(str).str.replace("_", " "))
    fig = plot_grouped_bars(table, x="claim", y="value", color="source", facet="panel", title=title,
                            weights_label=weights_label, shared_y=False)
    for i, panel in enumerate(unique_in_order(table["panel"].tolist()), start=1):
        if panel.startswith("probe"):
            fig.update_yaxes(range=[0, 1.05], row=1, col=i)
    return fig


def plot_remedy_scatter(
    summary: pd.DataFrame,
    *,
    x: str = "fd",
    value: str = "iou_fg",
    test_sets: Mapping[str, str] | None = None,
    title: str = "Latent distance against segmentation score, one point per run",
    weights_label: str | None = None,
) -> go.Figure:
    """A latent diagnostic against the mean segmentation score, one point per remedy run.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`emlib.grid.remedies.alignment_summary` output with latents: columns ``regime``,
        ``remedy``, ``kind``, ``x`` and ``<value>_<test set>`` per test set; ``probe_auroc`` and
        ``latent_space``, when present, show on hover. Rows whose ``x`` is missing (a latent space
        that was not measured) have no point.
    x : str, default='fd'
        The horizontal axis: the Fréchet distance between the two datasets' image embeddings, or
        another column such as ``probe_auroc``.
    value : str, default='iou_fg'
        The score; the vertical axis is its mean over ``test_sets``.
    test_sets : dict of str → str, default=None
        Column suffix → display name; ``{"lucchi_pp": "Lucchi++", "vnc": "VNC"}`` by default.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure. When it is ``None`` and
        ``summary`` has a ``weights_label`` column with a random label, that is used.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Scatter`` trace per (regime, kind): colour says the regime, the marker symbol
        the kind of run (baseline, remedy, reference); hovering a point names its remedy.

    Examples
    --------
    >>> summary = pd.DataFrame({"regime": ["frozen"] * 2, "remedy": ["baseline", "histmatch"],
    ...                         "kind": ["baseline", "remedy"], "fd": [80.0, 60.0],
    ...                         "iou_fg_lucchi_pp": [0.5, 0.6], "iou_fg_vnc": [0.3, 0.4]})
    >>> [(t.name, float(t.y[0])) for t in plot_remedy_scatter(summary).data]
    [('frozen, baseline', 0.4), ('frozen, remedy', 0.5)]
    """
    import plotly.express as px  # only this figure needs plotly.express

    test_sets, cols = _score_columns(summary, value, test_sets, ("regime", "remedy", "kind", x),
                                     "emlib.alignment_summary(results, latents=...)")
    weights_label = _table_weights_label(summary, weights_label)
    mean = f"mean_{value}"
    points = summary.assign(**{mean: summary[cols].mean(axis=1)})
    hover = {c: fmt for c, fmt in (("probe_auroc", ":.3f"), ("latent_space", True)) if c in summary.columns}
    names = " and ".join(test_sets.values())
    axis = {"fd": f"Fréchet distance ({names} embeddings)", "probe_auroc": f"probe AUROC ({names})"}
    fig = px.scatter(points, x=x, y=mean, color="regime", symbol="kind", hover_name="remedy", hover_data=hover,
                     labels={x: axis.get(x, x), mean: f"mean {value} over {'both' if len(cols) == 2 else 'the'} test sets"},
                     template="plotly_white")
    finish_figure(fig, title, weights_label)
    return fig
