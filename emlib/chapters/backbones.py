"""What a backbone sees, for the chapters: its input, the backbones compared, token pictures.

The functions here take a chapter's settings (:class:`emlib.chapters.settings.ChapterSettings`)
and draw their per-profile knobs (crop or resize of token pictures, the backbones compared side
by side) from the profile.

:func:`load_backbones` never stops a chapter over weights: a backbone whose pretrained weights
cannot be loaded (no file, no network, DINOv3's gated licence) is left out, and the
:class:`LoadedBackbones` it returns shows a :class:`MissingWeightsNote` on the page, an admonition
naming each missing backbone, why it is missing and how to add it. With every backbone missing
the page says so in plain words instead of failing on an empty table.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from emlib.data import normalize, protocol_size, resize_slice
from emlib.diagnostics import patch_pca_rgb
from emlib.errors import ConfigError, WeightsError
from emlib.models import create_backbone, extract_token_maps, get_backbone_spec
from emlib.viz.display import show_table

__all__ = [
    "crop_around_foreground",
    "backbone_view",
    "family_backbones",
    "MissingWeightsNote",
    "LoadedBackbones",
    "load_backbones",
    "token_pca",
]

#: Columns of :meth:`LoadedBackbones.table` (after the ``backbone`` index).
BACKBONE_COLUMNS = ("family", "patch", "width C", "blocks", "prefix tokens", "parameters (M)", "weights")


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


def backbone_view(image: Any, mask: Any, patch_size: int, settings: Any) -> tuple[np.ndarray, np.ndarray]:
    """The slice a backbone sees in token pictures: a crop or the protocol resize (per the profile).

    With ``token_crop`` (smoke): the window of that side with the most mitochondria, its side floored
    to the patch size. Otherwise (quick, paper): the whole slice resized with the authors' rule (long
    side ``token_long_edge``, sides floored to the patch size, :func:`emlib.data.protocol_size`).
    """
    img = np.asarray(image)
    if settings.token_crop:
        side = (settings.token_crop // patch_size) * patch_size
        return crop_around_foreground(img, mask, side)
    size = protocol_size(*img.shape, long_edge=int(settings.token_long_edge or 1022), multiple=patch_size)
    m = np.zeros(img.shape, bool) if mask is None else np.asarray(mask)
    return resize_slice(img, size), resize_slice(m, size, is_mask=True)


def family_backbones(settings: Any) -> list[str]:
    """One backbone per family (DINOv2, DINOv3, OpenCLIP) for side-by-side pictures.

    The chapter's backbone stands for its own family; the others are the profile's
    ``family_backbones`` (the small ones for smoke and quick, the profile's large ones for paper).
    The list is in the order of the profile's families.
    """
    defaults = settings.profile.family_backbones
    chosen = {get_backbone_spec(settings.backbone).family: settings.backbone}
    for name in defaults:
        chosen.setdefault(get_backbone_spec(name).family, name)
    return [chosen[get_backbone_spec(name).family] for name in defaults]


@dataclass(frozen=True)
class MissingWeightsNote:
    """The note a page shows for backbones left out because their weights could not be loaded.

    Displayed in a notebook (and in the built book) it is an admonition: a warning box naming each
    missing backbone, why it is missing, and how to add it from where the reader stands (a shell
    command, or the chapter's ``weights_dir`` parameter).

    Parameters
    ----------
    missing : dict of str to str
        Backbone name -> why its weights could not be loaded (the WeightsError's ``why``: its sentence
        without the fix, which the note gives in a reader's words).
    loaded : tuple of str, default=()
        The backbones the page does show.

    Examples
    --------
    >>> note = MissingWeightsNote({"dinov3_vits16": "gated on the hub"}, loaded=("dinov2_vits14",))
    >>> print(note.text().splitlines()[0])
    Left out for missing weights: dinov3_vits16 (this page shows dinov2_vits14 only).
    >>> "emlib weights fetch dinov3_vits16" in note.text(), 'class="admonition warning' in note._repr_html_()
    (True, True)
    """

    missing: Mapping[str, str]
    loaded: tuple[str, ...] = ()

    def title(self) -> str:
        """One line: what is left out, and what the page shows instead."""
        names = ", ".join(self.missing)
        shows = (f"this page shows {', '.join(self.loaded)} only" if self.loaded
                 else "no backbone could be loaded, so this page shows no backbone's tokens")
        return f"Left out for missing weights: {names} ({shows})."

    @staticmethod
    def fix(name: str) -> str:
        """How to add the weights of ``name``, in the words of a notebook reader and of a book build."""
        gated = (" (first accept Meta's licence on its Hugging Face page and log in)"
                 if get_backbone_spec(name).gated else "")
        return (f"to add it, run `emlib weights fetch {name}` where there is internet{gated}, or set the chapter "
                "parameter `weights_dir` (book build: `-p weights_dir=FOLDER`) to a folder holding its file "
                "(`emlib weights list` names it)")

    def text(self) -> str:
        """The note as plain text: the title, then one line per missing backbone."""
        lines = [self.title()]
        lines += [f"- {name}: {why.rstrip('.')}; {self.fix(name)}." for name, why in self.missing.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        items = "".join(
            f"<li><strong>{html.escape(name)}</strong>: {html.escape(why.rstrip('.'))}; "
            f"{_code_html(self.fix(name))}.</li>"
            for name, why in self.missing.items()
        )
        return (f'<div class="admonition warning emlib-missing-weights">'
                f'<p class="admonition-title">{html.escape(self.title())}</p><ul>{items}</ul></div>')


def _code_html(text: str) -> str:
    """Escape ``text`` and turn its `backticked` parts into <code> elements."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


@dataclass
class LoadedBackbones(Mapping[str, Any]):
    """The backbones :func:`load_backbones` could build (a read-only dict) and those it left out.

    Displayed, it shows the :class:`MissingWeightsNote` (when a backbone is missing) above a table
    of the loaded backbones (:meth:`table`), or, with none loaded, a sentence saying so.

    Attributes
    ----------
    backbones : dict of str to emlib.models.Backbone
    missing : dict of str to str
        Backbone name -> why its weights could not be loaded.
    weights_label : str or None
        The page's weights label (``ChapterSettings.weights_label``): "random" in it puts the badge
        on the table.
    """

    backbones: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    weights_label: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.backbones[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.backbones)

    def __len__(self) -> int:
        return len(self.backbones)

    def note(self) -> MissingWeightsNote | None:
        """The note naming the backbones left out (None when none is)."""
        return MissingWeightsNote(dict(self.missing), loaded=tuple(self.backbones)) if self.missing else None

    def table(self) -> pd.DataFrame:
        """One row per loaded backbone, indexed by ``backbone`` (no rows when none loaded).

        Columns: ``family, patch, width C, blocks, prefix tokens, parameters (M), weights``.
        """
        rows = [{"backbone": name, "family": bb.spec.family, "patch": bb.patch_size, "width C": bb.embed_dim,
                 "blocks": bb.spec.depth, "prefix tokens": bb.num_prefix_tokens,
                 "parameters (M)": round(bb.param_count() / 1e6, 1), "weights": bb.weights_label}
                for name, bb in self.backbones.items()]
        return pd.DataFrame(rows, columns=["backbone", *BACKBONE_COLUMNS]).set_index("backbone")

    def __repr__(self) -> str:
        note = self.note()
        body = self.table().to_string() if self.backbones else "No backbone could be loaded."
        return f"{note.text()}\n\n{body}" if note else body

    def _repr_html_(self) -> str:
        note = self.note()
        if self.backbones:
            body = show_table(self.table(), index=True, caption="The backbones on this page", full=False,
                              download=False, weights_label=self.weights_label or "")._repr_html_()
        else:
            body = "<p>No backbone could be loaded, so there is nothing to show here; see the note above.</p>"
        return (note._repr_html_() if note else "") + body


def load_backbones(names: Sequence[str], settings: Any) -> LoadedBackbones:
    """Build each backbone on ``settings.device``; random weights on the smoke profile.

    Each random backbone is seeded with ``settings.seed``, so pictures repeat. When pretrained
    weights cannot be loaded (no file, no network, gated DINOv3), that backbone is left out and the
    result records why; displaying the result shows a note naming it (:class:`MissingWeightsNote`).

    Parameters
    ----------
    names : sequence of str
        Registered backbone names (e.g. :func:`family_backbones`).
    settings : ChapterSettings

    Returns
    -------
    LoadedBackbones
        A read-only dict of the loaded backbones (in eval mode), with ``.missing`` and ``.note()``.
    """
    out = LoadedBackbones(weights_label=getattr(settings, "weights_label", None))
    for name in names:
        torch.manual_seed(settings.seed)
        try:
            out.backbones[name] = create_backbone(name, pretrained=settings.pretrained, device=settings.device).eval()
        except WeightsError as err:
            out.missing[name] = err.why
    return out


def token_pca(backbone: Any, views: Mapping[str, np.ndarray], settings: Any) -> dict[str, np.ndarray]:
    """Patch tokens of each view through ``backbone``, as one joint PCA-to-RGB picture per view.

    The PCA is fitted on the tokens of all views together, so a colour means the same direction
    of feature space in every picture (:func:`emlib.diagnostics.patch_pca_rgb`).

    Returns
    -------
    dict of str to ndarray of shape (h, w, 3)
    """

    def prep(batch: np.ndarray) -> Any:
        return normalize(batch, backbone.mean, backbone.std)

    tokens = {
        name: extract_token_maps(backbone, view[None], normalise=prep, device=settings.device, progress=False)[0]
        for name, view in views.items()
    }
    return patch_pca_rgb(tokens, seed=settings.seed)
