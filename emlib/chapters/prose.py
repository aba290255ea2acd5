"""Sentences of a chapter's prose that depend on the profile or the run, composed from the config or the results.

A page glues them (``glue_facts(head=head_sentence(cfg, ...))``, ``{glue:text}`head``` in the Markdown),
so what the text says about the head, the feature cache, the predictions or the FD interval is what
this page's profile and runs did:

* :func:`head_sentence` -- which segmentation head the run's config builds.
* :func:`backbone_passes` and :func:`cache_sentence` -- how often a frozen run's first epochs and
  the later ones run the backbone (the feature store only saves the items that come back, in the run
  or from an earlier run of the backbone).
* :func:`prediction_sentence` -- what the predictions look like (one class everywhere, or not).
* :func:`fd_interval_sentence` -- how the Fréchet distance's interval of a latent report was made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from emlib.config import PROFILES, RunConfig
from emlib.diagnostics.frechet import FD_INTERVAL_NAMES, SUBSAMPLE_MIN_ROWS
from emlib.train import epoch_order

__all__ = ["head_sentence", "backbone_passes", "cache_sentence", "prediction_sentence", "fd_interval_sentence"]

_DECONV = ("a 1 x 1 convolution to {width} channels (head_channels), four up-blocks that each double the grid "
           "(transposed convolution, then a 3 x 3 convolution), and a 1 x 1 classifier with two outputs "
           "(background, mitochondria), resized to the input size")


def _profiles_with_head(head: str) -> str:
    names = [name for name, prof in PROFILES.items() if prof.base.head == head]
    return " and ".join(names) if names else "no built-in"


def head_sentence(cfg: RunConfig, *, embed_dim: int) -> str:
    """What the segmentation head of ``cfg`` is, in one or two sentences.

    Parameters
    ----------
    cfg : RunConfig
        Its ``head`` (``"deconv"`` or ``"linear"``) and ``head_channels``.
    embed_dim : int
        Length of the backbone's tokens (the head's input channels).

    Examples
    --------
    >>> head_sentence(RunConfig(head="linear"), embed_dim=384).startswith("This page's head is the linear head")
    True
    """
    if cfg.head == "deconv":
        return (f"This page's head is SegHeadDeconv (the config's head is deconv: the authors' head): on the "
                f"{embed_dim}-number tokens, " + _DECONV.format(width=cfg.head_channels) + ".")
    return (f"This page's head is the linear head (the config's head is linear: LinearHead): one 1 x 1 convolution from the "
            f"{embed_dim}-number tokens to two outputs (background, mitochondria), resized bilinearly to the input size. "
            f"The authors' head, SegHeadDeconv (head deconv, the {_profiles_with_head('deconv')} profiles), "
            "adds " + _DECONV.format(width="head_channels").replace(" (head_channels)", "") + ".")


def backbone_passes(cfg: RunConfig, n_items: int) -> list[int]:
    """How many items the backbone computes in each epoch of a frozen run whose feature store starts empty.

    The store keeps each item's tokens the first time it is drawn (:func:`emlib.train.epoch_order`
    says which items an epoch draws), so an epoch runs the backbone only on the items no earlier
    epoch drew; a run after others of the same backbone on the same tiles computes fewer (``fit``
    counts them: the ``backbone_passes`` column of its history). Runs without a store (other
    regimes, ``cache="none"``, augmentation) compute every item.

    Examples
    --------
    >>> backbone_passes(RunConfig(epochs=3, samples_per_epoch=None, augment=False), 5)
    [5, 0, 0]
    """
    cached = cfg.regime == "frozen" and cfg.cache != "none" and not cfg.augment
    seen: set[int] = set()
    passes = []
    for epoch in range(cfg.epochs):
        order = {int(i) for i in epoch_order(cfg, n_items, epoch)}
        passes.append(len(order - seen) if cached else len(order))
        seen |= order
    return passes


def cache_sentence(cfg: RunConfig, n_items: int) -> str:
    """What the feature store does for this run, per epoch, in words (from :func:`backbone_passes`).

    Examples
    --------
    >>> cache_sentence(RunConfig(epochs=3, samples_per_epoch=None, augment=False), 5).split(",")[0]
    'Each epoch uses all 5 training tiles'
    """
    kind = "tiles" if cfg.crop else "slices"
    passes = backbone_passes(cfg, n_items)
    per_epoch = len(epoch_order(cfg, n_items, 0))
    if cfg.regime != "frozen" or cfg.cache == "none" or cfg.augment:
        return f"This run has no feature store, so the backbone runs on all {per_epoch} training {kind} of every epoch."
    earlier = f"and not at all on the {kind} an earlier run of this backbone stored (the backbone passes column counts them)"
    if per_epoch == n_items:
        return (f"Each epoch uses all {n_items} training {kind}, so the backbone runs in the first epoch only, {earlier}: "
                "the later epochs read stored tokens, and the seconds column shows the gap.")
    later = passes[1:]
    share = sum(later) / max(per_epoch * len(later), 1)
    text = (f"Each epoch draws {per_epoch} of the {n_items} training {kind}, so the backbone runs at most on every "
            f"{kind[:-1]} no earlier epoch drew: {', '.join(map(str, passes))} {kind} in the successive epochs with an "
            f"empty store, {earlier}.")
    if share >= 0.5:
        return text + (" Most draws are new, so within one run the store saves little and the later epochs are not much "
                       "faster than the first; it pays off when the same items come back: whole slices, or the later "
                       f"frozen runs of this backbone on these {kind}.")
    return text + " Most later draws come back from the store, so the later epochs should be faster than the first."


def prediction_sentence(predicted: Mapping[str, Any], *, pretrained: bool) -> str:
    """What the predictions of :func:`emlib.evaluate_both` (``keep_predictions=True``) look like.

    Parameters
    ----------
    predicted : mapping of test set to EvalResult
        Each with ``predictions`` and ``masks`` (boolean stacks).
    pretrained : bool
        Whether the backbone had pretrained weights.

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> m = np.zeros((1, 4, 4), bool); m[0, :2] = True
    >>> prediction_sentence({"vnc": R(predictions=np.zeros_like(m), masks=m)}, pretrained=False)[:40]
    'On vnc the model predicts one class ever'
    """
    parts, constant = [], 0
    for test_set, res in predicted.items():
        pred, mask = np.asarray(res.predictions, bool), np.asarray(res.masks, bool)
        share, truth = float(pred.mean()), float(mask.mean())
        if share in (0.0, 1.0):
            constant += 1
            which = "background" if share == 0.0 else "mitochondria"
            parts.append(f"On {test_set} the model predicts one class everywhere ({which})")
        else:
            parts.append(f"on {test_set} it marks {share:.0%} of the pixels as mitochondria, where the masks have {truth:.0%}")
    if constant == 0:
        parts[0] = "The predictions are not constant: " + parts[0]
    text = "; ".join(parts)
    text = text[0].upper() + text[1:] + "."
    if pretrained:
        return text + " The overlays show where this frozen model segments well and where it fails."
    return text + (" With random weights the backbone's tokens carry no learned features, so whatever structure the "
                   "predicted masks show is what the head could fit to an untrained backbone: it says nothing about foundation models.")


def fd_interval_sentence(report: pd.DataFrame, *, n_boot: int) -> str:
    """How the Fréchet distance intervals of a latent report were computed, in words.

    Parameters
    ----------
    report : DataFrame
        The table of :func:`emlib.latent_report` (its ``fd_interval`` column).
    n_boot : int
        The replicates it was given.

    Examples
    --------
    >>> fd_interval_sentence(pd.DataFrame({"fd_interval": ["95% percentile bootstrap"]}), n_boot=10)[:44]
    'The interval is a percentile bootstrap: each'
    """
    described = [str(v) for v in report["fd_interval"].dropna().unique()]
    methods = [m for m, name in FD_INTERVAL_NAMES.items() if any(name in d for d in described)]
    texts = {
        "subsample": (f"half-sample subsampling, not a bootstrap: each of {n_boot} replicates recomputes the distance on "
                      "a random half of each dataset's slices, drawn without replacement; the spread of those values, "
                      "scaled as a delete-half jackknife, estimates the standard error of the full distance, and the "
                      "interval is the distance plus or minus a normal quantile times that error. It covers the "
                      "distance at these numbers of slices, not the distance of infinitely many"),
        "percentile": (f"a percentile bootstrap: each of {n_boot} replicates resamples each dataset's slices with "
                       "replacement, and the interval spans the middle quantiles of the replicates' distances"),
    }
    if not methods:
        return (f"No interval was computed: a set with fewer than {SUBSAMPLE_MIN_ROWS} slices has no halves "
                "with a covariance.")
    return "The interval is " + "; elsewhere ".join(texts[m] for m in methods) + "."
