"""Beyond the paper: remedies for paired training (Lucchi++ and VNC together), at three levels.

Training one model on both datasets at once collapses in the paper. Each remedy here is a small
function or module, and a :class:`~emlib.config.RunConfig` option that :func:`emlib.train.fit`
and :func:`emlib.evaluate.evaluate` honour:

* **input level** (``input_alignment``) — change the pixels before any model sees them:
  per-dataset intensity standardisation (:func:`standardise_intensity`), histogram matching
  (:func:`histogram_match`), CLAHE (:func:`clahe`, needs scikit-image) and resampling to a common
  physical pixel size (:func:`resample_stack`). :func:`align_volume` applies one of them to a
  (Z, H, W) uint8 stack; the reference is the training slices of ``alignment_reference``
  (Lucchi++ unless set otherwise, :func:`reference_for`).
* **feature level** — act on the backbone's patch features before the head: per-domain feature
  standardisation with AdaBN-style running statistics (:class:`DomainFeatureNorm`,
  ``feature_norm``), a learned per-domain affine map (:class:`DomainFiLM`, ``film``) and the CORAL
  loss between the two datasets' features (:func:`coral_loss`, ``coral_weight``).
* **training level** — balanced sampling (``balance``, :class:`~emlib.data.PairedDataset`), one
  head per dataset on a shared backbone/LoRA adapter (``heads_per_domain``) and loss reweighting by
  foreground fraction (:func:`foreground_weights`, :func:`domain_weighted_loss`, ``fg_reweight``).

:data:`REMEDIES` names one RunConfig override per remedy; :func:`run_alignment_grid` trains and
tests them with :func:`emlib.grid.run_one` next to the paired baselines and the single-dataset
references, :func:`remedy_latents` measures the latent diagnostics of each finished run (Fréchet
distance and linear probe between the two datasets' image embeddings, as in chapter 6) and
:func:`alignment_summary` turns both into one table (remedy x IoU_fg, FD, probe AUROC).

Domain ids are positions in :data:`DOMAINS`: 0 for Lucchi++, 1 for VNC, in training (the item's
``domain``) and at test time (the test set's).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from emlib.config import INPUT_ALIGNMENTS, TEST_SETS, RunConfig, get_profile
from emlib.errors import ConfigError, ShapeError

__all__ = [
    "DOMAINS",
    "INPUT_ALIGNMENTS",
    "REMEDIES",
    "ReferenceStats",
    "intensity_reference",
    "reference_for",
    "standardise_intensity",
    "grey_cdf",
    "histogram_match",
    "clahe",
    "clahe_available",
    "pixel_scale",
    "resample_stack",
    "align_volume",
    "domain_index",
    "DomainFeatureNorm",
    "DomainFiLM",
    "DomainAwareHead",
    "DomainSegmentationModel",
    "coral_loss",
    "patch_features",
    "foreground_weights",
    "training_foreground_fractions",
    "domain_weighted_loss",
    "alignment_configs",
    "run_alignment_grid",
    "alignment_summary",
    "remedy_latent_space",
    "run_embeddings",
    "remedy_latents",
    "align_run_volume",
    "running_stat_names",
    "CoralProbe",
]

#: Domain id of each dataset (position), shared by training items and test sets.
DOMAINS: tuple[str, ...] = TEST_SETS

#: Remedy name -> RunConfig overrides, applied to the paired run of each regime.
#: ``coral_weight=1.0`` is a starting point, not a tuned value.
REMEDIES: dict[str, dict[str, Any]] = {
    "balanced sampling": {"balance": True},
    "standardise": {"input_alignment": "standardise"},
    "histmatch to Lucchi++": {"input_alignment": "histmatch"},
    "histmatch to VNC": {"input_alignment": "histmatch", "alignment_reference": "vnc"},
    "clahe": {"input_alignment": "clahe"},
    "resample to 5 nm": {"input_alignment": "resample"},
    "feature norm (AdaBN)": {"feature_norm": True},
    "FiLM per domain": {"film": True},
    "CORAL": {"coral_weight": 1.0},
    "heads per domain": {"heads_per_domain": True},
    "fg reweighting": {"fg_reweight": True},
}


# =============================================================================================
# Input level: (Z, H, W) uint8 stacks
# =============================================================================================


def _check_uint8_stack(images: np.ndarray, name: str = "images") -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (2, 3):
        raise ShapeError(f"{name} must be a (Z, H, W) or (H, W) uint8 stack, got shape {images.shape} dtype {images.dtype}")
    return images


def grey_cdf(images: np.ndarray) -> np.ndarray:
    """Cumulative distribution of the grey values 0..255 of a uint8 stack.

    Returns
    -------
    ndarray of shape (256,), dtype float64
        ``cdf[v]`` = fraction of pixels with value <= ``v`` (``cdf[255] == 1``).
    """
    images = _check_uint8_stack(images)
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    return np.cumsum(counts) / counts.sum()


@dataclass(frozen=True)
class ReferenceStats:
    """Intensity statistics of the reference dataset (its training slices).

    Attributes
    ----------
    dataset : str
        Where they come from (``lucchi_pp`` by default).
    mean, std : float
        Grey-value mean and standard deviation (0..255 scale).
    cdf : ndarray of shape (256,)
        Grey-value CDF (:func:`grey_cdf`).
    pixel_size_nm : float
        In-plane pixel size of the reference dataset.
    """

    dataset: str
    mean: float
    std: float
    cdf: np.ndarray
    pixel_size_nm: float


def intensity_reference(images: np.ndarray, *, dataset: str = "reference", pixel_size_nm: float = 5.0) -> ReferenceStats:
    """:class:`ReferenceStats` of a uint8 stack."""
    images = _check_uint8_stack(images)
    return ReferenceStats(
        dataset=dataset, mean=float(images.mean()), std=float(images.std()), cdf=grey_cdf(images),
        pixel_size_nm=float(pixel_size_nm),
    )


@lru_cache(maxsize=8)
def _reference_cached(dataset: str, root: str, slices: int | None) -> ReferenceStats:
    from emlib.data import get_source, load_volume

    vol = load_volume(dataset, "train", root=root, slices=slices)
    return intensity_reference(vol.images, dataset=dataset, pixel_size_nm=get_source(dataset).voxel_size_nm[-1])


def reference_for(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> ReferenceStats:
    """Reference statistics of a run: the training slices of ``cfg.alignment_reference``.

    The same slices the run trains on (``train_slices``; all of them when None), so training and
    evaluation recompute the same reference without storing it.
    """
    from emlib.data import data_root

    return _reference_cached(cfg.alignment_reference, str(data_root(root)), cfg.train_slices)


def standardise_intensity(images: np.ndarray, *, mean: float, std: float) -> np.ndarray:
    """Shift and scale a stack so its grey values have ``mean`` and ``std`` (then round and clip to uint8).

    The stack's own statistics are taken over all its slices (per dataset, not per slice).

    Examples
    --------
    >>> x = np.array([[[0, 100], [100, 200]]], np.uint8)
    >>> standardise_intensity(x, mean=50.0, std=10.0)
    array([[[36, 50],
            [50, 64]]], dtype=uint8)
    """
    images = _check_uint8_stack(images)
    if std <= 0:
        raise ConfigError(f"std={std} must be positive")
    x = images.astype(np.float64)
    own_std = x.std()
    z = (x - x.mean()) / (own_std if own_std > 0 else 1.0)
    return np.clip(np.rint(z * std + mean), 0, 255).astype(np.uint8)


def histogram_match(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map grey values so the stack's CDF follows a reference CDF (histogram specification on uint8).

    Parameters
    ----------
    images : ndarray of shape (Z, H, W) or (H, W), dtype uint8
    reference : ndarray
        Either a reference CDF of shape (256,) (:func:`grey_cdf`, :attr:`ReferenceStats.cdf`) or a
        uint8 reference stack.

    Returns
    -------
    ndarray like ``images``, dtype uint8
        Each level ``v`` becomes the smallest level ``u`` with ``cdf_ref[u] >= cdf_src[v]``, so the
        CDFs differ at most by the largest single-level mass of the source (about 1 % on EM slices).
    """
    images = _check_uint8_stack(images)
    reference = np.asarray(reference)
    if reference.dtype == np.uint8:
        ref_cdf = grey_cdf(reference)
    elif reference.shape == (256,):
        ref_cdf = reference.astype(np.float64)
    else:
        raise ShapeError(f"reference must be a (256,) CDF or a uint8 stack, got shape {reference.shape} dtype {reference.dtype}")
    src_cdf = grey_cdf(images)
    lut = np.searchsorted(ref_cdf, src_cdf - 1e-12, side="left").clip(0, 255).astype(np.uint8)
    return lut[images]


