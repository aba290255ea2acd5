"""What the input- and feature-level remedies do to the two datasets, measured before any training.

Chapter 8 (``notebooks/08_beyond_the_paper.py``) shows how far each remedy brings VNC towards
Lucchi++ before it trains a single run: :func:`input_remedy_effects` on the grey values (mean,
standard deviation and CDF distance after each input alignment of :mod:`emlib.data.alignment`),
:func:`feature_remedy_effects` on the backbone's patch features (the CORAL loss of
:func:`emlib.losses.coral_loss` before and after the per-dataset standardisation of
:class:`emlib.models.DomainFeatureNorm`). Both only measure; the remedies themselves live in those
modules, and the runs that train with them in :mod:`emlib.grid.remedies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from emlib.data import get_source, normalize
from emlib.data.alignment import align_volume, clahe_available, grey_cdf, intensity_reference
from emlib.errors import ConfigError, ShapeError
from emlib.latents import load_backbone_for_latents
from emlib.losses import coral_loss
from emlib.models import DOMAINS, DomainFeatureNorm, domain_index

__all__ = ["INPUT_METHODS", "input_remedy_effects", "feature_remedy_effects"]

#: The input-level remedies that keep the grey values comparable, in the order the chapter shows them
#: (``clahe`` follows when scikit-image is installed).
INPUT_METHODS = ("standardise", "histmatch", "resample")


def input_remedy_effects(
    reference: Any, volume: Any, *, methods: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Grey-value statistics of ``volume`` before and after each input-level remedy, against ``reference``.

    Parameters
    ----------
    reference : emlib.data.Volume
        The reference stack (the Lucchi++ training slices in the book); its statistics are what
        ``standardise`` and ``histmatch`` map to, its pixel size what ``resample`` brings to.
    volume : emlib.data.Volume
        The stack to align (VNC's training slices).
    methods : sequence of str, default=None
        Methods of :func:`emlib.data.alignment.align_volume`; None: :data:`INPUT_METHODS`, plus
        ``clahe`` when scikit-image is installed.

    Returns
    -------
    table : pandas.DataFrame
        One row for the reference, one for ``volume`` as is and one per method: ``volume``,
        ``shape``, ``mean``, ``std`` and ``max CDF distance to <reference>`` (the largest gap between
        the two grey-value CDFs; 0 for the reference).
    aligned : dict of str to ndarray
        ``"<dataset> as is"`` and ``"<dataset> <method>"`` → the aligned uint8 stack.

    Examples
    --------
    >>> from emlib.data import Volume
    >>> rng = np.random.default_rng(0)
    >>> a = Volume("lucchi_pp", "train", rng.integers(90, 160, (2, 32, 32), dtype=np.uint8), None, ("0", "1"),
    ...            (5.0, 5.0, 5.0))
    >>> b = Volume("vnc", "train", rng.integers(0, 255, (2, 32, 32), dtype=np.uint8), None, ("0", "1"),
    ...            (47.5, 4.6, 4.6))
    >>> table, aligned = input_remedy_effects(a, b, methods=["histmatch"])
    >>> table["volume"].tolist(), bool(table.iloc[2, -1] < table.iloc[1, -1])
    (['Lucchi++ (reference)', 'VNC as is', 'VNC histmatch'], True)
    """
    methods = list(INPUT_METHODS) + (["clahe"] if clahe_available() else []) if methods is None else list(methods)
    ref_name, name = get_source(reference.dataset).title, get_source(volume.dataset).title
    ref = intensity_reference(reference.images, dataset=reference.dataset, pixel_size_nm=reference.voxel_size_nm[-1])
    aligned = {f"{name} as is": np.asarray(volume.images)}
    for method in methods:
        aligned[f"{name} {method}"] = align_volume(volume.images, volume.dataset, method, ref)[0]
    distance = f"max CDF distance to {ref_name}"
    rows = [{"volume": f"{ref_name} (reference)", "shape": tuple(reference.images.shape), "mean": ref.mean,
             "std": ref.std, distance: 0.0}]
    rows += [{"volume": label, "shape": tuple(images.shape), "mean": float(images.mean()), "std": float(images.std()),
              distance: float(np.abs(grey_cdf(images) - ref.cdf).max())} for label, images in aligned.items()]
    return pd.DataFrame(rows), aligned


def feature_remedy_effects(
    settings: Any, images: Mapping[str, np.ndarray], *, crop: int = 224, n_slices: int = 2
) -> tuple[pd.DataFrame, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The CORAL loss between two datasets' patch features, as the backbone gives them and standardised per dataset.

    A ``crop`` x ``crop`` corner (floored to the patch size) of the first ``n_slices`` slices of
    each dataset goes through the chapter's backbone (frozen; with random weights it is seeded with
    ``settings.seed``); :class:`emlib.models.DomainFeatureNorm` in training mode then standardises
    each dataset's features with that dataset's own statistics, as the ``feature_norm`` remedy
    does, and :func:`emlib.losses.coral_loss` measures the gap between the two datasets'
    covariances before and after.

    Parameters
    ----------
    settings : emlib.chapters.settings.ChapterSettings
        Backbone, weights, device, seed and the weights label of the page.
    images : dict of str to ndarray of shape (Z, H, W), dtype uint8
        Exactly two datasets of :data:`emlib.models.DOMAINS` (``lucchi_pp``, ``vnc``); their slices
        must be at least ``crop`` pixels on each side.
    crop : int, default=224
    n_slices : int, default=2

    Returns
    -------
    table : pandas.DataFrame
        Two rows, ``features`` (``backbone output``, ``after per-dataset standardisation``),
        ``coral_loss`` and ``weights_label``.
    features : dict of str to Tensor of shape (n_slices, embed_dim, h, w)
        The backbone's patch features per dataset (on the CPU).
    standardised : dict of str to Tensor
        The same after per-dataset standardisation.
    """
    if len(images) != 2 or not set(images) <= set(DOMAINS):
        raise ConfigError(f"images has the datasets {sorted(images)}; pass exactly two of {list(DOMAINS)}")
    net = load_backbone_for_latents(settings.backbone, pretrained=settings.pretrained, seed=settings.seed)[0]
    net = net.to(settings.device)
    side = crop // net.patch_size * net.patch_size
    small = {name: stack.shape[1:] for name, stack in images.items() if min(stack.shape[1:]) < side}
    if side < net.patch_size or small:
        raise ShapeError(f"slices of {small} are smaller than the {side}-pixel crop; pass a smaller crop "
                         f"(at least the patch size {net.patch_size})")
    with torch.no_grad():
        features = {name: net(normalize(np.stack([im[:side, :side] for im in stack[:n_slices]]), net.mean, net.std)
                              .to(settings.device)).float().cpu() for name, stack in images.items()}
        norm = DomainFeatureNorm(len(DOMAINS), net.embed_dim).train()
        standardised = {name: norm(f, domain_index(name)) for name, f in features.items()}
    a, b = images
    table = pd.DataFrame({
        "features": ["backbone output", "after per-dataset standardisation"],
        "coral_loss": [coral_loss(features[a], features[b]).item(), coral_loss(standardised[a], standardised[b]).item()],
        "weights_label": settings.weights_label,
    })
    return table, features, standardised
