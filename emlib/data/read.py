"""Reading Lucchi++ and VNC from their official folder layouts as (Z, H, W) volumes.

Each dataset is kept in the folder layout of its official archive under one *data root*
(:mod:`emlib.data.layout` says where that is and checks the layout). This module pairs each
split's images with their labels, decodes them and stacks them into a :class:`Volume`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emlib.data.layout import data_root, dataset_dir, fix_hint
from emlib.data.pairing import check_pairing, slice_pairs
from emlib.data.sources import get_source, pixel_registry
from emlib.errors import ConfigError, DataError, ShapeError
from emlib.runfiles import file_sha256

__all__ = [
    "Volume",
    "data_fingerprint",
    "decode_image",
    "load_volume",
    "pixel_sha256",
    "read_volume",
    "to_mask",
    "volume_sha256",
]

@dataclass(frozen=True)
class Volume:
    """A stack of EM slices with its mitochondria masks.

    Attributes
    ----------
    dataset, split : str
        Where it comes from (``lucchi_pp``/``vnc``; ``train``/``test``/...).
    images : ndarray of shape (Z, H, W), dtype uint8
        Grey values, read-only.
    masks : ndarray of shape (Z, H, W), dtype bool, or None
        Mitochondria foreground, read-only; None for unlabelled stacks (VNC stack2).
    slice_ids : tuple of str
        File stem of each slice (``mask0002``, ``03``), in stack order.
    voxel_size_nm : tuple of float
        (z, y, x) voxel size in nanometres.
    """

    dataset: str
    split: str
    images: np.ndarray
    masks: np.ndarray | None
    slice_ids: tuple[str, ...]
    voxel_size_nm: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, H, W) of the stack."""
        return tuple(self.images.shape)  # type: ignore[return-value]

    @property
    def foreground_fraction(self) -> float:
        """Fraction of mask pixels that are foreground (nan when unlabelled)."""
        return float("nan") if self.masks is None else float(self.masks.mean())

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ----------------------------------------------------------------------------- decoding


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
        raise DataError(
            f"cannot decode {path} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
            f"{hint}"
        ) from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path} holds {arr.dtype} pixels, expected uint8; {hint}")
    return arr


def to_mask(arr: np.ndarray) -> np.ndarray:
    """Label image (H, W) or (H, W, C) uint8 -> bool mask, channel 0, ``> 127``."""
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


# ----------------------------------------------------------------------------- pairing

@lru_cache(maxsize=None)
def _official_paths(name: str) -> dict[str, str]:
    """Pixel or file SHA-256 of every upstream image and label -> its path in the official layout."""
    out = {}
    for rel, (pixels, file_sha) in pixel_registry(name).items():
        out[pixels] = out[file_sha] = rel
    return out


def _check_place(name: str, folder: Path, rel: str, sha: str, hint: str) -> None:
    """Refuse a file that holds the official content of another file (swapped splits, renamed slices)."""
    other = _official_paths(name).get(sha)
    if other is None or other == rel:
        return  # the official content for this name, or not official data at all (a synthetic copy)
    here, there = rel.rsplit("/", 1)[0], other.rsplit("/", 1)[0]
    what = (
        f"the folders {here} and {there} are swapped, so rename them back"
        if here != there else f"slices in {here} were renamed, so give every file its official name"
    )
    raise DataError(f"{folder / rel} holds the official pixels of {other}: {what} (or {hint})")


_FIRST_PIXELS: dict[str, str] = {}  # file SHA-256 -> pixel SHA-256 of the first image of a split


