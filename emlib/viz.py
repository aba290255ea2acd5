"""Plotly figures for the book, drawn from arrays and tables only (never models).

Every ``plot_*`` function returns a :class:`plotly.graph_objects.Figure` and
takes ``title`` and ``weights_label``. When the weights label says the backbone
had **random weights** (smoke runs without downloaded weights), the title gets
``" (random weights)"`` appended, so a figure can never be mistaken for a
result of the pretrained model.

Figures are self-contained: the slice browser uses a plotly slider that runs
client-side, so it works in the static HTML of the book; its slices are
downsampled (``max_side``) and embedded as compressed images to keep pages
small.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emlib.errors import ConfigError, ShapeError

__all__ = [
    "DATASET_COLORS",
    "OVERLAY_COLORS",
    "format_title",
    "plot_embedding_pca",
    "plot_pca_side_by_side",
    "plot_patch_pca",
    "plot_iou_matrix",
    "plot_slice_overlay",
    "plot_slice_browser",
    "plot_intensity_histograms",
    "plot_diagnostics_table",
    "plot_remedy_table",
    "plot_grouped_bars",
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


def _color_map(names: Sequence[str]) -> dict[str, str]:
    out, k = {}, 0
    for n in names:
        if n in DATASET_COLORS:
            out[n] = DATASET_COLORS[n]
        else:
            out[n] = _FALLBACK[k % len(_FALLBACK)]
            k += 1
    return out


def _unique_in_order(values: Sequence[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


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
    for name in _unique_in_order(labels):
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
        ``'random weights'`` adds "(random weights)" to the title.
    marker_size : int, default=6

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One trace per dataset.
    """
    coords, labels, hover_text = _check_coords(coords, labels, hover_text)
    three_d = coords.shape[1] >= 3
    colors = _color_map(_unique_in_order(labels))
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
    fig.update_layout(title=format_title(title, weights_label), legend_title_text="dataset", template="plotly_white")
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
        ``'random weights'`` adds "(random weights)" to the title.
    marker_size : int, default=6

    Returns
    -------
    fig : plotly.graph_objects.Figure
        1 × 2 subplots, one trace per dataset and panel, legend shared.
    """
    panels = [_unpack_panel(frozen, "frozen"), _unpack_panel(lora, "lora")]
    checked = [(_check_coords(c, l, h), e) for c, l, e, h in panels]
    names = _unique_in_order([n for (c, l, h), e in checked for n in l])
    colors = _color_map(names)
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(subplot_titles))
    for col, ((coords, labels, hover), evr) in enumerate(checked, start=1):
        for tr in _pca_traces(
            coords[:, :2], labels, hover, colors, three_d=False, showlegend=(col == 1), marker_size=marker_size
        ):
            fig.add_trace(tr, row=1, col=col)
        fig.update_xaxes(title_text=_axis_label(0, evr), row=1, col=col)
        fig.update_yaxes(title_text=_axis_label(1, evr), row=1, col=col)
    fig.update_layout(title=format_title(title, weights_label), legend_title_text="dataset", template="plotly_white")
    return fig


def _to_uint8(image: Any) -> np.ndarray:
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
        ``'random weights'`` adds "(random weights)" to the title.

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
            grey = _to_uint8(images[n])
            if grey.ndim != 2:
                raise ShapeError(f"images[{n!r}] has shape {grey.shape}; pass grey slices of shape (H, W)")
            fig.add_trace(go.Image(z=np.repeat(grey[..., None], 3, axis=2), name=f"{n} slice",
                                   hoverinfo="skip"), row=1, col=col)
        rgb = (np.clip(np.asarray(rgb_maps[n], dtype=float), 0, 1) * 255).round().astype(np.uint8)
        fig.add_trace(go.Image(z=rgb, name=n, hovertemplate="token (%{y}, %{x})<extra></extra>"), row=rows, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=format_title(title, weights_label), template="plotly_white", margin=dict(l=10, r=10))
    return fig


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
        ``'random weights'`` adds "(random weights)" to the title.
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
    regimes = _unique_in_order(df[regime_col].tolist())
    trains = _unique_in_order(df[train_col].tolist())
    tests = _unique_in_order(df[test_col].tolist())
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
    fig.update_layout(
        title=format_title(title, weights_label),
        coloraxis=dict(colorscale=colorscale, cmin=zmin, cmax=zmax, colorbar_title=value),
        template="plotly_white",
    )
    return fig


def _boundary(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=0)


def _hex_rgb(color: str) -> np.ndarray:
    c = color.lstrip("#")
    return np.array([int(c[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64)


def _overlay_categories(mask: np.ndarray | None, pred: np.ndarray | None) -> list[tuple[str, np.ndarray]]:
    if mask is not None and pred is not None:
        return [("TP", mask & pred), ("FP", ~mask & pred), ("FN", mask & ~pred)]
    if mask is not None:
        return [("mask", mask)]
    if pred is not None:
        return [("prediction", pred)]
    return []


def _overlay_rgb(
    image: np.ndarray, mask: np.ndarray | None, pred: np.ndarray | None, *, mode: str, alpha: float
) -> tuple[np.ndarray, list[str]]:
    grey = _to_uint8(image).astype(np.float64)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    cats = _overlay_categories(mask, pred)
    for name, sel in cats:
        if mode == "contour":
            sel = _boundary(sel)
            a = 1.0
        else:
            a = alpha
        rgb[sel] = (1 - a) * rgb[sel] + a * _hex_rgb(OVERLAY_COLORS[name])
    return np.clip(rgb.round(), 0, 255).astype(np.uint8), [n for n, _ in cats]


def _legend_traces(names: Sequence[str]) -> list[go.Scatter]:
    return [
        go.Scatter(x=[None], y=[None], mode="markers", name=n, showlegend=True, hoverinfo="skip",
                   marker=dict(color=OVERLAY_COLORS[n], size=10, symbol="square"))
        for n in names
    ]


def _check_overlay_args(image: np.ndarray, mask: Any, pred: Any, mode: str, alpha: float):
    if mode not in ("fill", "contour"):
        raise ConfigError(f"mode={mode!r} is not known; pass 'fill' or 'contour'")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha!r} is outside [0, 1]; pass e.g. 0.45")
    out = []
    for name, m in (("mask", mask), ("pred", pred)):
        if m is None:
            out.append(None)
            continue
        m = np.asarray(m) > 0
        if m.shape != image.shape:
            raise ShapeError(f"{name} has shape {m.shape} but image has shape {image.shape}; pass arrays of one shape")
        out.append(m)
    return out


def plot_slice_overlay(
    image: Any,
    mask: Any = None,
    pred: Any = None,
    *,
    mode: str = "fill",
    alpha: float = 0.45,
    title: str = "",
    weights_label: str | None = None,
) -> go.Figure:
    """One grey slice with the mask, the prediction, or their TP/FP/FN overlaid.

    Parameters
    ----------
    image : array-like of shape (H, W)
        Grey slice (uint8; floats in [0, 1] or [0, 255] are scaled to 0–255,
        other floats min-max scaled).
    mask : array-like of shape (H, W), default=None
        Ground-truth mask (foreground ``> 0``).
    pred : array-like of shape (H, W), default=None
        Predicted mask. With both ``mask`` and ``pred``, pixels are coloured
        TP (green), FP (orange-red) and FN (sky blue).
    mode : {'fill', 'contour'}, default='fill'
        Alpha-blended regions or one-pixel outlines.
    alpha : float, default=0.45
        Opacity of filled regions.
    title : str, default=''
    weights_label : str, default=None
        ``'random weights'`` adds "(random weights)" to the title.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Image`` trace plus one legend entry per colour category.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ShapeError(f"image has shape {img.shape}; pass one grey slice of shape (H, W)")
    m, p = _check_overlay_args(img, mask, pred, mode, alpha)
    rgb, cats = _overlay_rgb(img, m, p, mode=mode, alpha=alpha)
    fig = go.Figure([go.Image(z=rgb, name="slice", hovertemplate="(%{y}, %{x})<extra></extra>")])
    for tr in _legend_traces(cats):
        fig.add_trace(tr)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    fig.update_layout(title=format_title(title, weights_label), template="plotly_white",
                      legend=dict(orientation="h", y=-0.05))
    return fig


