"""What every figure of the book shares: dataset and overlay colours, titles, and small helpers.

Every ``plot_*`` function of :mod:`emlib.viz` returns a :class:`plotly.graph_objects.Figure` and
takes ``title`` and ``weights_label``. :func:`finish_figure` gives them the book's layout: the
title wrapped to fit the book's column, the legend inside the figure, and, when the weights label
says the backbone had **random weights** (smoke runs without downloaded weights), a red
"random weights" badge on the figure (an annotation, so no title cut can hide it): a figure can
never be mistaken for a result of the pretrained model.
"""

from __future__ import annotations

from typing import Any, Sequence

import math
import textwrap

import numpy as np

__all__ = [
    "DATASET_COLORS", "OVERLAY_COLORS", "RANDOM_SUFFIX", "BADGE_NAME", "TITLE_WIDTH", "format_title", "wrap_title",
    "finish_figure", "legend_rows", "figure_badges", "color_map", "unique_in_order", "to_uint8",
]


#: Fixed colours per dataset display name, so every figure of the book agrees.
DATASET_COLORS: dict[str, str] = {"Lucchi++": "#0072B2", "VNC": "#D55E00", "VNC stack2": "#CC79A7"}
_FALLBACK = ["#009E73", "#E69F00", "#56B4E9", "#F0E442", "#000000", "#999999"]

#: Okabe-Ito colours of the overlay categories (colour-blind safe).
OVERLAY_COLORS: dict[str, str] = {
    "TP": "#009E73",
    "FP": "#D55E00",
    "FN": "#56B4E9",
    "mask": "#E69F00",
    "prediction": "#CC79A7",
}

#: What figure titles of random-weight models end with.
RANDOM_SUFFIX = "(random weights)"


def format_title(title: str, weights_label: str | None) -> str:
    """Append ``" (random weights)"`` to ``title`` when ``weights_label`` says so.

    Examples
    --------
    >>> format_title("PCA", "random weights")
    'PCA (random weights)'
    >>> format_title("PCA", "lvd142m")
    'PCA'
    """
    title = title or ""
    if weights_label and "random" in str(weights_label).lower() and RANDOM_SUFFIX not in title:
        return f"{title} {RANDOM_SUFFIX}".strip()
    return title


#: Name of the "random weights" annotation (what :func:`figure_badges` and the book's checks look for).
BADGE_NAME = "emlib-badge"
#: Characters per title line: a title line fits a phone's column (390 px window, about 350 px of
#: figure), so no title runs past the figure's edge on a phone.
TITLE_WIDTH = 40
#: Pixels of the badge's own row at the top of a figure (the title starts below it).
BADGE_ROW = 24
#: Characters of panel titles side by side that fit a phone's column (390 px viewport).
PHONE_TITLE_WIDTH = 28
#: Characters per line of a panel title, at least (a long word is never broken).
PANEL_TITLE_MIN = 10
#: Pixels a horizontal legend row has on a phone (390 px window: measured on the book's pages, from the
#: legend title's left edge to the figure's right edge).
PHONE_LEGEND_WIDTH = 310
#: Pixels of one more row of a horizontal legend.
LEGEND_ROW = 20
#: Characters per line of an x-axis title of a single panel at phone width.
AXIS_TITLE_WIDTH = 34
#: Pixels of one more line of an x-axis title.
AXIS_TITLE_LINE = 16


def wrap_title(title: str, width: int = TITLE_WIDTH) -> str:
    """``title`` broken into lines of at most ``width`` characters with ``<br>`` (plotly never wraps).

    Examples
    --------
    >>> wrap_title("Fréchet distance between Lucchi++ and VNC image embeddings, per remedy", 40)
    'Fréchet distance between Lucchi++ and<br>VNC image embeddings, per remedy'
    """
    lines = [line for part in (title or "").split("<br>") for line in (textwrap.wrap(part, width) or [""])]
    return "<br>".join(lines)


def _is_random(weights_label: str | None) -> bool:
    return bool(weights_label) and "random" in str(weights_label).lower()


