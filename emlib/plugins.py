"""Plug-in points of :func:`emlib.train.fit` and :func:`emlib.evaluation.evaluate`, and the remedies that fill them.

The paper's training loop knows nothing about the remedies of "beyond the paper"; it calls the
hooks of the plug-ins a :class:`~emlib.config.RunConfig` names, at fixed points:

=====================  ==================================================  ==========================
hook                   called                                              used by
=====================  ==================================================  ==========================
``transform_volume``   on every (Z, H, W) volume read for training or test  :class:`InputAlignment`
``cache_parts``        when the frozen-feature cache key is made            :class:`InputAlignment`
``build_model``        when the model is put together (first non-None wins) :class:`DomainAware`
``forward_kwargs``     extra arguments of the head (training) / model (test) :class:`DomainAware`
``attach``/``detach``  around training                                      :class:`Coral`, :class:`ForegroundReweighting`
``loss``               replaces the segmentation loss (first non-None wins) :class:`ForegroundReweighting`
``extra_loss``         added to the loss                                    :class:`Coral`
=====================  ==================================================  ==========================

:func:`plugins_for` turns a config into its plug-ins, in the order of :data:`PLUGINS`; a config
at its defaults (the paper's runs) has none, and the loop then is exactly the paper's. The loop
calls each hook of all its plug-ins at once: :func:`transform_volume`, :func:`cache_parts`,
:func:`forward_kwargs`, :func:`plugin_loss`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from emlib.config import RunConfig
from emlib.data import load_volume
from emlib.data.alignment import align_run_volume
from emlib.losses import domain_weighted_loss, foreground_weights, segmentation_loss
from emlib.models.domain import DOMAINS, CoralProbe, DomainAwareHead, DomainSegmentationModel

__all__ = [
    "Plugin",
    "InputAlignment",
    "DomainAware",
    "ForegroundReweighting",
    "Coral",
    "PLUGINS",
    "plugins_for",
    "transform_volume",
    "cache_parts",
    "forward_kwargs",
    "plugin_loss",
    "training_foreground_fractions",
]


class Plugin:
    """A remedy at the plug-in points of training and evaluation; every hook does nothing by default."""

    def transform_volume(
        self, dataset: str, images: np.ndarray, masks: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The (Z, H, W) uint8 images of ``dataset`` (and masks) as the model should see them."""
        return images, masks

    def cache_parts(self) -> dict[str, Any]:
        """What cached frozen features additionally depend on."""
        return {}

    def build_model(self, backbone: nn.Module, make_head: Callable[[], nn.Module]) -> nn.Module | None:
        """A model around ``backbone`` (None: a plain :class:`~emlib.models.SegmentationModel`)."""
        return None

    def forward_kwargs(self, domain: int | torch.Tensor) -> dict[str, Any]:
        """Extra keyword arguments of the head in training and of the model at test time."""
        return {}

    def attach(self, model: nn.Module) -> None:
        """Called once before the first epoch."""

    def detach(self) -> None:
        """Called once after the last epoch."""

    def loss(
        self, logits: torch.Tensor, masks: torch.Tensor, domains: torch.Tensor, kind: str, valid: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """A replacement for the segmentation loss (None: keep it); ``valid`` marks the unpadded pixels."""
        return None

    def extra_loss(self, domains: torch.Tensor) -> torch.Tensor | None:
        """A term added to the loss (None: nothing)."""
        return None


class InputAlignment(Plugin):
    """``input_alignment``: the pixels of every training and test volume (:mod:`emlib.data.alignment`)."""

    def __init__(self, cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> None:
        self.cfg, self.root = cfg, root

    def transform_volume(self, dataset, images, masks):
        return align_run_volume(self.cfg, dataset, images, masks, self.root)

    def cache_parts(self) -> dict[str, Any]:
        return {"input_alignment": self.cfg.input_alignment, "reference": self.cfg.alignment_reference}


class DomainAware(Plugin):
    """``feature_norm`` / ``film`` / ``heads_per_domain``: a :class:`~emlib.models.domain.DomainAwareHead`."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    def build_model(self, backbone, make_head):
        n_domains = len(DOMAINS)
        heads = [make_head() for _ in range(n_domains if self.cfg.heads_per_domain else 1)]
        head = DomainAwareHead(
            heads, num_domains=n_domains, channels=backbone.embed_dim, feature_norm=self.cfg.feature_norm, film=self.cfg.film
        )
        return DomainSegmentationModel(backbone, head)

    def forward_kwargs(self, domain):
        return {"domain": domain}


def training_foreground_fractions(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> list[float]:
    """Foreground fraction of each domain's training slices of a run (order of :data:`~emlib.models.domain.DOMAINS`)."""
    return [load_volume(name, "train", root=root, slices=cfg.train_slices, pairing=cfg.pairing).foreground_fraction for name in DOMAINS]


class ForegroundReweighting(Plugin):
    """``fg_reweight``: each dataset's loss weighted by the inverse of its foreground fraction."""

    def __init__(self, cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> None:
        self.cfg, self.root = cfg, root
        self.weights: np.ndarray | None = None

    def attach(self, model):
        self.weights = foreground_weights(training_foreground_fractions(self.cfg, self.root))

    def loss(self, logits, masks, domains, kind, valid=None):
        return domain_weighted_loss(logits, masks, domains, self.weights, kind, valid=valid)  # type: ignore[arg-type]


class Coral(Plugin):
    """``coral_weight``: CORAL between the two datasets' head features, times the weight."""

    def __init__(self, cfg: RunConfig) -> None:
        self.weight = cfg.coral_weight
        self.probe: CoralProbe | None = None

    def attach(self, model):
        self.probe = CoralProbe(model)

    def extra_loss(self, domains):
        return self.weight * self.probe.loss(domains)  # type: ignore[union-attr]

    def detach(self):
        if self.probe is not None:
            self.probe.remove()


#: Plug-in name -> (does a config use it?, factory(cfg, root)); :func:`plugins_for` keeps this order.
PLUGINS: dict[str, tuple[Callable[[RunConfig], bool], Callable[..., Plugin]]] = {
    "input_alignment": (lambda c: c.input_alignment is not None, lambda c, root: InputAlignment(c, root)),
    "domain_aware": (lambda c: c.domain_aware, lambda c, root: DomainAware(c)),
    "fg_reweight": (lambda c: c.fg_reweight, lambda c, root: ForegroundReweighting(c, root)),
    "coral": (lambda c: c.coral_weight > 0, lambda c, root: Coral(c)),
}


def plugins_for(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> list[Plugin]:
    """The plug-ins a config names, in the order of :data:`PLUGINS` (none for the paper's runs).

    Examples
    --------
    >>> plugins_for(RunConfig())
    []
    >>> [type(p).__name__ for p in plugins_for(RunConfig(train_set="paired", film=True, coral_weight=1.0))]
    ['DomainAware', 'Coral']
    """
    return [make(cfg, root) for uses, make in PLUGINS.values() if uses(cfg)]


def transform_volume(
    plugins: list[Plugin], dataset: str, images: np.ndarray, masks: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A volume of ``dataset`` after every plug-in's ``transform_volume`` (training and test alike)."""
    for plugin in plugins:
        images, masks = plugin.transform_volume(dataset, images, masks)
    return images, masks


def cache_parts(plugins: list[Plugin]) -> dict[str, Any]:
    """Every plug-in's ``cache_parts``, merged."""
    parts: dict[str, Any] = {}
    for plugin in plugins:
        parts.update(plugin.cache_parts())
    return parts


def forward_kwargs(plugins: list[Plugin], domain: int | torch.Tensor) -> dict[str, Any]:
    """Every plug-in's ``forward_kwargs`` for ``domain``, merged."""
    kwargs: dict[str, Any] = {}
    for plugin in plugins:
        kwargs.update(plugin.forward_kwargs(domain))
    return kwargs


def plugin_loss(
    plugins: list[Plugin], logits: torch.Tensor, masks: torch.Tensor, domains: torch.Tensor, kind: str,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of a batch: the segmentation loss (or the first plug-in ``loss``) plus every ``extra_loss``.

    Parameters
    ----------
    plugins : list of Plugin
    logits : torch.Tensor of shape (B, 2, H, W)
    masks : torch.Tensor of shape (B, H, W)
    domains : torch.Tensor of shape (B,)
        Each item's dataset index (:data:`~emlib.models.domain.DOMAINS`).
    kind : str
        ``RunConfig.loss`` (:func:`~emlib.losses.segmentation_loss`).
    valid : torch.Tensor of shape (B, H, W), default=None
        The unpadded pixels (None: all); padding is left out of the loss.

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    replaced = [r for p in plugins if (r := p.loss(logits, masks, domains, kind, valid)) is not None]
    loss = replaced[0] if replaced else segmentation_loss(logits, masks, kind, valid=valid)
    for plugin in plugins:
        extra = plugin.extra_loss(domains)
        if extra is not None:
            loss = loss + extra
    return loss
