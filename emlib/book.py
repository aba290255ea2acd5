"""The study-companion book: chapter helpers, the one-command build, and the browser check.

A chapter is a Jupytext percent-format notebook ``notebooks/<name>.py``; the book lists it as
``book/chapters/<name>`` in ``_toc.yml``. **Adding a chapter = adding the ``.py`` file and that
one ``_toc.yml`` line.** ``python -m emlib.book build --profile smoke`` then

1. converts each chapter listed in the table of contents with jupytext (in memory),
2. executes it once with papermill (``-p profile smoke``) into ``book/chapters/<name>.ipynb``;
   the kernel gets ``PLOTLY_RENDERER`` so plotly writes HTML the static book can show,
3. post-processes the executed notebook: the ``injected-parameters`` cell is tagged
   ``remove-cell``, an "Open in Colab" badge goes under the title, plotly.js is served once
   from ``_static`` instead of being pasted into every page, MathJax-from-CDN tags are dropped,
4. runs ``jupyter-book build`` with execution off (the book never runs code itself), and
5. with ``--check`` (or ``python -m emlib.book check``) opens every page in headless Chromium,
   failing on JavaScript errors, broken internal links, missing images and plotly figures that
   did not render, and saves one screenshot per page under ``_build/screenshots/``.

A failing cell stops the build with one line naming the chapter, the cell and where the partial
notebook is. Colab opens notebooks, not ``.py`` files: CI publishes ``jupytext --to ipynb``
copies (``python -m emlib.book export``) to the ``notebooks`` branch at the same paths the book
pages have, so both the badge and the theme's Colab launch button open them.

The first half of this module holds the small helpers the chapters call (settings from the
papermill parameters, data, backbones, display helpers); the second half the build.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from emlib.errors import ConfigError, EmlibError, WeightsError

__all__ = [
    "BookError",
    "ChapterSettings",
    "chapter_settings",
    "ensure_data",
    "colab_url",
    "colab_badge_markdown",
    "physical_extent_table",
    "token_grid_table",
    "plot_patch_grid",
    "slice_viewer",
    "crop_around_foreground",
    "backbone_view",
    "family_backbones",
    "load_backbones",
    "token_pca",
    "find_root",
    "list_chapters",
    "read_notebook_source",
    "execute_chapter",
    "postprocess_notebook",
    "build_book",
    "BuildReport",
    "export_notebooks",
    "check_book",
    "CheckReport",
    "PageReport",
    "main",
]

#: The project's repository (placeholder organisation until the book is published).
REPO_URL = "https://github.com/emlib-book/emlib"
#: Branch to which CI publishes the unexecuted ``.ipynb`` chapters for Colab.
NOTEBOOKS_BRANCH = "notebooks"
#: Chapter sources and where the executed notebooks go (relative to the book root).
SOURCE_DIR = "notebooks"
CHAPTER_DIR = "book/chapters"
#: Shared static files of the built book (one copy of plotly.js), relative to the book root.
STATIC_DIR = "book/chapters/_static"
#: Plotly renderer for the papermill kernel: the JSON for Jupyter plus HTML for the static book.
PLOTLY_RENDERER = "plotly_mimetype+notebook"
#: Set (to "1") in the kernel's environment while the book is built; chapters then skip live widgets.
BUILD_ENV = "EMLIB_BOOK_BUILD"
#: Headless Chromium from Debian's package, and the flags this machine needs.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The random-weights wording every smoke figure and table carries.
RANDOM_WEIGHTS = "random weights"

_COLAB = "https://colab.research.google.com"


class BookError(EmlibError, RuntimeError):
    """The book could not be built or checked; the message says which chapter/page and why."""


# =============================================================================================
# Part 1 - helpers the chapters call
# =============================================================================================


@dataclass(frozen=True)
class ChapterSettings:
    """The papermill parameters of a chapter, resolved against the profile.

    Build it with :func:`chapter_settings`. Displaying it (the last expression of a cell) shows a
    two-column table, so every page says which profile and which weights made its outputs.

    Attributes
    ----------
    profile : str
        ``smoke``, ``quick`` or ``paper``.
    description : str
        What the profile is for.
    backbone : str
        Registered backbone name (the profile's unless the chapter parameter overrides it).
    pretrained : bool
        False for the smoke profile: random weights, and every figure says so.
    data_dir : Path or None
        Data root; None means ``$EMLIB_DATA`` or the download cache.
    weights_dir : Path or None
        Folder of pretrained weight files; None means ``$EMLIB_WEIGHTS`` or the hubs.
    device : str
        ``cpu`` or ``cuda`` (``auto`` resolved).
    seed : int
    out_dir : Path
        Where chapters write run folders.
    view_slices : int or None
        Slices read for viewers (None: all).
    token_crop : int or None
        Side of the crop fed to backbones in token pictures (smoke), or None.
    token_long_edge : int or None
        Long side slices are resized to for token pictures (quick, paper), or None.
    live : bool
        True in a live Jupyter/Colab session, False while the book is being built.
    """

    profile: str
    description: str
    backbone: str
    pretrained: bool
    data_dir: Path | None
    weights_dir: Path | None
    device: str
    seed: int
    out_dir: Path
    view_slices: int | None
    token_crop: int | None
    token_long_edge: int | None
    live: bool

    @property
    def weights_label(self) -> str:
        """``random weights`` or ``pretrained``: the words figures and tables must carry."""
        return "pretrained" if self.pretrained else RANDOM_WEIGHTS

    def table(self) -> Any:
        """The settings as a two-column DataFrame (``setting``, ``value``)."""
        import pandas as pd

        from emlib.data import data_root

        rows = [
            ("profile", f"{self.profile}: {self.description}"),
            ("backbone", self.backbone),
            ("weights", self.weights_label),
            ("data", str(data_root(self.data_dir))),
            ("weights folder", str(self.weights_dir) if self.weights_dir else "$EMLIB_WEIGHTS or the hubs"),
            ("device", self.device),
            ("seed", str(self.seed)),
            ("output folder", str(self.out_dir)),
            ("slices shown", "all" if self.view_slices is None else str(self.view_slices)),
            (
                "backbone input",
                f"{self.token_crop}x{self.token_crop} crop" if self.token_crop else f"long side {self.token_long_edge}",
            ),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"])

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but no GPU is visible; use device='auto' or 'cpu'")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device={device!r} is not known; use 'auto', 'cpu' or 'cuda'")
    return device


def chapter_settings(
    profile: str = "smoke",
    *,
    backbone: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    seed: int = 0,
    out_dir: str | os.PathLike[str] = "runs",
) -> ChapterSettings:
    """Resolve a chapter's papermill parameters against the profile.

    Parameters
    ----------
    profile : {'smoke', 'quick', 'paper'}, default='smoke'
    backbone : str, default=None
        None takes the profile's backbone.
    data_dir : path, default=None
        None: ``$EMLIB_DATA`` if set, else the download cache (see :func:`ensure_data`).
    weights_dir : path, default=None
        A folder of weight files; when given it is exported as ``$EMLIB_WEIGHTS`` for this process,
        which is where :func:`emlib.models.create_backbone` looks.
    device : str, default='auto'
        ``auto`` picks CUDA when available (Colab GPU runtime), else CPU.
    seed : int, default=0
    out_dir : path, default='runs'

    Returns
    -------
    ChapterSettings

    Examples
    --------
    >>> s = chapter_settings("smoke", device="cpu")
    >>> s.backbone, s.weights_label, s.token_crop
    ('dinov2_vits14', 'random weights', 224)
    """
    from emlib.config import get_profile
    from emlib.models import WEIGHTS_ENV, get_backbone_spec

    prof = get_profile(profile)
    name = backbone or prof.base.backbone
    get_backbone_spec(name)  # unknown names fail here, with the list of known ones
    if weights_dir is not None:
        os.environ[WEIGHTS_ENV] = str(Path(weights_dir).expanduser())
    smoke = profile == "smoke"
    return ChapterSettings(
        profile=prof.name,
        description=prof.description,
        backbone=name,
        pretrained=prof.base.pretrained,
        data_dir=Path(data_dir).expanduser() if data_dir is not None else None,
        weights_dir=Path(weights_dir).expanduser() if weights_dir is not None else None,
        device=_resolve_device(device),
        seed=int(seed),
        out_dir=Path(out_dir),
        view_slices=4 if smoke else None,
        token_crop=224 if smoke else None,
        token_long_edge=None if smoke else (prof.embedding_long_edge or 518),
        live=not os.environ.get(BUILD_ENV),
    )


def ensure_data(settings: ChapterSettings, datasets: Sequence[str] = ("lucchi_pp", "vnc")) -> dict[str, Path]:
    """Make sure the datasets are there: a local copy (``$EMLIB_DATA``/``data_dir``) or a download.

    Returns
    -------
    dict of str to Path
        The official-layout folder of each dataset.
    """
    from emlib.data import fetch_dataset

    return {name: fetch_dataset(name, root=settings.data_dir, progress=False) for name in datasets}


def colab_url(name: str, *, repo_url: str = REPO_URL, branch: str = NOTEBOOKS_BRANCH) -> str:
    """Colab address of chapter ``name`` as published on the notebooks branch.

    Examples
    --------
    >>> colab_url("01_data")
    'https://colab.research.google.com/github/emlib-book/emlib/blob/notebooks/book/chapters/01_data.ipynb'
    """
    org_repo = urlsplit(repo_url).path.strip("/")
    return f"{_COLAB}/github/{org_repo}/blob/{branch}/{CHAPTER_DIR}/{name}.ipynb"


def _badge_svg() -> str:
    """A small self-contained "Open in Colab" badge (no external image, so it works offline)."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">'
        '<rect width="117" height="20" rx="3" fill="#555"/>'
        '<rect x="45" width="72" height="20" rx="3" fill="#F9AB00"/><rect x="45" width="6" height="20" fill="#F9AB00"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        '<text x="8" y="14">Open</text></g>'
        '<g fill="#202124" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        '<text x="52" y="14">in Colab</text></g></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def colab_badge_markdown(name: str, *, repo_url: str = REPO_URL) -> str:
    """Markdown (raw HTML) of the "Open in Colab" badge of chapter ``name``."""
    return (
        f'<a class="colab-badge" href="{colab_url(name, repo_url=repo_url)}" target="_blank" rel="noopener">'
        f'<img src="{_badge_svg()}" alt="Open in Colab" width="117" height="20"/></a>'
    )


def physical_extent_table(volumes: Mapping[str, Any]) -> Any:
    """Pixel size, section thickness and field of view of each volume, from its voxel size.

    Parameters
    ----------
    volumes : dict of str to emlib.data.Volume

    Returns
    -------
    DataFrame
        Indexed by dataset; columns ``slice (px), pixel (nm), section (nm), field of view (µm), z / xy``.
    """
    import pandas as pd

    rows = []
    for name, vol in volumes.items():
        z, y, x = vol.voxel_size_nm
        h, w = vol.shape[1:]
        rows.append(
            {
                "dataset": name,
                "slice (px)": f"{h} x {w}",
                "pixel (nm)": f"{y:g} x {x:g}",
                "section (nm)": f"{z:g}",
                "field of view (µm)": f"{h * y / 1000:.2f} x {w * x / 1000:.2f}",
                "z / xy": round(z / x, 1),
            }
        )
    return pd.DataFrame(rows).set_index("dataset")


def token_grid_table(
    shapes: Mapping[str, tuple[int, int]], *, patch_sizes: Sequence[int] = (14, 16), long_edge: int = 1022
) -> Any:
    """What the authors' resize does to each slice shape, and the token grid that results.

    Parameters
    ----------
    shapes : dict of str to (H, W)
        Slice shape per dataset.
    patch_sizes : sequence of int, default=(14, 16)
        DINOv2/OpenCLIP-L use 14, DINOv3 and OpenCLIP-B/16 use 16.
    long_edge : int, default=1022

    Returns
    -------
    DataFrame
        Indexed by dataset; columns ``slice, patch, resized, grid, tokens``.
    """
    import pandas as pd

    from emlib.data import protocol_size

    rows = []
    for name, (h, w) in shapes.items():
        for p in patch_sizes:
            rh, rw = protocol_size(h, w, long_edge=long_edge, multiple=p)
            rows.append(
                {
                    "dataset": name,
                    "slice": f"{h} x {w}",
                    "patch": p,
                    "resized": f"{rh} x {rw}",
                    "grid": f"{rh // p} x {rw // p}",
                    "tokens": (rh // p) * (rw // p),
                }
            )
    return pd.DataFrame(rows).set_index("dataset")


def plot_patch_grid(image: Any, patch_size: int, *, title: str = "", weights_label: str | None = None) -> Any:
    """A grey slice with the backbone's patch grid drawn over it (one token per cell).

    Parameters
    ----------
    image : array of shape (H, W), dtype uint8
    patch_size : int
    title : str, default=''
    weights_label : str, default=None
        ``'random weights'`` appends "(random weights)" to the title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    from emlib.viz import format_title

    img = np.asarray(image)
    if img.ndim != 2:
        raise ConfigError(f"image has shape {img.shape}; pass one grey slice of shape (H, W)")
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
    fig.update_layout(title=format_title(title, weights_label), template="plotly_white", height=520, width=520,
                      margin=dict(l=10, r=10, t=50, b=10))
    return fig


def _overlay_png(image: np.ndarray, mask: np.ndarray | None, max_side: int) -> bytes:
    import io

    from PIL import Image

    step = max(1, int(np.ceil(max(image.shape) / max_side)))
    grey = np.asarray(image)[::step, ::step].astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mask is not None:
        m = np.asarray(mask)[::step, ::step].astype(bool)
        rgb[m] = 0.55 * rgb[m] + 0.45 * np.array([230.0, 159.0, 0.0])
    buf = io.BytesIO()
    Image.fromarray(rgb.round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def slice_viewer(volume: Any, *, max_side: int = 512) -> Any:
    """A live ipywidgets slice viewer with the mask overlaid (for Jupyter and Colab sessions).

    It needs a running kernel, so the static book shows the plotly slider instead
    (:func:`emlib.viz.plot_slice_browser`).

    Parameters
    ----------
    volume : emlib.data.Volume
    max_side : int, default=512
        Slices are subsampled so their long side is at most this.

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets as widgets

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


def crop_around_foreground(image: Any, mask: Any, size: int, *, stride: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` x ``size`` window of a slice that holds the most foreground (ties: the first).

    Parameters
    ----------
    image : array of shape (H, W)
    mask : array of shape (H, W), bool, or None
        None takes the centre window.
    size : int
    stride : int, default=16
        Step of the window search, in pixels.

    Returns
    -------
    (image crop, mask crop)
        The mask crop is all False when ``mask`` is None.
    """
    img = np.asarray(image)
    h, w = img.shape
    if size > min(h, w):
        raise ConfigError(f"crop size {size} is larger than the slice ({h}x{w}); use a smaller crop")
    if mask is None:
        top, left = (h - size) // 2, (w - size) // 2
        m = np.zeros((size, size), bool)
        return img[top : top + size, left : left + size], m
    msk = np.asarray(mask).astype(bool)
    integral = np.pad(msk.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, where = -1, (0, 0)
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            bottom, right = top + size, left + size
            s = integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]
            if s > best:
                best, where = int(s), (top, left)
    top, left = where
    window = (slice(top, top + size), slice(left, left + size))
    return img[window], msk[window]


def backbone_view(image: Any, mask: Any, patch_size: int, settings: ChapterSettings) -> tuple[np.ndarray, np.ndarray]:
    """The slice a backbone sees in token pictures: a crop (smoke) or the protocol resize.

    Smoke: the ``token_crop`` window with the most mitochondria, its side floored to the patch size.
    Quick and paper: the whole slice resized with the authors' rule (long side ``token_long_edge``,
    sides floored to the patch size, :func:`emlib.data.protocol_size`).
    """
    from emlib.data import protocol_size, resize_slice

    img = np.asarray(image)
    if settings.token_crop:
        side = (settings.token_crop // patch_size) * patch_size
        return crop_around_foreground(img, mask, side)
    size = protocol_size(*img.shape, long_edge=int(settings.token_long_edge or 1022), multiple=patch_size)
    m = np.zeros(img.shape, bool) if mask is None else np.asarray(mask)
    return resize_slice(img, size), resize_slice(m, size, is_mask=True)


_FAMILY_DEFAULTS = {"dinov2": "dinov2_vits14", "dinov3": "dinov3_vits16", "openclip": "openclip_vitb16"}


def family_backbones(settings: ChapterSettings) -> list[str]:
    """One backbone per family (DINOv2, DINOv3, OpenCLIP) for side-by-side pictures.

    The chapter's backbone stands for its own family. The others are the small ones
    (``dinov3_vits16``, ``openclip_vitb16``) for smoke and quick, and the profile's for paper.
    """
    from emlib.config import get_profile
    from emlib.models import get_backbone_spec

    chosen = {get_backbone_spec(settings.backbone).family: settings.backbone}
    if settings.profile == "paper":
        for name in get_profile("paper").backbones:
            chosen.setdefault(get_backbone_spec(name).family, name)
    for family, name in _FAMILY_DEFAULTS.items():
        chosen.setdefault(family, name)
    return [chosen[f] for f in _FAMILY_DEFAULTS]


def load_backbones(names: Sequence[str], settings: ChapterSettings) -> dict[str, Any]:
    """Build each backbone on ``settings.device``; random weights on the smoke profile.

    Each random backbone is seeded with ``settings.seed``, so pictures repeat. When pretrained
    weights cannot be found (no file, no network, gated DINOv3), that backbone is left out and a
    line saying why is printed, instead of stopping the chapter.
    """
    import torch

    from emlib.models import create_backbone

    out = {}
    for name in names:
        torch.manual_seed(settings.seed)
        try:
            out[name] = create_backbone(name, pretrained=settings.pretrained, device=settings.device).eval()
        except WeightsError as err:
            print(f"left out {name}: {err}")
    return out


def token_pca(backbone: Any, views: Mapping[str, np.ndarray], settings: ChapterSettings) -> dict[str, np.ndarray]:
    """Patch tokens of each view through ``backbone``, as one joint PCA-to-RGB picture per view.

    The PCA is fitted on the tokens of all views together, so a colour means the same direction
    of feature space in every picture (:func:`emlib.diagnostics.patch_pca_rgb`).

    Returns
    -------
    dict of str to ndarray of shape (h, w, 3)
    """
    from emlib.data import normalize
    from emlib.diagnostics import extract_token_maps, patch_pca_rgb

    def prep(batch: np.ndarray) -> Any:
        return normalize(batch, backbone.mean, backbone.std)

    tokens = {
        name: extract_token_maps(backbone, view[None], normalise=prep, device=settings.device, progress=False)[0]
        for name, view in views.items()
    }
    return patch_pca_rgb(tokens, seed=settings.seed)


# =============================================================================================
# Part 2 - the build
# =============================================================================================


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The book root: the nearest folder (upwards from ``start`` or the cwd) with ``_toc.yml`` and ``notebooks/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "_config.yml").is_file() and (folder / SOURCE_DIR).is_dir():
            return folder
    raise BookError(
        f"no book root above {here} (a folder with _config.yml, _toc.yml and {SOURCE_DIR}/); "
        "run from the repository or pass --root"
    )


def _read_toc(toc_path: Path) -> dict[str, Any]:
    import yaml

    try:
        toc = yaml.safe_load(toc_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BookError(f"cannot read the table of contents {toc_path}: {err}") from None
    if not isinstance(toc, dict) or "root" not in toc:
        raise BookError(f"{toc_path} has no 'root' entry; it must be a jupyter-book _toc.yml")
    return toc


def _toc_files(node: Any) -> Iterator[str]:
    """Every ``file`` (and ``root``) entry of a toc, in order."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _strip_suffix(doc: str) -> str:
    return re.sub(r"\.(ipynb|md|py)$", "", doc.strip("/"))


def toc_docnames(root: Path, toc: str | os.PathLike[str] | None = None) -> list[str]:
    """Docnames (paths without suffix) of every page in the table of contents."""
    return [_strip_suffix(f) for f in _toc_files(_read_toc(Path(toc) if toc else root / "_toc.yml"))]


def list_chapters(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the chapters in the table of contents (``book/chapters/<name>``), in book order.

    Raises
    ------
    BookError
        A chapter in ``_toc.yml`` has no ``notebooks/<name>.py``.
    """
    base = find_root(root) if root is None else Path(root)
    names = []
    for doc in toc_docnames(base):
        if doc.startswith(CHAPTER_DIR + "/"):
            name = doc[len(CHAPTER_DIR) + 1 :]
            if not (base / SOURCE_DIR / f"{name}.py").is_file():
                raise BookError(
                    f"_toc.yml lists {doc} but {SOURCE_DIR}/{name}.py does not exist; add the notebook or drop the line"
                )
            names.append(name)
    return names


def _filter_toc(node: Any, keep: set[str]) -> Any:
    """A copy of a toc without the chapter pages not in ``keep`` (emptied parts/sections dropped)."""
    if isinstance(node, list):
        items = [_filter_toc(item, keep) for item in node]
        return [i for i in items if i is not None]
    if isinstance(node, dict):
        doc = node.get("file")
        if isinstance(doc, str):
            doc = _strip_suffix(doc)
            if doc.startswith(CHAPTER_DIR + "/") and doc not in keep:
                return None
        out = {}
        for key, value in node.items():
            if isinstance(value, (list, dict)):
                value = _filter_toc(value, keep)
                if value in (None, []):
                    continue
            out[key] = value
        if "file" not in out and "root" not in out and not any(isinstance(v, list) for v in out.values()):
            return None
        return out
    return node


def read_notebook_source(path: str | os.PathLike[str]) -> Any:
    """Read a Jupytext percent-format chapter as an nbformat notebook (with a python3 kernelspec)."""
    import jupytext

    path = Path(path)
    try:
        nb = jupytext.read(path, fmt="py:percent")
    except Exception as err:  # noqa: BLE001 - any parse failure is the same to the author
        raise BookError(f"cannot read {path} as a py:percent notebook: {err}") from None
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata.get("jupytext", {}).pop("text_representation", None)
    return nb


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _source_cell_number(nb: Any, fallback_index: int) -> int:
    """1-based number, in the chapter source, of the cell holding the error output of a partial notebook.

    papermill's own cells (``injected-parameters``, its error banners) are not counted.
    """
    skip = {"injected-parameters", "papermill-error-cell-tag"}
    number = 0
    for cell in nb.cells:
        if skip & set(cell.get("metadata", {}).get("tags", [])):
            continue
        number += 1
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return number
    return fallback_index + 1


def execute_chapter(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    profile: str = "smoke",
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    plotly_renderer: str = PLOTLY_RENDERER,
    timeout: int | None = 1800,
) -> Path:
    """Run one chapter with papermill (``-p profile <profile>``) and post-process the result.

    Parameters
    ----------
    source : path
        ``notebooks/<name>.py``.
    output : path
        Executed notebook to write (``book/chapters/<name>.ipynb``); written even when a cell fails.
    profile : str, default='smoke'
    parameters : dict, default=None
        More papermill parameters (``backbone``, ``data_dir``, ``out_dir``, ...).
    cwd : path, default=None
        Working directory of the kernel (the repository root in a build).
    plotly_renderer : str, default='plotly_mimetype+notebook'
        ``PLOTLY_RENDERER`` for the kernel.
    timeout : int, default=1800
        Seconds one cell may run.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    BookError
        A cell failed: one line with the chapter, the cell number in the source, the error and
        the path of the partial notebook.
    """
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    nb = read_notebook_source(source)
    params = {"profile": profile, **(parameters or {})}
    name = source.stem
    try:
        with _environ(PLOTLY_RENDERER=plotly_renderer, **{BUILD_ENV: "1"}):
            pm.execute_notebook(
                nb,
                str(output),
                parameters=params,
                kernel_name="python3",
                progress_bar=False,
                cwd=str(cwd) if cwd else None,
                execution_timeout=timeout,
            )
    except PapermillExecutionError as err:
        partial = nbformat.read(output, as_version=4) if output.is_file() else None
        number = _source_cell_number(partial, err.cell_index) if partial is not None else err.cell_index
        first = next((line for line in (err.source or "").splitlines() if line.strip()), "")
        evalue = " ".join(str(err.evalue).split())
        raise BookError(
            f"chapter {name} failed at cell {number} of {source} ({first.strip()[:60]!r}): "
            f"{err.ename}: {evalue[:300]}; partial notebook: {output}"
        ) from None
    except Exception as err:  # noqa: BLE001 - kernel start failures, bad parameters, ...
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise BookError(f"chapter {name} could not be executed ({reason}); source: {source}") from None
    executed = nbformat.read(output, as_version=4)
    nbformat.write(postprocess_notebook(executed, name), output)
    return output


_PLOTLY_BUNDLE = re.compile(r"\*\s*plotly\.js v\d")
_CDN_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>')


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def postprocess_notebook(nb: Any, name: str, *, badge: bool = True) -> Any:
    """Prepare an executed chapter for the static book (returns ``nb``, changed in place).

    - the papermill ``injected-parameters`` cell gets the ``remove-cell`` tag;
    - an "Open in Colab" badge cell goes under the first markdown cell (once);
    - the plotly.js bundle that the ``notebook`` renderer pastes into the first figure's output is
      removed, because the book loads one shared copy (``_static/plotly.min.js``) on every page;
    - the MathJax-from-CDN tag plotly adds to every figure is removed (no figure uses LaTeX, and
      the page works offline), and so is the figure's plotly JSON, which the HTML book cannot use
      (its title is kept in the output's metadata as ``emlib_figure_title``, for checks).
    """
    import nbformat

    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = _text(data.get("text/html", "")) if "text/html" in data else ""
            if html and len(html) > 100_000 and _PLOTLY_BUNDLE.search(html[:5000]):
                continue  # the inlined plotly.js; the book serves one copy from _static
            if html and "plotly-graph-div" in html:
                data["text/html"] = _CDN_MATHJAX.sub("", html)
                fig = data.pop("application/vnd.plotly.v1+json", None)  # the HTML is what the book shows
                title = ((fig or {}).get("layout") or {}).get("title") or {}
                out.setdefault("metadata", {})["emlib_figure_title"] = (
                    title.get("text", "") if isinstance(title, dict) else str(title)
                )
            kept.append(out)
        cell["outputs"] = kept
    if badge and not any("colab-badge" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        at = next((i + 1 for i, c in enumerate(nb.cells) if c.get("cell_type") == "markdown"), 0)
        badge_cell = nbformat.v4.new_markdown_cell(colab_badge_markdown(name), metadata={"tags": ["colab-badge"]})
        nb.cells.insert(at, badge_cell)
    return nb


def _write_static(book_root: Path) -> Path:
    """Write the one copy of plotly.js the book pages load (``book/chapters/_static/plotly.min.js``)."""
    from plotly.offline import get_plotlyjs

    static = book_root / STATIC_DIR
    static.mkdir(parents=True, exist_ok=True)
    target = static / "plotly.min.js"
    js = get_plotlyjs()
    if not target.is_file() or target.stat().st_size != len(js.encode()):
        target.write_text(js)
    return target


@dataclass
class BuildReport:
    """What :func:`build_book` did: where things are and how long each step took (seconds)."""

    book_root: Path
    html_dir: Path
    chapters: list[str]
    notebooks: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    check: CheckReport | None = None

    def summary(self) -> str:
        """One line per step."""
        lines = [f"{step}: {sec:.1f} s" for step, sec in self.timings.items()]
        lines.append(f"html: {self.html_dir / 'index.html'}")
        if self.check is not None:
            lines.append(self.check.summary())
        return "\n".join(lines)


def _stage(root: Path, out: Path) -> None:
    """Copy the book's own files (config, toc, front matter) into ``out`` for an out-of-tree build."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, out / name)
    chapters = (root / CHAPTER_DIR).resolve()
    for path in (root / "book").rglob("*"):
        if path.is_file() and chapters not in path.resolve().parents:
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _jupyter_book(book_root: Path, toc: Path | None, *, strict: bool) -> None:
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_root)]
    if toc is not None:
        cmd += ["--toc", str(toc)]
    if strict:
        cmd += ["-W", "--keep-going"]
    log = book_root / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, cwd=book_root, capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + "\n" + proc.stderr)
    log.write_text(text)
    if proc.returncode != 0:
        problems = [line.strip() for line in text.splitlines() if re.search(r"(WARNING|ERROR|Error|Exception)", line)]
        first = problems[0] if problems else (text.strip().splitlines() or ["no output"])[-1]
        raise BookError(
            f"jupyter-book build failed ({len(problems)} warnings/errors; warnings count as errors): "
            f"{first[:300]}; full log: {log}"
        )


def build_book(
    root: str | os.PathLike[str] | None = None,
    *,
    profile: str = "smoke",
    only: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    strict: bool = True,
    check: bool = False,
    chromium: str = CHROMIUM,
    progress: bool = True,
) -> BuildReport:
    """Execute the chapters and build the HTML book; optionally run the browser check.

    Parameters
    ----------
    root : path, default=None
        Repository root (found from the cwd when None).
    profile : str, default='smoke'
        Passed to every chapter as ``-p profile <profile>``.
    only : sequence of str, default=None
        Build only these chapters (names such as ``01_data``); the other chapter pages are
        left out of this build's table of contents.
    out : path, default=None
        Build in this folder instead of the repository (config, toc and front matter are copied
        there; executed notebooks go to ``out/book/chapters``, the HTML to ``out/_build/html``).
    parameters : dict, default=None
        Extra papermill parameters for every chapter (e.g. ``{"out_dir": "/tmp/runs"}``).
    strict : bool, default=True
        Sphinx warnings fail the build (``-W --keep-going``).
    check : bool, default=False
        Run :func:`check_book` after the build.
    chromium : str, default='/usr/bin/chromium'
        Browser for the check.
    progress : bool, default=True
        Print one line per step.

    Returns
    -------
    BuildReport
    """
    from emlib.config import get_profile

    get_profile(profile)
    root = find_root() if root is None else Path(root).resolve()
    chapters = list_chapters(root)
    if only:
        unknown = sorted(set(only) - set(chapters))
        if unknown:
            raise BookError(f"--only names {unknown} that are not chapters in _toc.yml; choose from {chapters}")
        chapters = [c for c in chapters if c in set(only)]
    book_root = Path(out).resolve() if out else root
    if out:
        _stage(root, book_root)
    say = print if progress else (lambda *a, **k: None)
    timings: dict[str, float] = {}
    notebooks = {}
    for name in chapters:
        t0 = time.perf_counter()
        say(f"executing {SOURCE_DIR}/{name}.py (profile {profile}) ...", flush=True)
        notebooks[name] = execute_chapter(
            root / SOURCE_DIR / f"{name}.py",
            book_root / CHAPTER_DIR / f"{name}.ipynb",
            profile=profile,
            parameters=parameters,
            cwd=root,
        )
        timings[f"execute {name}"] = time.perf_counter() - t0
    _write_static(book_root)
    toc = None
    if only:
        import yaml

        subset = _filter_toc(_read_toc(book_root / "_toc.yml"), {f"{CHAPTER_DIR}/{c}" for c in chapters})
        toc = book_root / "_build" / "_toc.subset.yml"
        toc.parent.mkdir(parents=True, exist_ok=True)
        toc.write_text(yaml.safe_dump(subset, sort_keys=False))
    t0 = time.perf_counter()
    say("jupyter-book build (execution off) ...", flush=True)
    _jupyter_book(book_root, toc, strict=strict)
    timings["jupyter-book build"] = time.perf_counter() - t0
    report = BuildReport(book_root, book_root / "_build" / "html", chapters, notebooks, timings)
    if check:
        t0 = time.perf_counter()
        say("browser check ...", flush=True)
        report.check = check_book(report.html_dir, toc=toc or book_root / "_toc.yml", root=book_root,
                                  chromium=chromium)
        timings["browser check"] = time.perf_counter() - t0
    return report


def export_notebooks(
    dest: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, *, gpu: bool = True
) -> list[Path]:
    """Write every chapter as an unexecuted ``.ipynb`` for Colab (``dest/book/chapters/<name>.ipynb``).

    The paths match the book pages, so the theme's Colab button and the chapter badges both work
    once CI pushes ``dest`` to the notebooks branch. ``gpu=True`` asks Colab for a GPU runtime.
    """
    import nbformat

    base = find_root() if root is None else Path(root)
    written = []
    for name in list_chapters(base):
        nb = read_notebook_source(base / SOURCE_DIR / f"{name}.py")
        if gpu:
            nb.metadata["accelerator"] = "GPU"
            nb.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
        target = Path(dest) / CHAPTER_DIR / f"{name}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written


# =============================================================================================
# Part 3 - the browser check
# =============================================================================================


@dataclass
class PageReport:
    """What the browser saw on one page."""

    docname: str
    url: str
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    figures: int = 0
    figures_rendered: int = 0
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.figures == self.figures_rendered


@dataclass
class CheckReport:
    """The browser check of a built book."""

    html_dir: Path
    pages: list[PageReport]
    screenshots_dir: Path

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pages)

    def failures(self) -> list[str]:
        """One line per problem: ``<page>: <what>``."""
        lines = []
        for p in self.pages:
            lines += [f"{p.docname}: {e}" for e in p.errors]
            if p.figures != p.figures_rendered:
                missing = p.figures - p.figures_rendered
                lines.append(f"{p.docname}: {missing} of {p.figures} plotly figures did not render")
        return lines

    def summary(self) -> str:
        figs = sum(p.figures for p in self.pages)
        rendered = sum(p.figures_rendered for p in self.pages)
        ext = sorted({u for p in self.pages for u in p.external})
        state = "ok" if self.ok else f"{len(self.failures())} problems"
        return (
            f"browser check: {len(self.pages)} pages, {rendered}/{figs} plotly figures rendered, "
            f"{len(ext)} external resources not fetched (offline check), screenshots in {self.screenshots_dir}: {state}"
        )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


_FIGURES_JS = """() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return [divs.length, divs.filter(d => d.querySelector('.main-svg')).length];
}"""
_BROKEN_IMAGES_JS = "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
_LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"


def _check_links(links: Sequence[str], base: str, html_dir: Path, cache: dict[Path, str]) -> list[str]:
    """Internal links whose file or ``#anchor`` does not exist in the built HTML."""
    broken = []
    for href in sorted(set(links)):
        if not href.startswith(base):
            continue
        parts = urlsplit(href)
        rel = unquote(parts.path)[1:]
        target = html_dir / rel
        if rel == "" or rel.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"broken link {href[len(base) - 1:]} (no file {target.relative_to(html_dir)})")
            continue
        frag = unquote(parts.fragment)
        if frag and target.suffix == ".html":
            text = cache.setdefault(target, target.read_text(errors="replace"))
            if f'id="{frag}"' not in text and f"id='{frag}'" not in text and f'name="{frag}"' not in text:
                broken.append(f"broken anchor {href[len(base) - 1:]}")
    return broken


def check_book(
    html_dir: str | os.PathLike[str] | None = None,
    *,
    toc: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    screenshots_dir: str | os.PathLike[str] | None = None,
    chromium: str = CHROMIUM,
    timeout_ms: int = 30_000,
) -> CheckReport:
    """Open every page of the table of contents in headless Chromium and report what is wrong.

    The built HTML is served on 127.0.0.1; requests to other hosts are blocked, so the check
    runs offline and lists them as external instead. A page fails on a JavaScript error (console
    error or uncaught exception), a local resource that fails to load, a broken internal link or
    anchor, a local image that did not load, or a plotly figure without its SVG. One screenshot
    per page goes to ``screenshots_dir`` (``<book root>/_build/screenshots``), plus one of the
    first figure of each page that has one (``<page>-figure.png``).

    Parameters
    ----------
    html_dir : path, default=None
        The built book (``<root>/_build/html``).
    toc : path, default=None
        Table of contents listing the pages (``<root>/_toc.yml``).
    root : path, default=None
        Book root (found from the cwd when None).
    screenshots_dir : path, default=None
    chromium : str, default='/usr/bin/chromium'
        Chromium executable (Debian's package; never ``playwright install``).
    timeout_ms : int, default=30000
        How long a page may take to load and render its figures.

    Returns
    -------
    CheckReport
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BookError("the browser check needs playwright: pip install -e '.[book]'") from None
    if not Path(chromium).is_file():
        raise BookError(f"no Chromium at {chromium}; install Debian's package: apt-get install -y chromium")
    base_root = find_root() if root is None and html_dir is None else Path(root or Path(html_dir).parents[1])
    html = Path(html_dir) if html_dir else base_root / "_build" / "html"
    if not (html / "index.html").is_file():
        raise BookError(f"no built book at {html} (index.html missing); run `python -m emlib.book build` first")
    shots = Path(screenshots_dir) if screenshots_dir else html.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    docs = toc_docnames(base_root, toc)
    pages: list[PageReport] = []
    cache: dict[Path, str] = {}
    with _serve(html) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=[f for f in CHROMIUM_FLAGS if f != "--headless"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def route(r: Any) -> None:
            if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                r.abort()

        context.route("**/*", route)
        for doc in ["index", *docs]:
            rep = PageReport(doc, base + f"{doc}.html")
            if not (html / f"{doc}.html").is_file():
                rep.errors.append(f"page missing: {doc}.html was not built")
                pages.append(rep)
                continue
            page = context.new_page()

            def on_console(msg: Any, rep: PageReport = rep) -> None:
                if msg.type != "error":
                    return
                where = (msg.location or {}).get("url", "")
                if msg.text.startswith("Failed to load resource") and where and not where.startswith(base):
                    rep.external.append(where)
                elif msg.text.startswith("Failed to load resource") and not where:
                    rep.external.append(msg.text)
                else:
                    rep.errors.append(f"console error: {msg.text[:300]}")

            def on_failed(req: Any, rep: PageReport = rep) -> None:
                if req.url.startswith(base):
                    rep.errors.append(f"local resource failed: {req.url[len(base) - 1:]} ({req.failure})")
                else:
                    rep.external.append(req.url)

            def on_response(resp: Any, rep: PageReport = rep) -> None:
                if resp.url.startswith(base) and resp.status >= 400:
                    rep.errors.append(f"HTTP {resp.status} for {resp.url[len(base) - 1:]}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc, rep=rep: rep.errors.append(f"uncaught exception: {str(exc)[:300]}"))
            page.on("requestfailed", on_failed)
            page.on("response", on_response)
            try:
                page.goto(rep.url, wait_until="load", timeout=timeout_ms)
                with contextlib.suppress(PlaywrightError):
                    page.wait_for_function(
                        "() => [...document.querySelectorAll('.plotly-graph-div')]"
                        ".every(d => d.querySelector('.main-svg'))",
                        timeout=timeout_ms,
                    )
                rep.figures, rep.figures_rendered = page.evaluate(_FIGURES_JS)
                for src in page.evaluate(_BROKEN_IMAGES_JS):
                    if src.startswith(base) or src.startswith("data:"):
                        rep.errors.append(f"image did not load: {src[:120]}")
                    else:
                        rep.external.append(src)
                rep.errors += _check_links(page.evaluate(_LINKS_JS), base, html, cache)
                rep.screenshot = shots / f"{Path(doc).name}.png"
                page.screenshot(path=str(rep.screenshot), full_page=True)
                if rep.figures:
                    first = page.locator(".plotly-graph-div").first
                    first.scroll_into_view_if_needed()
                    first.screenshot(path=str(shots / f"{Path(doc).name}-figure.png"))
            except PlaywrightError as err:
                rep.errors.append(f"browser error: {str(err).splitlines()[0][:300]}")
            finally:
                page.close()
            rep.external = sorted(set(rep.external))
            pages.append(rep)
        context.close()
        browser.close()
    return CheckReport(html, pages, shots)


# =============================================================================================
# Part 4 - Sphinx hook (``emlib.book`` is listed in ``sphinx.extra_extensions``)
# =============================================================================================


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    unique = []
    for js in context.get("script_files", []):
        name = getattr(js, "filename", js) or ""  # None and "" both mean an inline script
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: drop scripts registered twice on a page.

    With jupyter-book 1.0.4 and Sphinx 7.4, sphinx-thebe's inline configuration script ends up in
    every page twice, and the second copy throws ``Identifier 'THEBE_JS_URL' has already been
    declared`` in the browser console (even in ``jupyter-book create``'s template book).
    """
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# =============================================================================================
# Part 5 - command line
# =============================================================================================


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"-p {item!r} is not KEY=VALUE; e.g. -p backbone=dinov2_vitb14")
        params[key] = yaml.safe_load(value)
    return params


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emlib.book",
        description="Build the study-companion book, check it in a browser, export notebooks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute every chapter with papermill, then jupyter-book build")
    b.add_argument("--profile", default="smoke", help="smoke (CPU, random weights), quick or paper (default: smoke)")
    b.add_argument("--only", nargs="+", metavar="CHAPTER", help="build only these chapters, e.g. --only 01_data")
    b.add_argument("--out", default=None, help="build in this folder instead of the repository")
    b.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="extra chapter parameter")
    b.add_argument("--check", action="store_true", help="run the browser check after the build")
    b.add_argument("--chromium", default=CHROMIUM, help=f"Chromium for --check (default: {CHROMIUM})")
    b.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    b.add_argument("--root", default=None, help="repository root (default: found from the current folder)")
    c = sub.add_parser("check", help="open every built page in headless Chromium")
    c.add_argument("--root", default=None, help="book root (default: found from the current folder)")
    c.add_argument("--html", default=None, help="built HTML folder (default: <root>/_build/html)")
    c.add_argument("--chromium", default=CHROMIUM, help=f"Chromium executable (default: {CHROMIUM})")
    e = sub.add_parser("export", help="write unexecuted .ipynb chapters for Colab (the notebooks branch)")
    e.add_argument("dest", help="folder to write book/chapters/<name>.ipynb into")
    e.add_argument("--root", default=None)
    return parser


def _print_check(report: CheckReport) -> int:
    for line in report.failures():
        print(f"  {line}")
    print(report.summary())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emlib.book build|check|export``; returns the exit status (2 for user errors)."""
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "build":
            report = build_book(
                args.root,
                profile=args.profile,
                only=args.only,
                out=args.out,
                parameters=_parse_params(args.param),
                strict=not args.no_strict,
                check=args.check,
                chromium=args.chromium,
            )
            print(report.summary())
            if report.check is not None and not report.check.ok:
                for line in report.check.failures():
                    print(f"  {line}")
                return 1
            return 0
        if args.command == "check":
            root = Path(args.root) if args.root else (None if args.html else find_root())
            return _print_check(check_book(args.html, root=root, chromium=args.chromium))
        if args.command == "export":
            for path in export_notebooks(args.dest, args.root):
                print(path)
            return 0
    except EmlibError as err:
        print(f"emlib.book: error: {err}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