def _downsample(a: np.ndarray, factor: int, *, is_mask: bool) -> np.ndarray:
    if factor <= 1:
        return a
    if is_mask:
        return a[::factor, ::factor]
    h, w = (a.shape[0] // factor) * factor, (a.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return a[::factor, ::factor]
    block = a[:h, :w].astype(np.float64).reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    # keep the same output size as the strided masks by padding the cut-off edge
    target = a[::factor, ::factor].shape
    block = np.pad(block, ((0, target[0] - block.shape[0]), (0, target[1] - block.shape[1])), mode="edge")
    return block.round().astype(a.dtype) if a.dtype == np.uint8 else block


def _data_uri(rgb: np.ndarray, image_format: str, quality: int = 85) -> str:
    from PIL import Image

    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
        mime = "image/png"
    else:
        Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_slice_browser(
    images: Any,
    masks: Any = None,
    *,
    preds: Any = None,
    max_side: int = 256,
    mode: str = "fill",
    alpha: float = 0.45,
    slice_labels: Sequence[str] | None = None,
    image_format: str = "jpeg",
    title: str = "",
    weights_label: str | None = None,
) -> go.Figure:
    """Browse a stack slice by slice with a client-side slider (works in static HTML).

    Parameters
    ----------
    images : array-like of shape (Z, H, W)
        Grey stack.
    masks : array-like of shape (Z, H, W), default=None
        Ground-truth masks.
    preds : array-like of shape (Z, H, W), default=None
        Predictions; with ``masks`` the overlay shows TP/FP/FN.
    max_side : int, default=256
        Slices are downsampled by an integer factor so that their long side is
        at most this (area mean for images, nearest for masks).
    mode, alpha
        As in :func:`plot_slice_overlay`.
    slice_labels : sequence of str, default=None
        Slider labels; slice indices by default.
    image_format : {'jpeg', 'png'}, default='jpeg'
        Compression of the embedded slices; JPEG keeps a 165-slice stack at a
        few MB, PNG is lossless but several times larger.
    title : str, default=''
    weights_label : str, default=None
        ``'random weights'`` adds "(random weights)" to the title.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        Z ``go.Image`` traces (one visible at a time) plus one legend entry per
        overlay colour, and one slider with Z steps.
    """
    stack = np.asarray(images)
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ShapeError(f"images has shape {stack.shape}; pass a non-empty stack of shape (Z, H, W)")
    if image_format not in ("jpeg", "png"):
        raise ConfigError(f"image_format={image_format!r} is not known; pass 'jpeg' or 'png'")
    if int(max_side) < 8:
        raise ConfigError(f"max_side={max_side!r} is too small; pass at least 8 pixels")
    m_stack, p_stack = _check_overlay_args(stack, masks, preds, mode, alpha)
    stack = _to_uint8(stack)  # one grey scaling for the whole stack, not per slice
    z_count = stack.shape[0]
    labels = [str(i) for i in range(z_count)] if slice_labels is None else [str(s) for s in slice_labels]
    if len(labels) != z_count:
        raise ShapeError(f"slice_labels has {len(labels)} entries for {z_count} slices; pass one label per slice")
    factor = max(1, int(np.ceil(max(stack.shape[1:]) / int(max_side))))
    cats: list[str] = []
    fig = go.Figure()
    for z in range(z_count):
        im = _downsample(stack[z], factor, is_mask=False)
        mz = _downsample(m_stack[z], factor, is_mask=True) if m_stack is not None else None
        pz = _downsample(p_stack[z], factor, is_mask=True) if p_stack is not None else None
        rgb, cats = _overlay_rgb(im, mz, pz, mode=mode, alpha=alpha)
        fig.add_trace(go.Image(source=_data_uri(rgb, image_format), name=f"slice {labels[z]}",
                               visible=(z == 0), hoverinfo="skip"))
    for tr in _legend_traces(cats):
        fig.add_trace(tr)
    n_legend = len(cats)
    steps = []
    for z in range(z_count):
        visible = [i == z for i in range(z_count)] + [True] * n_legend
        steps.append(dict(method="update", label=labels[z], args=[{"visible": visible}]))
    fig.update_layout(
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="slice "), pad=dict(t=30))],
        title=format_title(title, weights_label),
        template="plotly_white",
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", autorange="reversed")
    return fig


