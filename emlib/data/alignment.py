"""Input-level remedies for paired training: make the pixels of both datasets look alike.

Each changes a (Z, H, W) uint8 stack before any model sees it, in training and at test time
(a :class:`~emlib.config.RunConfig` names one with ``input_alignment``):

* ``standardise`` -- shift and scale a stack's grey values to the reference's mean and standard
  deviation (:func:`standardise_intensity`);
* ``histmatch`` -- map the grey values so the stack's CDF follows the reference's
  (:func:`histogram_match`);
* ``clahe`` -- contrast-limited adaptive histogram equalisation of every slice (:func:`clahe`,
  scikit-image);
* ``resample`` -- bring the in-plane pixel size to the reference's (:func:`resample_stack`).

The reference is the training slices of ``alignment_reference`` (Lucchi++ unless set otherwise,
:func:`reference_for`); :func:`align_volume` applies one method, :func:`align_run_volume` a run's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emlib.config import INPUT_ALIGNMENTS, RunConfig
from emlib.data import data_root, get_source, load_volume, resize_slice
from emlib.errors import ConfigError, ShapeError

__all__ = [
    "INPUT_ALIGNMENTS",
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
    "align_run_volume",
]


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
    vol = load_volume(dataset, "train", root=root, slices=slices)
    return intensity_reference(vol.images, dataset=dataset, pixel_size_nm=get_source(dataset).voxel_size_nm[-1])


def reference_for(cfg: RunConfig, root: str | os.PathLike[str] | None = None) -> ReferenceStats:
    """Reference statistics of a run: the training slices of ``cfg.alignment_reference``.

    The same slices the run trains on (``train_slices``; all of them when None), so training and
    evaluation recompute the same reference without storing it.
    """
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


def clahe_available() -> bool:
    """True when scikit-image (needed by :func:`clahe`) can be imported."""
    try:
        import skimage  # noqa: F401
    except ImportError:
        return False
    return True