def data_fingerprint(name: str, split: str, *, root: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 of one split's files (official name and bytes of every image and label): equal only for equal data.

    Checks the layout as :func:`read_volume` does (missing folders or labels, stray files) and
    refuses files that hold the official content of another name (swapped ``Train_*``/``Test_*``
    folders), all without decoding more than the split's first image. File hashes are remembered
    while the files keep their size and time, so a second call costs a ``stat`` per file.
    """
    pairs = slice_pairs(name, split, root)
    folder, hint = dataset_dir(name, root), fix_hint(name, root)
    digest = hashlib.sha256()
    for _, *paths in pairs:
        for path in paths:
            if path is None:
                continue
            rel, sha = path.relative_to(folder).as_posix(), file_sha256(path)
            _check_place(name, folder, rel, sha, hint)
            digest.update(f"{rel}\t{sha}\n".encode())
    first = pairs[0][1]
    sha = file_sha256(first)
    if sha not in _FIRST_PIXELS:  # a re-encoded official file: its pixels, not its bytes, are in the registry
        _FIRST_PIXELS[sha] = pixel_sha256(decode_image(first, hint))
    _check_place(name, folder, first.relative_to(folder).as_posix(), _FIRST_PIXELS[sha], hint)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading


def read_volume(
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    slices: Sequence[int] | int | None = None,
    with_masks: bool = True,
    pairing: str = "correct",
) -> Volume:
    """Read one split of a dataset as a (Z, H, W) uint8 stack with bool masks.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
        Dataset.
    split : str
        ``train`` or ``test`` (the paper's meaning: Lucchi++ ``Train_*``/``Test_*``; VNC stack1
        without / with :data:`VNC_TEST_SLICES`), plus ``all`` (VNC stack1, 20 slices) and
        ``unlabelled`` (VNC stack2, no masks).
    root : path, default=None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.
    slices : int or sequence of int, default=None
        Keep only these positions in the stack (an int keeps the first ``slices``), e.g. for the
        smoke profile. None reads all.
    with_masks : bool, default=True
        Decode the masks too (False skips them, e.g. for embeddings).
    pairing : {'correct', 'published'}, default='correct'
        Which labels the images get: their own, or those the authors' published script gives them
        (:mod:`emlib.data.pairing`; only Lucchi++ labels move).

    Returns
    -------
    Volume
        ``images`` of shape (Z, H, W) uint8 and ``masks`` of shape (Z, H, W) bool (or None).

    Raises
    ------
    ConfigError
        Unknown dataset or split.
    DataError
        Data missing, wrong layout, or an unreadable file.
    ShapeError
        An image and its mask differ in shape, or slices differ in shape.
    """
    pairs = slice_pairs(name, split, root, pairing=pairing)
    folder, hint = dataset_dir(name, root), fix_hint(name, root)
    if slices is not None:
        if isinstance(slices, int):
            pairs = pairs[:slices]
        else:
            try:
                pairs = [pairs[i] for i in slices]
            except IndexError:
                raise ConfigError(
                    f"slices={list(slices)} is out of range for {name} {split}, which has {len(pairs)} slices"
                ) from None
    images, masks = [], []
    for slice_id, image_path, mask_path in pairs:
        image = decode_image(image_path, hint)
        if image.ndim != 2:
            raise ShapeError(f"{image_path} has shape {image.shape}, expected a 2-D grey slice")
        _check_place(name, folder, image_path.relative_to(folder).as_posix(), pixel_sha256(image), hint)
        images.append(image)
        if with_masks and mask_path is not None:
            mask = to_mask(decode_image(mask_path, hint))
            if mask.shape != image.shape:
                raise ShapeError(
                    f"mask {mask_path} has shape {mask.shape} but image {image_path} has {image.shape}; "
                    "replace the mismatched file with the official one"
                )
            masks.append(mask)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ShapeError(f"{name} {split} mixes slice shapes {sorted(shapes)}; every slice must have one shape")
    stack = np.stack(images)
    stack.flags.writeable = False
    mask_stack = None
    if masks:
        mask_stack = np.stack(masks)
        mask_stack.flags.writeable = False
    return Volume(
        dataset=name,
        split=split,
        images=stack,
        masks=mask_stack,
        slice_ids=tuple(p[0] for p in pairs),
        voxel_size_nm=get_source(name).voxel_size_nm,
    )


@lru_cache(maxsize=4)
def _cached_volume(name: str, split: str, root: str, slices: tuple[int, ...] | int | None, fingerprint: str,
                   pairing: str) -> Volume:
    return read_volume(name, split, root=root, slices=slices, pairing=pairing)


def load_volume(
    name: str, split: str, *, root: str | os.PathLike[str] | None = None, slices: Sequence[int] | int | None = None,
    pairing: str = "correct",
) -> Volume:
    """:func:`read_volume` with an in-memory cache of the last few volumes (arrays are read-only).

    The cache is keyed on :func:`data_fingerprint`, so a file changed on disk is read again.
    """
    key = slices if slices is None or isinstance(slices, int) else tuple(slices)
    check_pairing(pairing)
    fingerprint = data_fingerprint(name, split, root=root)
    return _cached_volume(name, split, str(data_root(root)), key, fingerprint, pairing)
