"""Decoding one slice file: grey images to uint8 arrays, labels to bool masks by their dataset's encoding.

:func:`decode_image` reads a TIFF (tifffile) or any image Pillow reads; :func:`decode_label` turns a
label file into a mask as :class:`~emlib.data.sources.LabelEncoding` declares it (0/255 or 0/1, any
other value set refused with the values found). :func:`pixel_sha256` is the checksum convention of
the packaged registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from emlib.data.sources import LabelEncoding
from emlib.errors import DataError

__all__ = ["decode_image", "decode_label", "pixel_sha256", "to_mask", "volume_sha256"]


def decode_image(path: Path, hint: str = "replace it with the official file") -> np.ndarray:
    """Decode one image file to a uint8 array in its own mode (RGBA stays (H, W, 4)).

    Parameters
    ----------
    path : Path
        A ``.tif``/``.tiff`` (read with tifffile) or any image Pillow reads.
    hint : str, default="replace it with the official file"
        End of the error sentence.

    Returns
    -------
    ndarray of dtype uint8
        (H, W) for grey images, (H, W, C) for colour ones.

    Raises
    ------
    DataError
        The file cannot be decoded, or its pixels are not uint8.
    """
    from PIL import Image

    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                if img.mode == "1":
                    img = img.convert("L")
                arr = np.asarray(img)
    except Exception as err:  # noqa: BLE001 - any decoder failure means the same to the user
        detail = (str(err).splitlines() or ["no detail"])[0].replace(f"'{path}'", "the file")
        raise DataError(f"cannot decode {path} ({type(err).__name__}: {detail}); {hint}") from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path} holds {arr.dtype} pixels, expected uint8 (8-bit); {hint}")
    return arr


def _values(counts: np.ndarray) -> str:
    """The pixel values present, in words: ``0, 100`` or ``0, 1, 2, ... (40 values)``."""
    present = np.flatnonzero(counts).tolist()
    shown = ", ".join(map(str, present[:6]))
    return shown if len(present) <= 6 else f"{shown}, ... ({len(present)} values)"


def decode_label(
    path: Path, encoding: LabelEncoding = LabelEncoding(), hint: str = "replace it with the official file", *,
    title: str = "the",
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a label file and read its mask as ``encoding`` declares.

    Background is 0; foreground is 255 (the official files) or 1 (a common export), read alike. Any
    other value set is refused naming the values found, except for up to ``encoding.stray_fraction``
    of the pixels with other values (anti-aliasing), which are foreground above half the foreground value (127).

    Parameters
    ----------
    path : Path
        The label file.
    encoding : LabelEncoding, default=LabelEncoding()
        The dataset's (:attr:`~emlib.data.sources.DatasetSource.labels`).
    hint : str
        End of the error sentence.
    title : str, default="the"
        Dataset name for the sentence (``Lucchi++``).

    Returns
    -------
    raw : ndarray of dtype uint8
        The decoded file, (H, W) or (H, W, C).
    mask : ndarray of shape (H, W), dtype bool
        Foreground.

    Raises
    ------
    DataError
        The file cannot be decoded, is not 8-bit, or holds other values than its encoding allows.
    """
    raw = decode_image(path, hint)
    arr = raw[..., encoding.channel] if raw.ndim == 3 else raw
    counts = np.bincount(arr.ravel(), minlength=256)
    if not counts[2:].any():  # 0/1 (or all one value of them)
        return raw, arr == 1
    fg = encoding.foreground
    stray = int(arr.size - counts[0] - counts[fg])
    if stray > encoding.stray_fraction * arr.size:
        raise DataError(
            f"label {path} holds the pixel values {_values(counts)}, but {title} labels must be background 0 and "
            f"foreground {encoding.foreground} (official) or 1, so export it with those two values ({hint})"
        )
    return raw, arr > fg // 2


def to_mask(arr: np.ndarray) -> np.ndarray:
    """Label image (H, W) or (H, W, C) uint8 -> bool mask, channel 0, ``> 127`` (the official 0/255 files)."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr > 127


def pixel_sha256(arr: np.ndarray) -> str:
    """SHA-256 of the C-order bytes of ``arr`` (the checksum convention of the staged README).

    Examples
    --------
    >>> pixel_sha256(np.zeros((2, 2), np.uint8))[:12]
    'df3f619804a9'
    """
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def volume_sha256(arr: np.ndarray) -> str:
    """SHA-256 of a whole (Z, H, W) volume; bool masks hash as {0, 1} uint8."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return pixel_sha256(arr)
