"""Reading Lucchi++ and VNC from their official folder layouts as (Z, H, W) volumes.

Each dataset is kept in the folder layout of its official archive under one *data root*
(:mod:`emlib.data.layout` says where that is and checks the layout). This module pairs each
split's images with their labels, decodes them (:mod:`emlib.data.decode`), checks that each is the
official slice (:mod:`emlib.data.integrity`) and stacks them into a :class:`Volume`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emlib.data.decode import decode_image, decode_label, pixel_sha256, to_mask, volume_sha256
from emlib.data.integrity import SliceFacts, examine, judge, save_checks
from emlib.data.layout import data_root, dataset_dir, fix_hint, modified_allowed
from emlib.data.pairing import check_pairing, slice_pairs
from emlib.data.sources import get_source
from emlib.errors import ConfigError, ShapeError

__all__ = [
    "Volume",
    "data_fingerprint",
    "decode_image",
    "decode_label",
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


# ----------------------------------------------------------------------------- fingerprint


def _examine_all(name: str, files: list[tuple[Path, bool]], hint: str) -> dict[Path, SliceFacts]:
    """:func:`~emlib.data.integrity.examine` of every (path, is_label), on a few threads (decoders release the GIL).

    The first file in the given order that fails raises; files not started yet are skipped.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))
    try:
        facts = pool.map(lambda job: examine(job[0], hint, name=name, label=job[1]), files)
        return dict(zip((path for path, _ in files), facts))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def data_fingerprint(
    name: str, split: str, *, root: str | os.PathLike[str] | None = None, allow_modified: bool | None = None,
) -> str:
    """SHA-256 of one split's files (official name and bytes of every image and label): equal only for equal data.

    Checks, before any work, every file a run reads from the split: the layout as :func:`read_volume`
    does (missing folders or labels, stray files, paths that are not regular files), that each file
    decodes (8-bit, labels in their dataset's encoding, one shape), and that each is the official
    slice (:mod:`emlib.data.integrity`), refusing files that hold the official content of another name
    (swapped ``Train_*``/``Test_*`` folders). What each file holds is measured once and remembered
    while it keeps its size, time and inode (also on disk), so a second call costs a ``stat`` per file.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
    split : str
    root : path, default=None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.
    allow_modified : bool, default=None
        Accept slices that are not the official ones; None reads ``$EMLIB_ALLOW_MODIFIED_DATA``.

    Returns
    -------
    str
        64 hex digits; ``modified:`` and 64 hex digits when some slice is not the official one.

    Raises
    ------
    DataError
        Missing, misplaced, undecodable or (unless allowed) modified files.
    ShapeError
        Slices of one split differ in shape, or a label's shape differs from its image's.
    """
    pairs = slice_pairs(name, split, root)
    folder, hint = dataset_dir(name, root), fix_hint(name, root)
    allow = modified_allowed(allow_modified)
    jobs = [(image, label) for _, image, label in pairs]
    try:
        found = _examine_all(name, [(path, is_label) for image, label in jobs
                                    for path, is_label in ((image, False), (label, True)) if path is not None], hint)
    finally:
        save_checks()
    digest, modified, shapes = hashlib.sha256(), False, set()
    for image, label in jobs:
        shape = None
        for path in (image, label):
            if path is None:
                continue
            facts, rel = found[path], path.relative_to(folder).as_posix()
            if shape is not None and facts.shape != shape:
                raise ShapeError(f"mask {path} has shape {facts.shape} but image {image} has {shape}; "
                                 "replace the mismatched file with the official one")
            modified |= not judge(name, folder, rel, facts, hint, allow=allow)
            shape = facts.shape
            digest.update(f"{rel}\t{facts.sha256}\n".encode())
        shapes.add(shape)
    if len(shapes) > 1:
        raise ShapeError(f"{name} {split} mixes slice shapes {sorted(shapes)}; every slice must have one shape ({hint})")
    return ("modified:" if modified else "") + digest.hexdigest()


# ----------------------------------------------------------------------------- reading


def read_volume(
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    slices: Sequence[int] | int | None = None,
    with_masks: bool = True,
    pairing: str = "correct",
    allow_modified: bool | None = None,
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
    allow_modified : bool, default=None
        Accept slices that are not the official ones (:mod:`emlib.data.integrity`); None reads
        ``$EMLIB_ALLOW_MODIFIED_DATA``.

    Returns
    -------
    Volume
        ``images`` of shape (Z, H, W) uint8 and ``masks`` of shape (Z, H, W) bool (or None).

    Raises
    ------
    ConfigError
        Unknown dataset or split.
    DataError
        Data missing, wrong layout, an unreadable file, a label outside its encoding, or (unless
        allowed) a slice that is not the official one.
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
    allow = modified_allowed(allow_modified)
    src = get_source(name)
    images, masks = [], []
    try:
        for slice_id, image_path, mask_path in pairs:
            image = decode_image(image_path, hint)
            facts = examine(image_path, hint, arrays=(image, None))
            judge(name, folder, image_path.relative_to(folder).as_posix(), facts, hint, allow=allow)
            images.append(image)
            if with_masks and mask_path is not None:
                raw, mask = decode_label(mask_path, src.labels, hint, title=src.title)
                if mask.shape != image.shape:
                    raise ShapeError(
                        f"mask {mask_path} has shape {mask.shape} but image {image_path} has {image.shape}; "
                        "replace the mismatched file with the official one"
                    )
                facts = examine(mask_path, hint, name=name, label=True, arrays=(raw, mask))
                judge(name, folder, mask_path.relative_to(folder).as_posix(), facts, hint, allow=allow)
                masks.append(mask)
    finally:
        save_checks()
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
                   pairing: str, allow: bool) -> Volume:
    return read_volume(name, split, root=root, slices=slices, pairing=pairing, allow_modified=allow)


def load_volume(
    name: str, split: str, *, root: str | os.PathLike[str] | None = None, slices: Sequence[int] | int | None = None,
    pairing: str = "correct", allow_modified: bool | None = None,
) -> Volume:
    """:func:`read_volume` with an in-memory cache of the last few volumes (arrays are read-only).

    The cache is keyed on :func:`data_fingerprint`, so a file changed on disk is read again; that
    also checks every slice of the split before any is read (:mod:`emlib.data.integrity`).
    """
    key = slices if slices is None or isinstance(slices, int) else tuple(slices)
    check_pairing(pairing)
    allow = modified_allowed(allow_modified)
    fingerprint = data_fingerprint(name, split, root=root, allow_modified=allow)
    return _cached_volume(name, split, str(data_root(root)), key, fingerprint, pairing, allow)
