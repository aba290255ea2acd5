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


def test_the_badge_has_a_row_of_its_own_above_the_title() -> None:
    import plotly.graph_objects as go

    from emlib.viz.common import BADGE_NAME, BADGE_ROW, finish_figure

    plain = finish_figure(go.Figure(), "PCA of slice embeddings (dinov2_vits14)", None)
    badged = finish_figure(go.Figure(), "PCA of slice embeddings (dinov2_vits14)", "random weights")
    (badge,) = [a for a in badged.layout.annotations if a.name == BADGE_NAME]
    assert badged.layout.title.pad.t == plain.layout.title.pad.t + BADGE_ROW  # the title moves below the badge row
    assert badged.layout.margin.t == plain.layout.margin.t + BADGE_ROW
    assert badge.yanchor == "bottom" and badge.yshift >= badged.layout.margin.t - BADGE_ROW  # its bottom in that row


def test_panel_titles_and_titles_wrap_to_a_phone() -> None:
    from plotly.subplots import make_subplots

    from emlib.viz.common import PHONE_TITLE_WIDTH, TITLE_WIDTH, finish_figure

    fig = make_subplots(rows=1, cols=2, subplot_titles=["Fréchet distance", "probe score (0 to 1)"])
    finish_figure(fig, "Fig. 1 numbers: the paper against this build, side by side", "random weights", legend="right")
    panels = [a.text for a in fig.layout.annotations if a.name is None]
    assert panels[0] == "Fréchet<br>distance" and "<br>" in panels[1]
    assert all(len(line) <= PHONE_TITLE_WIDTH // 2 for p in panels for line in p.split("<br>"))
    assert all(len(line) <= TITLE_WIDTH for line in fig.layout.title.text.split("<br>"))


def test_a_legend_that_wraps_on_a_phone_gets_its_rows_above_the_plot() -> None:
    import plotly.graph_objects as go

    from emlib.viz.common import LEGEND_ROW, finish_figure

    short = finish_figure(go.Figure([go.Scatter(name=n) for n in ("Lucchi++", "VNC")]), "Grey values", None,
                          legend_title_text="dataset")
    names = [f"{d} {part}" for d in ("Lucchi++", "VNC") for part in ("mitochondria", "background")]
    long = finish_figure(go.Figure([go.Scatter(name=n) for n in names]), "Grey values", None,
                         legend_title_text="dataset")
    assert long.layout.margin.t == short.layout.margin.t + 3 * LEGEND_ROW  # four rows at phone width, not one


def test_long_x_axis_titles_wrap_and_the_bottom_margin_grows() -> None:
    import plotly.graph_objects as go

    from emlib.viz.common import AXIS_TITLE_LINE, AXIS_TITLE_WIDTH, finish_figure

    fig = go.Figure(go.Scatter(x=[1], y=[1]))
    fig.update_layout(xaxis_title="Fréchet distance (Lucchi++ and VNC embeddings)")
    plain = finish_figure(go.Figure(), "t", None, xaxis_title="grey value")
    finish_figure(fig, "t", None)
    lines = fig.layout.xaxis.title.text.split("<br>")
    assert len(lines) == 2 and all(len(line) <= AXIS_TITLE_WIDTH for line in lines)
    assert fig.layout.margin.b == plain.layout.margin.b + AXIS_TITLE_LINE
    assert plain.layout.xaxis.title.text == "grey value"


def test_legend_rows_match_what_a_phone_shows() -> None:
    import plotly.graph_objects as go

    from emlib.viz.common import legend_rows

    # chapter 8's histogram legend: two columns of three rows on a 390 px page (screenshot of the smoke build)
    names = ["Lucchi++", "VNC as is", "VNC standardise", "VNC histmatch", "VNC resample", "VNC clahe"]
    assert legend_rows(go.Figure([go.Scatter(name=n) for n in names]), "dataset") == 3
