"""Pictures of slices: overlays, the client-side slice browser, the patch grid, histograms, a live viewer.

Figures are self-contained: the slice browser uses a plotly slider that runs client-side, so it
works in the static HTML of the book; its slices are downsampled (``max_side``) and embedded as
compressed images to keep pages small.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from scipy.ndimage import binary_erosion

from emlib.errors import ConfigError, ShapeError
from emlib.viz.common import OVERLAY_COLORS, color_map, finish_figure, to_uint8

__all__ = [
    "plot_slice_overlay",
    "plot_slice_browser",
    "plot_intensity_histograms",
    "plot_patch_grid",
    "slice_viewer",
]


#: Longest slice label a slider shows; longer labels get a drop-down menu instead.
_SLIDER_LABEL = 10


def _boundary(mask: np.ndarray) -> np.ndarray:
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
    grey = to_uint8(image).astype(np.float64)
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


def _as_slice(image: Any) -> np.ndarray:
    """``image`` as an array, checked to be one grey slice of shape (H, W) (ShapeError otherwise)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ShapeError(f"image has shape {img.shape}; pass one grey slice of shape (H, W)")
    return img


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
        ``'random weights'`` puts a "random weights" badge on the figure.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Image`` trace plus one legend entry per colour category.
    """
    img = _as_slice(image)
    m, p = _check_overlay_args(img, mask, pred, mode, alpha)
    rgb, cats = _overlay_rgb(img, m, p, mode=mode, alpha=alpha)
    fig = go.Figure([go.Image(z=rgb, name="slice", hovertemplate="(%{y}, %{x})<extra></extra>")])
    for tr in _legend_traces(cats):
        fig.add_trace(tr)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    finish_figure(fig, title, weights_label)
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


def _image_bytes(rgb: np.ndarray, image_format: str, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    else:
        Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _data_uri(rgb: np.ndarray, image_format: str, quality: int = 85) -> str:
    mime = "image/png" if image_format == "png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(_image_bytes(rgb, image_format, quality)).decode("ascii")


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
        ``'random weights'`` puts a "random weights" badge on the figure.

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
    stack = to_uint8(stack)  # one grey scaling for the whole stack, not per slice
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
    if max(len(label) for label in labels) <= _SLIDER_LABEL:
        control = dict(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="slice "), pad=dict(t=30))])
    else:  # long names (versions of a slice): a menu shows them whole, slider ticks would overlap
        buttons = [dict(method=s["method"], label=s["label"], args=s["args"]) for s in steps]
        control = dict(updatemenus=[dict(type="dropdown", active=0, buttons=buttons, x=0, xanchor="left", y=-0.02,
                                         yanchor="top", direction="up", pad=dict(t=4))])
    finish_figure(fig, title, weights_label, **control)
    if "updatemenus" in control:
        fig.update_layout(margin=dict(b=60))
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
        ``'random weights'`` puts a "random weights" badge on the figure.

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
    colors = color_map(list(arrays))
    fig = go.Figure()
    for name, a in arrays.items():
        counts, edges = np.histogram(a.ravel(), bins=int(bins), range=value_range)
        frac = counts / max(1, counts.sum())
        centres = (edges[:-1] + edges[1:]) / 2
        fig.add_trace(go.Scatter(x=centres, y=frac, mode="lines", line=dict(shape="hvh", color=colors[name]),
                                 name=name, hovertemplate="%{x:.1f}: %{y:.4f}<extra>" + name + "</extra>"))
    fig.update_xaxes(title_text="grey value")
    fig.update_yaxes(title_text="fraction of pixels", type="log" if log_y else "linear")
    finish_figure(fig, title, weights_label, legend_title_text="dataset")
    return fig


def plot_patch_grid(image: Any, patch_size: int, *, title: str = "", weights_label: str | None = None) -> go.Figure:
    """A grey slice with the backbone's patch grid drawn over it (one token per cell).

    Parameters
    ----------
    image : array of shape (H, W), dtype uint8
    patch_size : int
    title : str, default=''
    weights_label : str, default=None
        ``'random weights'`` puts a "random weights" badge on the figure.

    Returns
    -------
    fig : plotly.graph_objects.Figure
        One ``go.Image`` trace and one line trace holding the grid.
    """
    img = _as_slice(image)
    h, w = img.shape
    xs: list[float | None] = []
    ys: list[float | None] = []
    for x in range(0, w + 1, patch_size):
        xs += [x - 0.5, x - 0.5, None]
        ys += [-0.5, h - 0.5, None]
    for y in range(0, h + 1, patch_size):
        xs += [-0.5, w - 0.5, None]
        ys += [y - 0.5, y - 0.5, None]
    fig = go.Figure(go.Image(z=np.repeat(img[..., None], 3, axis=2), hoverinfo="skip"))
    grid_line = dict(color="rgba(249, 171, 0, 0.55)", width=1)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=grid_line, hoverinfo="skip", showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x")
    finish_figure(fig, title, weights_label, legend="none", height=520)
    fig.update_layout(margin=dict(l=10, r=10, b=10))
    return fig


def _overlay_png(image: Any, mask: Any, max_side: int) -> bytes:
    """PNG of one slice, subsampled to a long side of at most ``max_side``, with the mask filled in."""
    step = max(1, int(np.ceil(max(np.shape(image)) / max_side)))
    grey = np.asarray(image)[::step, ::step]
    m = None if mask is None else np.asarray(mask)[::step, ::step].astype(bool)
    rgb, _ = _overlay_rgb(grey, m, None, mode="fill", alpha=0.45)
    return _image_bytes(rgb, "png")


def slice_viewer(volume: Any, *, max_side: int = 512) -> Any:
    """A live ipywidgets slice viewer with the mask overlaid (for Jupyter and Colab sessions).

    It needs a running kernel, so the static book shows the plotly slider instead
    (:func:`plot_slice_browser`).

    Parameters
    ----------
    volume : emlib.data.Volume
        Anything with ``images`` (Z, H, W), ``masks`` (Z, H, W) or None, ``slice_ids`` and a length.
    max_side : int, default=512
        Slices are subsampled so their long side is at most this.

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets as widgets  # lazy: only live sessions draw widgets, and it pulls in the kernel machinery

    masks = volume.masks
    image = widgets.Image(format="png", value=_overlay_png(volume.images[0], None if masks is None else masks[0],
                                                           max_side))
    slider = widgets.IntSlider(0, 0, len(volume) - 1, description="slice", continuous_update=False)
    show = widgets.Checkbox(value=masks is not None, description="mask", disabled=masks is None)
    label = widgets.Label(volume.slice_ids[0])

    def update(_: Any = None) -> None:
        z = slider.value
        image.value = _overlay_png(volume.images[z], masks[z] if (masks is not None and show.value) else None,
                                   max_side)
        label.value = volume.slice_ids[z]

    slider.observe(update, names="value")
    show.observe(update, names="value")
    return widgets.VBox([widgets.HBox([slider, show, label]), image])