def clahe(images: np.ndarray, *, clip_limit: float = 0.01, kernel_size: int | None = None) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of every slice (scikit-image).

    Parameters
    ----------
    images : ndarray of shape (Z, H, W) or (H, W), dtype uint8
    clip_limit : float, default=0.01
        scikit-image's ``clip_limit`` (0..1; higher gives more contrast).
    kernel_size : int, default=None
        Context region; None means 1/8 of each side (scikit-image's default).

    Raises
    ------
    ConfigError
        scikit-image is not installed.
    """
    images = _check_uint8_stack(images)
    try:
        from skimage.exposure import equalize_adapthist
    except ImportError:
        raise ConfigError(
            "input_alignment='clahe' needs scikit-image, which is not installed; run `pip install scikit-image`"
        ) from None
    stack = images[None] if images.ndim == 2 else images
    out = np.stack(
        [np.rint(equalize_adapthist(s, kernel_size=kernel_size, clip_limit=clip_limit) * 255).astype(np.uint8) for s in stack]
    )
    return out[0] if images.ndim == 2 else out


def pixel_scale(dataset: str, target_nm: float) -> float:
    """Resize factor that brings ``dataset``'s in-plane pixel size to ``target_nm`` (VNC to 5 nm: 0.92)."""
    from emlib.data import get_source

    if target_nm <= 0:
        raise ConfigError(f"target_nm={target_nm} must be positive")
    return get_source(dataset).voxel_size_nm[-1] / target_nm


def resample_stack(images: np.ndarray, scale: float, *, is_mask: bool = False) -> np.ndarray:
    """Resize every slice by ``scale`` (bicubic for images, nearest for masks); sides are rounded.

    Examples
    --------
    >>> resample_stack(np.zeros((2, 100, 50), np.uint8), 0.92).shape
    (2, 92, 46)
    """
    from emlib.data import resize_slice

    stack = np.asarray(images)
    if stack.ndim != 3:
        raise ShapeError(f"resample_stack needs a (Z, H, W) stack, got shape {stack.shape}")
    if scale <= 0:
        raise ConfigError(f"scale={scale} must be positive")
    h, w = stack.shape[1:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return stack
    return np.stack([resize_slice(s, size, is_mask=is_mask) for s in stack])


def align_volume(
    images: np.ndarray,
    dataset: str,
    method: str | None,
    reference: ReferenceStats | None,
    *,
    masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply one input-level remedy to a stack of ``dataset`` (and its masks where the shape changes).

    Parameters
    ----------
    images : ndarray of shape (Z, H, W), dtype uint8
    dataset : str
        ``lucchi_pp`` or ``vnc`` (its pixel size is needed for ``resample``).
    method : {'standardise', 'histmatch', 'clahe', 'resample'} or None
        None returns the inputs unchanged. ``standardise`` and ``histmatch`` map the whole stack's
        statistics to ``reference`` (the stack's own statistics are used, also for a test stack);
        ``clahe`` needs no reference; ``resample`` brings the pixel size to the reference's.
    reference : ReferenceStats or None
        From :func:`reference_for`; needed by every method except ``clahe``.
    masks : ndarray of shape (Z, H, W), default=None
        Resampled alongside the images (nearest); otherwise returned unchanged.

    Returns
    -------
    images, masks
    """
    if method is None:
        return images, masks
    if method not in INPUT_ALIGNMENTS:
        raise ConfigError(f"input_alignment={method!r} is not allowed; choose one of {list(INPUT_ALIGNMENTS)} or None")
    if method != "clahe" and reference is None:
        raise ConfigError(f"input_alignment={method!r} needs reference statistics; pass reference_for(cfg, root)")
    images = _check_uint8_stack(images)
    if method == "standardise":
        return standardise_intensity(images, mean=reference.mean, std=reference.std), masks  # type: ignore[union-attr]
    if method == "histmatch":
        return histogram_match(images, reference.cdf), masks  # type: ignore[union-attr]
    if method == "clahe":
        return clahe(images), masks
    scale = pixel_scale(dataset, reference.pixel_size_nm)  # type: ignore[union-attr]
    return resample_stack(images, scale), None if masks is None else resample_stack(masks, scale, is_mask=True)


# =============================================================================================
# Feature level: modules between backbone and head, and the CORAL loss
# =============================================================================================


def domain_index(dataset: str) -> int:
    """Domain id of a dataset: its position in :data:`DOMAINS` (lucchi_pp 0, vnc 1)."""
    if dataset not in DOMAINS:
        raise ConfigError(f"dataset={dataset!r} has no domain id; choose one of {list(DOMAINS)}")
    return DOMAINS.index(dataset)


def _domain_tensor(domain: int | Sequence[int] | torch.Tensor, batch: int, num_domains: int, device: torch.device) -> torch.Tensor:
    d = torch.as_tensor(domain, dtype=torch.long, device=device)
    if d.ndim == 0:
        d = d.expand(batch)
    if d.shape != (batch,):
        raise ShapeError(f"domain must be an int or hold one id per item ({batch}), got shape {tuple(d.shape)}")
    if batch and (int(d.min()) < 0 or int(d.max()) >= num_domains):
        raise ConfigError(f"domain ids must lie in 0..{num_domains - 1}, got {sorted(set(d.tolist()))}")
    return d


def _check_map(x: torch.Tensor, channels: int, owner: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ShapeError(f"{owner} expects features of shape (B, {channels}, h, w), got {tuple(x.shape)}")


class DomainFeatureNorm(nn.Module):
    """Per-domain standardisation of patch features, with AdaBN-style running statistics.

    Each domain has its own running mean and variance per channel. In training, a batch is
    normalised with the batch statistics of each domain's items, and only the running statistics
    of the domains present are updated. In evaluation the running statistics of the given domain
    are used; a domain never seen in training is normalised with its own batch statistics (AdaBN:
    the test domain's statistics replace the training ones). No affine parameters: the head's
    first layer follows.

    Parameters
    ----------
    num_domains : int
    channels : int
    momentum : float, default=0.1
        As in :class:`torch.nn.BatchNorm2d`.
    eps : float, default=1e-5

    Examples
    --------
    >>> norm = DomainFeatureNorm(2, 4)
    >>> norm(torch.randn(3, 4, 2, 2) * 5 + 1, torch.tensor([0, 0, 1])).shape
    torch.Size([3, 4, 2, 2])
    """

    def __init__(self, num_domains: int, channels: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_domains, self.channels, self.momentum, self.eps = num_domains, channels, momentum, eps
        self.register_buffer("running_mean", torch.zeros(num_domains, channels))
        self.register_buffer("running_var", torch.ones(num_domains, channels))
        self.register_buffer("num_batches_tracked", torch.zeros(num_domains, dtype=torch.long))

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Normalised features, same shape as ``x`` (B, C, h, w); ``domain`` is an int or (B,) ids."""
        _check_map(x, self.channels, "DomainFeatureNorm")
        d = _domain_tensor(domain, x.shape[0], self.num_domains, x.device)
        out = torch.zeros_like(x, dtype=torch.float32)
        for k in d.unique().tolist():
            idx = (d == k).nonzero(as_tuple=True)[0]
            xk = x[idx].float()
            if self.training or int(self.num_batches_tracked[k]) == 0:
                mean = xk.mean(dim=(0, 2, 3))
                var = xk.var(dim=(0, 2, 3), unbiased=False)
                if self.training:
                    with torch.no_grad():
                        n = xk.numel() / self.channels
                        unbiased = var * n / max(n - 1, 1)
                        self.running_mean[k].lerp_(mean.detach(), self.momentum)
                        self.running_var[k].lerp_(unbiased.detach(), self.momentum)
                        self.num_batches_tracked[k] += 1
            else:
                mean, var = self.running_mean[k], self.running_var[k]
            normed = (xk - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
            out = out.index_put((idx,), normed)
        return out.to(x.dtype)


class DomainFiLM(nn.Module):
    """A learned per-domain affine map of the features: ``gamma[d] * x + beta[d]`` per channel.

    Starts as the identity (gamma 1, beta 0), so an untrained domain passes features unchanged.

    Examples
    --------
    >>> film = DomainFiLM(2, 3)
    >>> x = torch.randn(2, 3, 4, 4)
    >>> torch.equal(film(x, 1), x)
    True
    """

    def __init__(self, num_domains: int, channels: int) -> None:
        super().__init__()
        self.num_domains, self.channels = num_domains, channels
        self.gamma = nn.Parameter(torch.ones(num_domains, channels))
        self.beta = nn.Parameter(torch.zeros(num_domains, channels))

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, h, w) scaled and shifted by its domain's parameters."""
        _check_map(x, self.channels, "DomainFiLM")
        d = _domain_tensor(domain, x.shape[0], self.num_domains, x.device)
        return x * self.gamma[d][:, :, None, None] + self.beta[d][:, :, None, None]


class DomainAwareHead(nn.Module):
    """Head input -> [DomainFeatureNorm] -> [DomainFiLM] -> one shared head, or one head per domain.

    Called as ``head(features, out_size, domain)``; items are routed to ``heads[domain]`` when
    there is one head per domain.

    Parameters
    ----------
    heads : sequence of nn.Module
        One head (shared) or ``num_domains`` heads, each called as ``head(features, out_size)``.
    num_domains : int
    channels : int
        Channels of the features (the backbone's ``embed_dim``).
    feature_norm, film : bool, default=False
        Insert :class:`DomainFeatureNorm` / :class:`DomainFiLM` before the head(s).
    """

    def __init__(
        self, heads: Sequence[nn.Module], *, num_domains: int, channels: int, feature_norm: bool = False, film: bool = False
    ) -> None:
        super().__init__()
        if len(heads) not in (1, num_domains):
            raise ConfigError(f"DomainAwareHead takes 1 shared head or one per domain ({num_domains}), got {len(heads)}")
        self.heads = nn.ModuleList(heads)
        self.num_domains, self.in_ch = num_domains, channels
        self.norm = DomainFeatureNorm(num_domains, channels) if feature_norm else None
        self.film = DomainFiLM(num_domains, channels) if film else None

    def adapt(self, features: torch.Tensor, domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The features the head(s) see: after the per-domain norm and FiLM, where present."""
        if self.norm is not None:
            features = self.norm(features, domain)
        if self.film is not None:
            features = self.film(features, domain)
        return features

    def forward(self, features: torch.Tensor, out_size: Sequence[int], domain: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes, H, W)."""
        x = self.adapt(features, domain)
        if len(self.heads) == 1:
            return self.heads[0](x, out_size)
        d = _domain_tensor(domain, x.shape[0], self.num_domains, x.device)
        logits: torch.Tensor | None = None
        for k in d.unique().tolist():
            idx = (d == k).nonzero(as_tuple=True)[0]
            part = self.heads[k](x[idx], out_size)
            if logits is None:
                logits = part.new_zeros((x.shape[0], *part.shape[1:]))
            logits = logits.index_put((idx,), part)
        return logits  # type: ignore[return-value]


class DomainSegmentationModel(nn.Module):
    """A backbone and a :class:`DomainAwareHead`: ``model(x, domain=d)`` gives logits at the input size.

    The domain must be given (0 for Lucchi++, 1 for VNC: :func:`domain_index`); evaluation passes
    the test set's.
    """

    def __init__(self, backbone: nn.Module, head: DomainAwareHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, domain: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes, H, W) for images (B, 3, H, W) of ``domain``."""
        if domain is None:
            raise ConfigError(
                "this model has per-domain parts; call model(x, domain=d) with d=0 for lucchi_pp and 1 for vnc"
            )
        return self.head(self.backbone(x), tuple(x.shape[-2:]), domain)


def patch_features(features: torch.Tensor) -> torch.Tensor:
    """A feature map (B, C, h, w) as a matrix of patch vectors (B*h*w, C); (N, C) passes through."""
    if features.ndim == 4:
        return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    if features.ndim == 2:
        return features
    raise ShapeError(f"features must be (B, C, h, w) or (N, C), got shape {tuple(features.shape)}")


def coral_loss(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """CORAL loss between two sets of features: ``||C_a - C_b||_F^2 / (4 d^2)`` (Sun & Saenko, 2016).

    Parameters
    ----------
    fa, fb : Tensor of shape (N, d) or (B, d, h, w)
        Features of the two domains (feature maps are read as patch vectors); at least 2 each.

    Returns
    -------
    Tensor, scalar
        Zero when the two covariance matrices are equal; differentiable in both inputs.

    Examples
    --------
    >>> x = torch.randn(50, 3)
    >>> round(float(coral_loss(x, x + 2.0)), 8)  # a shift leaves the covariance unchanged
    0.0
    >>> float(coral_loss(x, 2.0 * x)) > 0
    True
    """
    a, b = patch_features(fa).float(), patch_features(fb).float()
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"coral_loss needs the same feature size, got {a.shape[1]} and {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ShapeError(f"coral_loss needs at least 2 vectors per domain, got {a.shape[0]} and {b.shape[0]}")
    d = a.shape[1]

    def cov(x: torch.Tensor) -> torch.Tensor:
        xc = x - x.mean(dim=0, keepdim=True)
        return xc.T @ xc / (x.shape[0] - 1)

    return ((cov(a) - cov(b)) ** 2).sum() / (4.0 * d * d)


# =============================================================================================
# Training level: foreground reweighting
# =============================================================================================


def foreground_weights(fractions: Sequence[float]) -> np.ndarray:
    """Loss weight per domain: the inverse of its foreground fraction, normalised to mean 1.

    Examples
    --------
    >>> foreground_weights([0.1, 0.05]).round(4).tolist()
    [0.6667, 1.3333]
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or len(f) == 0 or not np.all((f > 0) & (f <= 1)):
        raise ConfigError(f"foreground fractions must lie in (0, 1], got {f.tolist()}")
    inv = 1.0 / f
    return inv / inv.mean()


def training_foreground_fractions(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> list[float]:
    """Foreground fraction of each domain's training slices of a run (order of :data:`DOMAINS`)."""
    from emlib.data import load_volume

    return [load_volume(name, "train", root=root, slices=cfg.train_slices).foreground_fraction for name in DOMAINS]


def domain_weighted_loss(
    logits: torch.Tensor, target: torch.Tensor, domain: torch.Tensor, weights: Sequence[float] | torch.Tensor, kind: str = "dice"
) -> torch.Tensor:
    """``sum_d w_d * (n_d / B) * loss(items of domain d)``: each domain's loss on its own items, weighted.

    With all weights 1 and one domain in the batch this equals :func:`emlib.losses.segmentation_loss`.
    """
    from emlib.losses import segmentation_loss

    d = _domain_tensor(domain, logits.shape[0], len(weights), logits.device)
    total = logits.new_zeros((), dtype=torch.float32)
    for k in d.unique().tolist():
        idx = (d == k).nonzero(as_tuple=True)[0]
        total = total + float(weights[k]) * len(idx) / logits.shape[0] * segmentation_loss(logits[idx], target[idx], kind)
    return total


# =============================================================================================
# The remedy grid
# =============================================================================================


def alignment_configs(
    profile: str = "smoke",
    *,
    regimes: Sequence[str] = ("frozen", "lora"),
    remedies: Sequence[str] | None = None,
    references: bool = True,
    **overrides: Any,
) -> list[tuple[str, RunConfig]]:
    """(remedy, config) pairs: per regime the paired baseline, each remedy, and the single-dataset references.

    Parameters
    ----------
    profile : str, default='smoke'
        Base settings (backbone, sizes, epochs) come from this profile.
    regimes : sequence of {'frozen', 'lora'}, default=('frozen', 'lora')
    remedies : sequence of str, default=None
        Names from :data:`REMEDIES`; None takes all. CLAHE is dropped without scikit-image.
    references : bool, default=True
        Also train on each dataset alone (rows ``lucchi_pp only``, ``vnc only``): the in-domain
        scores paired training should reach.
    **overrides
        Applied to every run (e.g. ``pretrained=False``, ``device='cpu'``); None values are dropped.
    """
    names = list(REMEDIES) if remedies is None else list(remedies)
    unknown = [n for n in names if n not in REMEDIES]
    if unknown:
        raise ConfigError(f"unknown remedies {unknown}; choose from {list(REMEDIES)}")
    if remedies is None and not clahe_available():
        names = [n for n in names if REMEDIES[n].get("input_alignment") != "clahe"]
    bad = [r for r in regimes if r not in ("frozen", "lora")]
    if bad:
        raise ConfigError(f"regimes {bad} are not allowed; remedies act on backbone features, choose 'frozen' or 'lora'")
    base = get_profile(profile).base.replace(**{k: v for k, v in overrides.items() if v is not None})
    out: list[tuple[str, RunConfig]] = []
    for regime in regimes:
        paired = base.replace(regime=regime, train_set="paired")
        out.append(("paired baseline", paired))
        out.extend((name, paired.replace(**REMEDIES[name])) for name in names)
        if references:
            out.extend((f"{ds} only", base.replace(regime=regime, train_set=ds)) for ds in DOMAINS)
    return out


def clahe_available() -> bool:
    try:
        import skimage  # noqa: F401
    except ImportError:
        return False
    return True


def run_alignment_grid(
    profile: str,
    out_dir: str | os.PathLike[str],
    *,
    regimes: Sequence[str] = ("frozen", "lora"),
    remedies: Sequence[str] | None = None,
    references: bool = True,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> pd.DataFrame:
    """Train and test every run of :func:`alignment_configs` with :func:`emlib.grid.run_one`.

    Finished runs (``metrics.json`` in their folder) are read back, not retrained.

    Returns
    -------
    DataFrame
        The tidy rows of :func:`emlib.evaluate.evaluate_both` (one per run and test set) with a
        ``remedy`` column; pass it to :func:`alignment_summary`.
    """
    from tqdm.auto import tqdm

    from emlib.grid import run_one

    pairs = alignment_configs(profile, regimes=regimes, remedies=remedies, references=references, **overrides)
    os.makedirs(out_dir, exist_ok=True)
    tables = []
    for remedy, cfg in tqdm(pairs, desc=f"remedies {profile}", disable=not progress):
        table = run_one(cfg, out_dir, root=root, progress=False, profile=profile)
        tables.append(table.assign(remedy=remedy))
    results = pd.concat(tables, ignore_index=True)
    results.to_csv(os.path.join(out_dir, "alignment_results.csv"), index=False)
    return results


def alignment_summary(results: pd.DataFrame, *, value: str = "iou_fg", latents: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (regime, remedy): IoU on each test set, in-domain and cross-domain means, gap closed.

    Columns: ``regime, remedy, train_set, kind`` (``baseline``, ``remedy`` or ``reference``),
    ``<value>_<test set>`` per test set, ``in_domain_<value>`` (mean over the test sets the run
    trained on: both for paired runs), ``cross_domain_<value>`` (mean over the others: empty for
    paired runs), ``gap_closed`` (for paired runs: ``(m - m_base) / (m_ref - m_base)`` with ``m`` the
    mean over both test sets and ``m_ref`` the mean of the two single-dataset in-domain scores;
    empty when the gap is under 0.01) and ``weights_label``. Seeds are averaged.

    With ``latents`` (the table of :func:`remedy_latents`) three more columns follow: ``fd`` (Fréchet
    distance between the two datasets' image embeddings), ``probe_auroc`` (cross-validated linear
    probe) and ``latent_space`` (which embeddings were measured); seeds are averaged, rows without a
    measurement stay empty.
    """
    need = {"remedy", "regime", "train_set", "test_set", "in_domain", value}
    missing = sorted(need - set(results.columns))
    if missing:
        raise ConfigError(f"results lack the columns {missing}; pass the table of run_alignment_grid")
    rows = []
    for (regime, remedy), group in results.groupby(["regime", "remedy"], sort=False):
        per_test = group.groupby("test_set", sort=False)[value].mean()
        train_set = group["train_set"].iloc[0]
        inside = group[group["in_domain"].astype(bool)][value]
        outside = group[~group["in_domain"].astype(bool)][value]
        kind = "baseline" if remedy == "paired baseline" else ("reference" if train_set != "paired" else "remedy")
        row: dict[str, Any] = {"regime": regime, "remedy": remedy, "train_set": train_set, "kind": kind}
        row.update({f"{value}_{t}": float(per_test.get(t, np.nan)) for t in DOMAINS})
        row[f"in_domain_{value}"] = float(inside.mean()) if len(inside) else np.nan
        row[f"cross_domain_{value}"] = float(outside.mean()) if len(outside) else np.nan
        if "weights_label" in group:
            row["weights_label"] = group["weights_label"].iloc[0]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["gap_closed"] = np.nan
    for regime, group in table.groupby("regime", sort=False):
        base = group[group.kind == "baseline"]
        refs = group[group.kind == "reference"].set_index("train_set")
        if base.empty or not set(DOMAINS) <= set(refs.index):
            continue
        m_base = float(base[[f"{value}_{t}" for t in DOMAINS]].mean(axis=1).iloc[0])
        m_ref = float(np.mean([refs.loc[t, f"{value}_{t}"] for t in DOMAINS]))
        if abs(m_ref - m_base) < 0.01:
            continue
        sel = (table.regime == regime) & (table.train_set == "paired")
        means = table.loc[sel, [f"{value}_{t}" for t in DOMAINS]].mean(axis=1)
        table.loc[sel, "gap_closed"] = (means - m_base) / (m_ref - m_base)
    if latents is not None:
        need = {"regime", "remedy", "fd", "probe_auroc", "latent_space"}
        missing = sorted(need - set(latents.columns))
        if missing:
            raise ConfigError(f"latents lack the columns {missing}; pass the table of remedy_latents")
        per = latents.groupby(["regime", "remedy"], sort=False).agg(
            fd=("fd", "mean"), probe_auroc=("probe_auroc", "mean"), latent_space=("latent_space", "first")
        )
        table = table.merge(per.reset_index(), on=["regime", "remedy"], how="left")
    return table


# =============================================================================================
# Latent diagnostics of each remedy run (chapter 6's Fréchet distance and linear probe)
# =============================================================================================


def remedy_latent_space(cfg: RunConfig) -> str:
    """Which embeddings :func:`remedy_latents` measures for a run, in words.

    The image embeddings of the backbone (frozen, or with the run's LoRA adapter), of the inputs after
    the run's input alignment. Feature-level remedies act after the backbone, on the head's input,
    so the measured space does not include them; the text says so instead of pretending the
    distance changed.

    Examples
    --------
    >>> remedy_latent_space(RunConfig(regime="frozen", input_alignment="histmatch"))
    'frozen backbone embeddings of histmatch-aligned inputs (reference lucchi_pp)'
    >>> remedy_latent_space(RunConfig(regime="frozen", train_set="paired", film=True))
    'frozen backbone embeddings (FiLM acts after the backbone: not measured)'
    """
    text = f"{'LoRA' if cfg.regime == 'lora' else 'frozen'} backbone embeddings"
    if cfg.input_alignment is not None:
        text += f" of {cfg.input_alignment}-aligned inputs"
        if cfg.input_alignment != "clahe":
            text += f" (reference {cfg.alignment_reference})"
    after = [
        name
        for name, on in (
            ("feature norm", cfg.feature_norm), ("FiLM", cfg.film), ("CORAL", cfg.coral_weight > 0),
            ("one head per domain", cfg.heads_per_domain),
        )
        if on
    ]
    if after:
        verb = "act" if len(after) > 1 else "acts"
        text += f" ({' + '.join(after)} {verb} after the backbone: not measured"
        text += "; the adapter was trained with it)" if cfg.regime == "lora" else ")"
    return text


def _input_transform(cfg: RunConfig, root: str | os.PathLike[str] | None) -> tuple[Any, str]:
    """(transform(dataset, images) -> images, cache-key text) of a run's input alignment."""

    def transform(dataset: str, images: np.ndarray) -> np.ndarray:
        return align_run_volume(cfg, dataset, np.asarray(images), None, root)[0]

    reference = "none" if cfg.input_alignment == "clahe" else f"{cfg.alignment_reference}:{cfg.train_slices}"
    return transform, f"{cfg.input_alignment}:{reference}"


def run_embeddings(backbone: Any, cfg: RunConfig, *, root: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """:func:`emlib.latents.dataset_embeddings` of the slices a run's model sees: after its input alignment.

    Without input alignment this is ``dataset_embeddings`` itself (same cache files as chapter 6).
    With one, each dataset's selected slices are aligned as :func:`emlib.evaluate.evaluate` aligns a
    test stack (:func:`align_run_volume`: the stack's own statistics, the run's reference) before
    they are resized and embedded; the cache key names the alignment. ``kwargs`` are those of
    ``dataset_embeddings`` (``adapter``, ``slices``, ``long_edge``, ``cache_dir``, ...).

    Returns
    -------
    EmbeddingSet
    """
    from emlib import latents

    kwargs.setdefault("progress", False)
    if cfg.input_alignment is None:
        return latents.dataset_embeddings(backbone, root=root, **kwargs)
    transform, transform_key = _input_transform(cfg, root)
    return latents.dataset_embeddings(backbone, root=root, transform=transform, transform_key=transform_key, **kwargs)


def remedy_latents(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    profile: str | None = None,
    root: str | os.PathLike[str] | None = None,
    slices: int | None = None,
    long_edge: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Latent diagnostics of every finished run of a remedy grid: FD and linear probe, Lucchi++ vs VNC.

    For each run (folder ``out_dir/<run_id>``) the two datasets' image embeddings are taken as
    chapter 6 takes them (:func:`emlib.latents.dataset_embeddings`), from what the run's head sees
    as far as the backbone goes: the frozen backbone for frozen runs, the backbone with the run's
    LoRA adapter for LoRA runs, fed with the slices after the run's input alignment
    (:func:`run_embeddings`). Feature-level remedies act after the backbone and are not measured;
    ``latent_space`` (:func:`remedy_latent_space`) says which space each row measured.

    Parameters
    ----------
    results : DataFrame
        The table of :func:`run_alignment_grid` (columns ``run_id, regime, remedy``).
    out_dir : path
        The grid folder the runs were trained in.
    profile : str, default=None
        Takes ``slices`` and ``long_edge`` from the profile's ``embedding_slices`` and
        ``embedding_long_edge`` where those are None.
    cache_dir : path, default=None
        Embedding cache; None uses ``out_dir/embeddings`` (shared with chapter 6).
    n_splits : int, default=5
        Folds of the linear probe (fewer when a dataset has fewer slices).
    seed : int, default=0
        Seed of the probe, and of the random weights when a run has no pretrained backbone (so the
        frozen backbone is the same for every run of a call).

    Returns
    -------
    DataFrame
        One row per run: ``regime, remedy, run_id, fd`` (raw embeddings, rank-deficient covariances
        allowed as the authors did), ``probe_auroc`` (mean over the folds of
        :func:`emlib.diagnostics.linear_probe`, no permutation control), ``latent_space``,
        ``adapter, n_lucchi_pp, n_vnc, weights_label``; also written to
        ``out_dir/alignment_latents.csv``. Pass it to :func:`alignment_summary` (``latents=``).
    """
    import json
    from pathlib import Path

    from emlib.diagnostics import frechet_distance, linear_probe
    from emlib.errors import DataError
    from emlib.latents import load_backbone_for_latents

    need = {"run_id", "regime", "remedy"}
    missing = sorted(need - set(results.columns))
    if missing:
        raise ConfigError(f"results lack the columns {missing}; pass the table of run_alignment_grid")
    if profile is not None:
        prof = get_profile(profile)
        slices = prof.embedding_slices if slices is None else slices
        long_edge = prof.embedding_long_edge if long_edge is None else long_edge
    out_dir = Path(out_dir)
    cache_dir = out_dir / "embeddings" if cache_dir is None else Path(cache_dir)
    frozen: dict[tuple, Any] = {}
    rows = []
    runs = results.drop_duplicates("run_id")[["run_id", "regime", "remedy"]]
    for run_id, regime, remedy in runs.itertuples(index=False):
        run_dir = out_dir / str(run_id)
        config = run_dir / "config.json"
        if not config.is_file():
            raise DataError(f"no finished run in {run_dir} (config.json missing); run run_alignment_grid with out_dir={str(out_dir)!r}")
        cfg = RunConfig.from_dict(json.loads(config.read_text()))
        if cfg.regime not in ("frozen", "lora"):
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg.regime == "frozen":
                key = (cfg.backbone, cfg.pretrained, cfg.weights)
                if key not in frozen:
                    frozen[key] = load_backbone_for_latents(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
                net, adapter = frozen[key]
            else:
                net, adapter = load_backbone_for_latents(
                    cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, adapter_run=run_dir
                )
        net = net.to(device)
        emb = run_embeddings(
            net, cfg, adapter=adapter, root=root, slices=slices, long_edge=long_edge, device=device,
            cache_dir=cache_dir, progress=progress,
        ).embeddings
        a, b = emb["lucchi_pp"], emb["vnc"]
        x = np.vstack([a, b])
        labels = np.array(["lucchi_pp"] * len(a) + ["vnc"] * len(b))
        probe = linear_probe(x, labels, n_splits=min(n_splits, len(a), len(b)), seed=seed, n_permutations=0)
        rows.append({
            "regime": regime, "remedy": remedy, "run_id": run_id,
            "fd": frechet_distance(a, b, allow_singular=True, seed=seed), "probe_auroc": probe["auroc"],
            "latent_space": remedy_latent_space(cfg), "adapter": adapter, "n_lucchi_pp": len(a), "n_vnc": len(b),
            "weights_label": net.weights_label,
        })
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "alignment_latents.csv", index=False)
    return table


# =============================================================================================
# Glue for emlib.train and emlib.evaluate
# =============================================================================================


def align_run_volume(
    cfg: RunConfig,
    dataset: str,
    images: np.ndarray,
    masks: np.ndarray | None,
    root: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`align_volume` with the run's method and reference (training and test volumes alike)."""
    if cfg.input_alignment is None:
        return images, masks
    reference = None if cfg.input_alignment == "clahe" else reference_for(cfg, root)
    return align_volume(images, dataset, cfg.input_alignment, reference, masks=masks)


def running_stat_names(model: nn.Module) -> set[str]:
    """State-dict keys of the :class:`DomainFeatureNorm` statistics (buffers a checkpoint must keep)."""
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if isinstance(module, DomainFeatureNorm)
        for name, _ in module.named_buffers(recurse=False)
    }


class CoralProbe:
    """Captures, during a forward pass, the features CORAL aligns, and gives the loss between domains.

    The features are the output of the shared head's stem (:class:`~emlib.models.SegHeadDeconv`:
    its first trainable layer, so CORAL also acts on a frozen backbone) or, for heads without a
    stem, the head's input.

    Parameters
    ----------
    model : SegmentationModel or DomainSegmentationModel
    """

    def __init__(self, model: nn.Module) -> None:
        head = model.head
        inner = head.heads[0] if isinstance(head, DomainAwareHead) else head
        self.features: torch.Tensor | None = None
        stem = getattr(inner, "stem", None)
        if stem is not None:
            self._handle = stem.register_forward_hook(self._keep_output)
        else:
            self._handle = inner.register_forward_pre_hook(self._keep_input)

    def _keep_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.features = output

    def _keep_input(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]

    def loss(self, domain: torch.Tensor) -> torch.Tensor:
        """:func:`coral_loss` between the captured features of domain 0 and domain 1 (0 if one is missing)."""
        if self.features is None:
            raise ConfigError("CoralProbe has no features yet; run the model forward first")
        a, b = (patch_features(self.features[domain.to(self.features.device) == k]) for k in (0, 1))
        if a.shape[0] < 2 or b.shape[0] < 2:
            return self.features.new_zeros((), dtype=torch.float32)
        return coral_loss(a, b)

    def remove(self) -> None:
        """Detach the hook."""
        self._handle.remove()