def finish_figure(fig: Any, title: str, weights_label: str | None, *, legend: str = "top", height: int | None = None,
                  **layout: Any) -> Any:
    """The book's figure layout: wrapped title, legend inside the figure, "random weights" badge.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
    title : str
        Wrapped to :data:`TITLE_WIDTH` characters per line; the top margin grows with the lines.
    weights_label : str or None
        A label with "random" in it adds the badge (an annotation named :data:`BADGE_NAME`) on a
        row of its own at the top right of the figure, above the title: the top margin grows by
        :data:`BADGE_ROW` pixels and the title moves down by as much, so no title, however long
        or however narrow the page, runs under the badge.
    legend : {'top', 'right', 'none'}, default='top'
        A horizontal legend above the plot (under the title), or a vertical one right of the plot
        (figures with panel titles), the margin growing to hold it; 'none' leaves plotly's.
    height : int, default=None
        Figure height in pixels.
    **layout
        More ``update_layout`` arguments.

    Returns
    -------
    fig
        The same figure.
    """
    text = wrap_title(title)
    n_lines = text.count("<br>") + 1 if text else 0
    badge = _is_random(weights_label) and BADGE_NAME not in {a.name for a in fig.layout.annotations}
    pad = (10 if n_lines <= 1 else 22) + (BADGE_ROW if badge else 0)  # plotly lifts titles of several lines ~12 px
    panel_lines = _wrap_panel_titles(fig)
    legend_title = layout.get("legend_title_text", fig.layout.legend.title.text)
    legend_px = 30 + LEGEND_ROW * (legend_rows(fig, legend_title) - 1) if legend == "top" else 0
    top = pad + 21 * max(n_lines, 1) + legend_px + (18 * panel_lines + 6 if panel_lines else 0) + 10
    fig.update_layout(title=dict(text=text, x=0, xanchor="left", xref="container", y=1, yanchor="top",
                                 yref="container", pad=dict(t=pad, l=10), font=dict(size=15)),
                      template="plotly_white", margin=dict(t=top, l=60, r=20, b=50))
    if legend == "top":
        fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    elif legend == "right":
        fig.update_layout(legend=dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top"))
    if height is not None:
        fig.update_layout(height=height)
    if layout:
        fig.update_layout(**layout)
    extra = _wrap_axis_titles(fig)
    if extra:
        fig.update_layout(margin=dict(b=(fig.layout.margin.b or 50) + AXIS_TITLE_LINE * extra))
    if badge:
        margin_top = fig.layout.margin.t if fig.layout.margin.t is not None else top
        fig.add_annotation(name=BADGE_NAME, text=str(weights_label), xref="paper", yref="paper", x=1, y=1,
                           xanchor="right", yanchor="bottom", yshift=max(margin_top - BADGE_ROW + 2, 2),
                           showarrow=False, bgcolor="#b3261e", font=dict(color="white", size=11), borderpad=3)
    return fig


def _text_px(text: str, size: int = 12) -> float:
    """About how many pixels ``text`` takes at font ``size`` (plotly's default sans-serif)."""
    return 0.46 * size * len(text)


def legend_rows(fig: Any, legend_title: str | None = None) -> int:
    """Rows a horizontal legend of ``fig`` takes on a phone (at least 1).

    Plotly lays a horizontal legend that does not fit in one row out as a grid of equal columns
    (as wide as its widest entry) after the legend's title; :func:`finish_figure` keeps room for
    as many rows as the legend takes at :data:`PHONE_LEGEND_WIDTH` pixels, so the legend never
    grows into the title on a phone.

    Examples
    --------
    >>> import plotly.graph_objects as go
    >>> short = go.Figure([go.Scatter(name="Lucchi++"), go.Scatter(name="VNC")])
    >>> legend_rows(short, "dataset")
    1
    >>> long = go.Figure([go.Scatter(name=f"{d} {part}") for d in ("Lucchi++", "VNC")
    ...                   for part in ("mitochondria", "background")])
    >>> legend_rows(long, "dataset")
    4
    """
    names = [str(t.name) for t in fig.data if t.name and getattr(t, "showlegend", False) is not False]
    if not names:
        return 1
    entries = [40 + _text_px(n) for n in names]
    room = PHONE_LEGEND_WIDTH - (_text_px(str(legend_title)) + 20 if legend_title else 0)
    if sum(entries) <= room:
        return 1
    columns = max(1, int(room // max(entries)))
    return math.ceil(len(names) / columns)


def _wrap_axis_titles(fig: Any) -> int:
    """Wrap the x-axis titles of ``fig`` to fit a phone; returns the lines added to the tallest one.

    A single panel's title gets :data:`AXIS_TITLE_WIDTH` characters per line; panels side by side
    share them (never fewer than :data:`PANEL_TITLE_MIN`).
    """
    width = max(PANEL_TITLE_MIN, AXIS_TITLE_WIDTH // _panel_columns(fig))
    extra = 0
    for ax in (fig.layout[k] for k in fig.layout if str(k).startswith("xaxis")):
        text = ax.title.text
        if text and "<br>" not in text and len(text) > width:
            ax.title.text = wrap_title(text, width)
            extra = max(extra, ax.title.text.count("<br>"))
    return extra


def _panel_columns(fig: Any) -> int:
    """Panels of ``fig`` side by side (distinct x-axis domains; at least 1)."""
    xaxes = [fig.layout[k] for k in fig.layout if str(k).startswith("xaxis")]
    return max(len({tuple(round(float(v), 3) for v in (ax.domain or (0, 1))) for ax in xaxes}), 1)


def _panel_width(fig: Any) -> int:
    """Characters per line of a panel title: the panels share :data:`PHONE_TITLE_WIDTH` characters."""
    return max(PANEL_TITLE_MIN, PHONE_TITLE_WIDTH // _panel_columns(fig))


def _wrap_panel_titles(fig: Any) -> int:
    """Wrap the panel titles of ``fig`` (``make_subplots`` annotations above the plots) to fit a phone.

    Each panel gets an equal share of :data:`PHONE_TITLE_WIDTH` characters, so the titles of
    neighbouring panels never overlap at phone width (390 px); the titles are set at 13 px.

    Returns
    -------
    int
        Lines of the tallest panel title (0 when the figure has none).
    """
    panels = [a for a in fig.layout.annotations if a.name != BADGE_NAME and a.yref == "paper" and (a.y or 0) >= 1]
    if not panels:
        return 0
    width = _panel_width(fig)
    lines = 1
    for a in panels:
        a.text = wrap_title(str(a.text or ""), width)
        a.font = dict(size=13)
        lines = max(lines, a.text.count("<br>") + 1)
    return lines


def figure_badges(fig: Any) -> list[str]:
    """Texts of the badges :func:`finish_figure` put on ``fig`` (e.g. ``['random weights']``)."""
    return [a.text for a in fig.layout.annotations if a.name == BADGE_NAME]


def color_map(names: Sequence[str]) -> dict[str, str]:
    """A colour per name: the fixed :data:`DATASET_COLORS` for datasets, colour-blind safe fallbacks for the rest.

    Parameters
    ----------
    names : sequence of str
        Display names, in the order the fallback colours are handed out.

    Returns
    -------
    dict of str to str
        Name -> hex colour.

    Examples
    --------
    >>> color_map(["VNC", "other"])
    {'VNC': '#D55E00', 'other': '#009E73'}
    """
    out, k = {}, 0
    for n in names:
        if n in DATASET_COLORS:
            out[n] = DATASET_COLORS[n]
        else:
            out[n] = _FALLBACK[k % len(_FALLBACK)]
            k += 1
    return out


def unique_in_order(values: Sequence[Any]) -> list[Any]:
    """The distinct ``values`` in the order they first appear.

    Parameters
    ----------
    values : sequence
        Hashable values.

    Returns
    -------
    list
        Each value once.

    Examples
    --------
    >>> unique_in_order(["b", "a", "b", "c"])
    ['b', 'a', 'c']
    """
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def to_uint8(image: Any) -> np.ndarray:
    """Grey values as uint8 for display: uint8 unchanged, bool as {0, 255}, other values scaled.

    Floats within [0, 1] map to 0-255 and values within [0, 255] keep their scale; any other range
    is stretched from its finite minimum to its maximum. Non-finite values become 0.

    Parameters
    ----------
    image : array_like
        An image or a stack of images.

    Returns
    -------
    ndarray of dtype uint8
        Same shape as ``image`` (the same array when it is already uint8).

    Examples
    --------
    >>> to_uint8(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    """
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif lo >= 0.0 and hi <= 255.0:
        lo, hi = 0.0, 255.0
    scaled = (a - lo) / (hi - lo if hi > lo else 1.0)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)