def plot_intensity_histograms(
    images: Mapping[str, Any],
    *,
    bins: int = 64,
    value_range: tuple[float, float] | None = None,
    log_y: bool = False,
    title: str = "Intensity histograms",
    weights_label: str | None = None,
) -> go.Figure:
    """Grey-value histograms of several datasets, as fractions of pixels.

    Histograms are computed here with numpy, so the figure holds ``bins``
    numbers per dataset rather than every pixel.

    Parameters
    ----------
    images : dict of str → array-like of any shape
        Pixels per dataset, e.g. ``{"Lucchi++": (Z, H, W) uint8, "VNC": ...}``.
    bins : int, default=64
    value_range : (float, float), default=None
        Histogram range; (0, 256) for uint8 input, else the joint min–max.
    log_y : bool, default=False
    title : str
    weights_label : str, default=None
        ``'random weights'`` adds "(random weights)" to the title.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One step-line trace per dataset.
    """
    if not images:
        raise ConfigError("images is empty; pass {name: pixels} for at least one dataset")
    arrays = {k: np.asarray(v) for k, v in images.items()}
    if value_range is None:
        if all(a.dtype == np.uint8 for a in arrays.values()):
            value_range = (0.0, 256.0)
        else:
            value_range = (min(float(a.min()) for a in arrays.values()), max(float(a.max()) for a in arrays.values()))
            if value_range[1] <= value_range[0]:
                value_range = (value_range[0], value_range[0] + 1.0)
    colors = _color_map(list(arrays))
    fig = go.Figure()
    for name, a in arrays.items():
        counts, edges = np.histogram(a.ravel(), bins=int(bins), range=value_range)
        frac = counts / max(1, counts.sum())
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Scatter(x=centres, y=frac, mode="lines", line=dict(shape="hvh", color=colors[name]),
                                 name=name, hovertemplate="%{x:.1f}: %{y:.4f}<extra>" + name + "</extra>"))
    fig.update_xaxes(title_text="grey value")
    fig.update_yaxes(title_text="fraction of pixels", type="log" if log_y else "linear")
    fig.update_layout(title=format_title(title, weights_label), template="plotly_white", legend_title_text="dataset")
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
        ``'random weights'`` adds "(random weights)" to the title. When it is
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
    if weights_label is None and "weights_label" in df.columns:
        random_rows = [w for w in df["weights_label"].astype(str) if "random" in w.lower()]
        weights_label = random_rows[0] if random_rows else None
    cells = []
    for c in cols:
        s = df[c]
        if pd.api.types.is_float_dtype(s):
            cells.append([f"{v:.{decimals}f}" if pd.notna(v) else "" for v in s])
        else:
            cells.append([str(v) for v in s])
    fig = go.Figure([go.Table(header=dict(values=cols, align="left"), cells=dict(values=cells, align="left"))])
    fig.update_layout(title=format_title(title, weights_label), template="plotly_white")
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
        ``'random weights'`` adds "(random weights)" to the title. When it is ``None`` and
        ``summary`` has a ``weights_label`` column with a random label, that is used.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Bar`` trace per test set and regime; rows are remedies in table order, the
        reference rows (single-dataset training) labelled as such.
    """
    test_sets = dict(test_sets or {"lucchi_pp": "Lucchi++", "vnc": "VNC"})
    cols = [f"{value}_{t}" for t in test_sets]
    missing = [c for c in ("regime", "remedy", "kind", *cols) if c not in summary.columns]
    if missing:
        raise ConfigError(f"summary lacks the columns {missing}; pass emlib.alignment.alignment_summary(...)")
    if weights_label is None and "weights_label" in summary.columns:
        random_rows = [w for w in summary["weights_label"].astype(str) if "random" in w.lower()]
        weights_label = random_rows[0] if random_rows else None
    regimes = _unique_in_order(summary["regime"].tolist())
    colors = _color_map(list(test_sets.values()))
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
    fig.update_layout(title=format_title(title, weights_label), barmode="group", template="plotly_white",
                      legend_title_text="test set", height=max(360, 28 * len(summary) // max(1, len(regimes)) + 160))
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
) -> go.Figure:
    """Grouped bars of ``y`` over ``x``, one colour per ``color`` value, one panel per ``facet`` value.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy table with the columns named by ``x``, ``y``, ``color`` (and ``facet``); rows sharing
        the same cell are averaged (e.g. over seeds).
    y_range : (float, float), default=None
        Fixed y-axis range, e.g. ``(0, 1)`` for IoU.

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
    panels = _unique_in_order(means[facet].tolist()) if facet else [None]
    colors = _color_map([str(v) for v in _unique_in_order(means[color].tolist())])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[str(p) for p in panels] if facet else None,
                        shared_yaxes=True, horizontal_spacing=0.05)
    for col, panel in enumerate(panels, start=1):
        part = means if facet is None else means[means[facet] == panel]
        for value in _unique_in_order(means[color].tolist()):
            rows = part[part[color] == value]
            fig.add_trace(
                go.Bar(x=[str(v) for v in rows[x]], y=rows[y], name=str(value), marker_color=colors[str(value)],
                       legendgroup=str(value), showlegend=col == 1,
                       hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y:.3f}}<extra>{value}</extra>"),
                row=1, col=col,
            )
        fig.update_xaxes(title_text=x, row=1, col=col)
    fig.update_yaxes(title_text=y, row=1, col=1)
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    fig.update_layout(title=format_title(title, weights_label), barmode="group", template="plotly_white",
                      legend_title_text=color)
    return fig
