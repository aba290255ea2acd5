"""PCA pictures of embeddings: slice embeddings as scatters, patch tokens as RGB maps."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emlib.errors import ConfigError, ShapeError
from emlib.viz.common import color_map, finish_figure, to_uint8, unique_in_order

__all__ = ["plot_embedding_pca", "plot_pca_side_by_side", "plot_patch_pca"]


def _axis_label(i: int, evr: Sequence[float] | None) -> str:
    if evr is not None and len(evr) > i:
        return f"PC{i + 1} ({100 * float(evr[i]):.1f} %)"
    return f"PC{i + 1}"


def _check_coords(coords: Any, labels: Any, hover_text: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    coords = np.asarray(coords, dtype=float)
    labels = np.asarray(labels).astype(str)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise ShapeError(f"coords has shape {coords.shape}; pass PCA coordinates of shape (n, 2) or (n, 3)")
    if labels.shape != (coords.shape[0],):
        raise ShapeError(
            f"labels has shape {labels.shape} but coords has {coords.shape[0]} rows; pass one label per row"
        )
    if hover_text is not None:
        hover_text = np.asarray(hover_text).astype(str)
        if hover_text.shape != (coords.shape[0],):
            raise ShapeError(
                f"hover_text has shape {hover_text.shape} but coords has {coords.shape[0]} rows; pass one text per row"
            )
    return coords, labels, hover_text


def _pca_traces(
    coords: np.ndarray,
    labels: np.ndarray,
    hover_text: np.ndarray | None,
    colors: dict[str, str],
    *,
    three_d: bool,
    showlegend: bool = True,
    marker_size: int = 6,
) -> list[go.BaseTraceType]:
    traces = []
    for name in unique_in_order(labels):
        sel = labels == name
        text = hover_text[sel] if hover_text is not None else None
        common = dict(
            name=name,
            legendgroup=name,
            showlegend=showlegend,
            text=text,
            hovertemplate=("%{text}<br>" if text is not None else "") + name + "<extra></extra>",
            marker=dict(color=colors[name], size=marker_size, opacity=0.8),
            mode="markers",
        )
        if three_d:
            traces.append(go.Scatter3d(x=coords[sel, 0], y=coords[sel, 1], z=coords[sel, 2], **common))
        else:
            traces.append(go.Scatter(x=coords[sel, 0], y=coords[sel, 1], **common))
    return traces


def plot_embedding_pca(
    coords: Any,
    labels: Any,
    *,
    hover_text: Any = None,
    explained_variance: Sequence[float] | None = None,
    title: str = "PCA of image embeddings",
    weights_label: str | None = None,
    marker_size: int = 6,
) -> go.Figure:
    """Scatter of PCA coordinates of image embeddings, one colour per dataset.

    Parameters
    ----------
    coords : array-like of shape (n, 2) or (n, 3)
        PCA coordinates (e.g. from :func:`emlib.diagnostics.pca_embed`); three
        columns give a 3-D scatter.
    labels : array-like of shape (n,)
        Dataset name per point (one trace per name).
    hover_text : array-like of shape (n,), default=None
        Text shown on hover, e.g. slice ids.
    explained_variance : sequence of float, default=None
        Explained-variance ratios, shown in the axis titles.
    title : str, default='PCA of image embeddings'
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure.
    marker_size : int, default=6

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One trace per dataset.
    """
    coords, labels, hover_text = _check_coords(coords, labels, hover_text)
    three_d = coords.shape[1] >= 3
    colors = color_map(unique_in_order(labels))
    fig = go.Figure(_pca_traces(coords, labels, hover_text, colors, three_d=three_d, marker_size=marker_size))
    if three_d:
        fig.update_layout(
            scene=dict(
                xaxis_title=_axis_label(0, explained_variance),
                yaxis_title=_axis_label(1, explained_variance),
                zaxis_title=_axis_label(2, explained_variance),
            )
        )
    else:
        fig.update_xaxes(title_text=_axis_label(0, explained_variance))
        fig.update_yaxes(title_text=_axis_label(1, explained_variance))
    finish_figure(fig, title, weights_label, legend_title_text="dataset")
    return fig


def _unpack_panel(panel: Any, name: str) -> tuple[Any, Any, Any, Any]:
    if isinstance(panel, Mapping):
        if "coords" not in panel or "labels" not in panel:
            raise ConfigError(f"{name} lacks 'coords' or 'labels'; pass a dict with coords, labels and optionally "
                              "explained_variance and hover_text")
        return panel["coords"], panel["labels"], panel.get("explained_variance"), panel.get("hover_text")
    if isinstance(panel, (tuple, list)) and 2 <= len(panel) <= 4:
        items = list(panel) + [None] * (4 - len(panel))
        return items[0], items[1], items[2], items[3]
    raise ConfigError(
        f"{name} of type {type(panel).__name__} is not understood; pass a dict with coords and labels "
        "or a tuple (coords, labels[, explained_variance[, hover_text]])"
    )


def plot_pca_side_by_side(
    frozen: Any,
    lora: Any,
    *,
    subplot_titles: tuple[str, str] = ("frozen", "LoRA"),
    title: str = "PCA of image embeddings: frozen vs LoRA",
    weights_label: str | None = None,
    marker_size: int = 6,
) -> go.Figure:
    """Two PCA scatters side by side (the paper's Fig. 1 a/b).

    Parameters
    ----------
    frozen, lora : dict or tuple
        Each ``{"coords": (n, 2+), "labels": (n,), "explained_variance": ...,
        "hover_text": ...}`` or a tuple ``(coords, labels[, explained_variance[,
        hover_text]])``. Only the first two components are drawn.
    subplot_titles : (str, str), default=('frozen', 'LoRA')
        Panel titles, e.g. with the Fréchet distance of each.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure.
    marker_size : int, default=6

    Returns
    -------
    fig : plotly.graph_objects.Figure
        1 × 2 subplots, one trace per dataset and panel, legend shared.
    """
    panels = [_unpack_panel(frozen, "frozen"), _unpack_panel(lora, "lora")]
    checked = [(_check_coords(c, l, h), e) for c, l, e, h in panels]
    names = unique_in_order([n for (c, l, h), e in checked for n in l])
    colors = color_map(names)
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(subplot_titles))
    for col, ((coords, labels, hover), evr) in enumerate(checked, start=1):
        for tr in _pca_traces(
            coords[:, :2], labels, hover, colors, three_d=False, showlegend=(col == 1), marker_size=marker_size
        ):
            fig.add_trace(tr, row=1, col=col)
        fig.update_xaxes(title_text=_axis_label(0, evr), row=1, col=col)
        fig.update_yaxes(title_text=_axis_label(1, evr), row=1, col=col)
    finish_figure(fig, title, weights_label, legend="right", legend_title_text="dataset")
    return fig



def plot_patch_pca(
    rgb_maps: Mapping[str, Any],
    *,
    images: Mapping[str, Any] | None = None,
    title: str = "First three principal components of patch tokens",
    weights_label: str | None = None,
) -> go.Figure:
    """Patch-token PCA pictures (from :func:`emlib.diagnostics.patch_pca_rgb`) side by side.

    Parameters
    ----------
    rgb_maps : dict of str → array of shape (h, w, 3), floats in [0, 1]
        One picture per panel (e.g. per dataset, or frozen vs LoRA).
    images : dict of str → array of shape (H, W), default=None
        Optional grey slices shown in a first row above the maps of the same key.
    title : str
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Image`` trace per map (plus one per slice when ``images`` is given).
    """
    if not rgb_maps:
        raise ConfigError("rgb_maps is empty; pass at least one {name: (h, w, 3)} map")
    names = list(rgb_maps)
    for n in names:
        shape = np.shape(rgb_maps[n])
        if len(shape) != 3 or shape[2] != 3:
            raise ShapeError(f"rgb_maps[{n!r}] has shape {shape}; pass RGB maps of shape (h, w, 3)")
    rows = 2 if images else 1
    fig = make_subplots(
        rows=rows, cols=len(names), subplot_titles=names + ([""] * len(names) if rows == 2 else []),
        vertical_spacing=0.05, horizontal_spacing=0.02,
    )
    for col, n in enumerate(names, start=1):
        if images:
            if n not in images:
                raise ConfigError(f"images lacks the key {n!r}; pass one slice per rgb_maps key")
            grey = to_uint8(images[n])
            if grey.ndim != 2:
                raise ShapeError(f"images[{n!r}] has shape {grey.shape}; pass grey slices of shape (H, W)")
            fig.add_trace(go.Image(z=np.repeat(grey[..., None], 3, axis=2), name=f"{n} slice",
                                   hoverinfo="skip"), row=1, col=col)
        rgb = (np.clip(np.asarray(rgb_maps[n], dtype=float), 0, 1) * 255).round().astype(np.uint8)
        fig.add_trace(go.Image(z=rgb, name=n, hovertemplate="token (%{y}, %{x})<extra></extra>"), row=rows, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    finish_figure(fig, title, weights_label, legend="none")
    fig.update_layout(margin=dict(l=10, r=10))
    return fig
