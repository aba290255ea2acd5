"""Array transforms between EM slices and backbone inputs: normalise, resize, crop, augment.

All functions are pure and work on numpy arrays (uint8 images, bool masks) except
:func:`normalize`, which returns the float tensor a backbone takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emlib.errors import ConfigError, ShapeError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize",
    "denormalize",
    "protocol_size",
    "resize_slice",
    "random_crop",
    "augment_pair",
    "check_crop",
    "select_test_slices",
    "center_region",
]

#: ImageNet statistics; the authors apply them to every backbone (their ``preset: em``).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(
    images: np.ndarray | torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Grey uint8 slices -> float32 backbone input, grey replicated to 3 channels.

    Parameters
    ----------
    images : array of shape (H, W) or (B, H, W), dtype uint8
        Grey values 0..255.
    mean, std : sequence of 3 float
        Per-channel statistics of the backbone's preprocessing (on the 0..1 scale).

    Returns
    -------
    Tensor of shape (B, 3, H, W), dtype float32
        ``(x / 255 - mean) / std`` per channel.

    Examples
    --------
    >>> normalize(np.zeros((2, 4, 6), np.uint8)).shape
    torch.Size([2, 3, 4, 6])
    """
    if not isinstance(images, torch.Tensor):
        images = np.asarray(images)
        images = images if images.flags.writeable else images.copy()
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise ShapeError(f"normalize expects uint8 grey slices, got dtype {x.dtype}; pass the raw slices")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ShapeError(f"normalize expects (H, W) or (B, H, W) grey slices, got shape {tuple(x.shape)}")
    x = x.float().div_(255.0)[:, None].expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def denormalize(
    x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """Inverse of :func:`normalize`: (B, 3, H, W) float -> (B, H, W) uint8 (channel 0)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = ((x * s + m)[:, 0] * 255.0).round().clamp(0, 255)
    return grey.to(torch.uint8).cpu().numpy()


def protocol_size(height: int, width: int, *, long_edge: int = 1022, multiple: int = 14) -> tuple[int, int]:
    """Size after the authors' resize: long side to ``long_edge``, each side floored to ``multiple``.

    Examples
    --------
    >>> protocol_size(768, 1024)          # Lucchi++ at patch 14
    (756, 1022)
    >>> protocol_size(768, 1024, multiple=16)
    (752, 1008)
    """
    if min(height, width, long_edge, multiple) <= 0:
        raise ConfigError(f"sizes must be positive, got {height}x{width}, long_edge={long_edge}, multiple={multiple}")
    scale = long_edge / max(height, width)
    h, w = round(height * scale), round(width * scale)
    h, w = (h // multiple) * multiple, (w // multiple) * multiple
    if h == 0 or w == 0:
        raise ConfigError(f"long_edge={long_edge} leaves no full patch of {multiple} pixels for a {height}x{width} slice")
    return h, w


def resize_slice(image: np.ndarray, size: tuple[int, int], *, is_mask: bool = False) -> np.ndarray:
    """Resize one slice to ``size`` = (H, W): bicubic for images (uint8), nearest for masks (bool)."""
    from PIL import Image

    h, w = size
    if is_mask:
        pil = Image.fromarray(np.asarray(image, dtype=np.uint8) * 255)
        return np.asarray(pil.resize((w, h), Image.Resampling.NEAREST)) > 127
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return np.asarray(pil.resize((w, h), Image.Resampling.BICUBIC))


def check_crop(crop: int | tuple[int, int], patch_size: int, image_shape: tuple[int, int]) -> tuple[int, int]:
    """Validate a crop size against the patch size and the slice size; returns (h, w)."""
    ch, cw = (crop, crop) if isinstance(crop, int) else tuple(crop)
    if ch <= 0 or cw <= 0:
        raise ConfigError(f"crop size must be positive, got {ch}x{cw}")
    if ch % patch_size or cw % patch_size:
        lo_h, lo_w = max(patch_size, ch // patch_size * patch_size), max(patch_size, cw // patch_size * patch_size)
        raise ConfigError(
            f"crop {ch}x{cw} is not a multiple of the patch size {patch_size}; use e.g. {lo_h}x{lo_w}"
        )
    if ch > image_shape[0] or cw > image_shape[1]:
        raise ConfigError(
            f"crop {ch}x{cw} is larger than the slices ({image_shape[0]}x{image_shape[1]}); use a smaller crop"
        )
    return ch, cw


def random_crop(
    image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop the same random (h, w) window from a slice (H, W) and its mask (H, W)."""
    h, w = size
    top = int(rng.integers(0, image.shape[0] - h + 1))
    left = int(rng.integers(0, image.shape[1] - w + 1))
    window = (slice(top, top + h), slice(left, left + w))
    return image[window], None if mask is None else mask[window]


def augment_pair(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random flips and 90-degree rotations applied alike to a slice and its mask.

    Rotations by 90/270 degrees are used only on square inputs, so the output shape always
    equals the input shape (the patch-grid arithmetic stays valid).
    """
    square = image.shape[0] == image.shape[1]
    k = int(rng.integers(0, 4)) if square else 2 * int(rng.integers(0, 2))
    flip = bool(rng.integers(0, 2))

    def apply(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k)
        return np.ascontiguousarray(a[:, ::-1] if flip else a)

    return apply(image), None if mask is None else apply(mask)


def select_test_slices(n_total: int, n_keep: int | None) -> list[int] | None:
    """``n_keep`` evenly spaced positions out of ``n_total`` (None or >= n_total keeps all)."""
    if n_keep is None or n_keep >= n_total:
        return None
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n_keep)})


def center_region(array: np.ndarray, size: int | None) -> np.ndarray:
    """Centre ``size`` x ``size`` region of the last two axes (all of it when None or larger)."""
    if size is None:
        return array
    h, w = array.shape[-2:]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    return array[..., top : top + s_h, left : left + s_w]
