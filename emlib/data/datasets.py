"""Plain torch Datasets over EM stacks: random crops for training, tiles for caching, pairs of sources.

Every item is a dict::

    {"image": float32 (3, h, w), "mask": int64 (h, w) in {0, 1}, "domain": int, "slice": int}

``image`` is normalised with the backbone's statistics (grey replicated to 3 channels); ``h`` and
``w`` are multiples of the backbone's patch size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from emlib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    augment_pair,
    check_crop,
    normalize,
    protocol_size,
    random_crop,
    resize_slice,
)
from emlib.errors import ConfigError, ShapeError

__all__ = ["CropDataset", "TileDataset", "PairedDataset", "tile_origins", "pad_collate", "validation_split"]


def _check_stack(images: np.ndarray, masks: np.ndarray | None) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ShapeError(f"images must be a (Z, H, W) uint8 stack, got shape {images.shape} dtype {images.dtype}")
    if masks is not None and masks.shape != images.shape:
        raise ShapeError(f"masks have shape {masks.shape} but images have {images.shape}; they must match")


def _item(
    image: np.ndarray, mask: np.ndarray | None, mean: Sequence[float], std: Sequence[float], domain: int, index: int
) -> dict[str, torch.Tensor | int]:
    target = np.zeros(image.shape, np.int64) if mask is None else mask.astype(np.int64)
    return {
        "image": normalize(np.ascontiguousarray(image), mean, std)[0],
        "mask": torch.from_numpy(target),
        "domain": domain,
        "slice": index,
    }


class CropDataset(Dataset):
    """Random crops of a stack, with flips/rot90, deterministic for a given seed and epoch.

    Parameters
    ----------
    images : ndarray of shape (Z, H, W), dtype uint8
    masks : ndarray of shape (Z, H, W), dtype bool, or None
    crop : int or (int, int)
        Crop size in pixels; each side must be a multiple of ``patch_size``.
    patch_size : int
        The backbone's patch size (14 for DINOv2/OpenCLIP, 16 for DINOv3).
    mean, std : sequence of 3 float, default=ImageNet
        The backbone's normalisation.
    samples_per_epoch : int, default=None
        Length of one epoch; None uses one crop per slice.
    augment : bool, default=True
        Random flips and 90-degree rotations.
    seed : int, default=0
        Item ``i`` of epoch ``e`` is drawn from ``np.random.default_rng((seed, e, i))``, so the
        sequence does not depend on worker count or order of access.
    domain : int, default=0
        Source label carried into each item (used by paired training and diagnostics).
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray | None,
        *,
        crop: int | tuple[int, int],
        patch_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        samples_per_epoch: int | None = None,
        augment: bool = True,
        seed: int = 0,
        domain: int = 0,
    ) -> None:
        _check_stack(images, masks)
        self.images, self.masks = images, masks
        self.crop = check_crop(crop, patch_size, images.shape[1:])
        self.patch_size = patch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.samples_per_epoch = samples_per_epoch or images.shape[0]
        self.augment, self.seed, self.domain = augment, seed, domain
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (call once per epoch before iterating)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        z = int(rng.integers(0, self.images.shape[0]))
        mask = None if self.masks is None else self.masks[z]
        image, mask = random_crop(self.images[z], mask, self.crop, rng)
        if self.augment:
            image, mask = augment_pair(image, mask, rng)
        return _item(image, mask, self.mean, self.std, self.domain, z)


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``; the last one ends at the border.

    Examples
    --------
    >>> tile_origins(10, 4, 4)
    [0, 4, 6]
    """
    if tile > length:
        raise ConfigError(f"tile {tile} is larger than the side {length}; use a smaller tile")
    if stride <= 0:
        raise ConfigError(f"stride must be positive, got {stride}")
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


class TileDataset(Dataset):
    """Fixed tiles of every slice (or whole slices resized as the authors do); no randomness.

    This is the dataset whose backbone features can be cached: the same index always gives the
    same pixels.

    Parameters
    ----------
    images, masks : see :class:`CropDataset`
    tile : int or (int, int) or None
        Tile size (multiple of ``patch_size``). None uses whole slices.
    patch_size : int
    stride : int or None, default=None
        Step between tiles; None means non-overlapping (the last tile is aligned to the border).
    long_edge : int or None, default=None
        Resize each slice first so its long side is ``long_edge`` and each side is floored to a
        multiple of ``patch_size`` (the authors' protocol uses 1022; bicubic images, nearest masks).
    """

    def __init__(
        self,
        images: np.ndarray,
        masks: np.ndarray | None,
        *,
        tile: int | tuple[int, int] | None,
        patch_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        stride: int | None = None,
        long_edge: int | None = None,
        domain: int = 0,
    ) -> None:
        _check_stack(images, masks)
        if long_edge is not None:
            size = protocol_size(*images.shape[1:], long_edge=long_edge, multiple=patch_size)
            images = np.stack([resize_slice(im, size) for im in images])
            if masks is not None:
                masks = np.stack([resize_slice(m, size, is_mask=True) for m in masks])
        self.images, self.masks = images, masks
        height, width = images.shape[1:]
        if tile is None:
            tile = (height // patch_size * patch_size, width // patch_size * patch_size)
        th, tw = check_crop(tile, patch_size, (height, width))
        self.tile = (th, tw)
        rows = tile_origins(height, th, stride or th)
        cols = tile_origins(width, tw, stride or tw)
        self.origins = [(z, r, c) for z in range(images.shape[0]) for r in rows for c in cols]
        self.mean, self.std, self.domain = tuple(mean), tuple(std), domain
        self.patch_size = patch_size

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        z, r, c = self.origins[index]
        th, tw = self.tile
        window = (slice(r, r + th), slice(c, c + tw))
        mask = None if self.masks is None else self.masks[z][window]
        return _item(self.images[z][window], mask, self.mean, self.std, self.domain, z)


class PairedDataset(Dataset):
    """Mix several sources (e.g. Lucchi++ and VNC) into one training set.

    Parameters
    ----------
    sources : mapping of str to Dataset
        Name -> dataset; each item gets ``domain`` = position of its source in this mapping.
    balance : bool, default=False
        False concatenates the sources as they are (bigger sources dominate). True samples them
        equally, as the authors' "paired balance" ablation does: items alternate between the
        sources, each source's indices are reshuffled every epoch, and an epoch ends when the
        smallest source is used up (length = n_sources * min(len)).
    seed : int, default=0
        Seed of the per-epoch shuffles (with ``balance=True``).
    """

    def __init__(self, sources: Mapping[str, Dataset], *, balance: bool = False, seed: int = 0) -> None:
        if len(sources) < 2:
            raise ConfigError(f"paired training needs at least two sources, got {list(sources)}")
        self.names = list(sources)
        self.sources = [sources[name] for name in self.names]
        self.balance, self.seed = balance, seed
        self.epoch = 0
        self._lengths = [len(s) for s in self.sources]  # type: ignore[arg-type]
        if min(self._lengths) == 0:
            raise ConfigError(f"every source needs at least one item, got lengths {dict(zip(self.names, self._lengths))}")
        self._orders = self._shuffle()

    def _shuffle(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        return [rng.permutation(n) for n in self._lengths]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (balanced mode) and forward the epoch to sources that are random."""
        self.epoch = int(epoch)
        self._orders = self._shuffle()
        for source in self.sources:
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def __len__(self) -> int:
        if self.balance:
            return len(self.sources) * min(self._lengths)
        return sum(self._lengths)

    def locate(self, index: int) -> tuple[int, int]:
        """(source position, index inside that source) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self.balance:
            which, k = index % len(self.sources), index // len(self.sources)
            return which, int(self._orders[which][k])
        for which, n in enumerate(self._lengths):
            if index < n:
                return which, index
            index -= n
        raise IndexError(index)  # pragma: no cover

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        which, inner = self.locate(index)
        item = dict(self.sources[which][inner])
        item["domain"] = which
        return item


def pad_collate(items: Sequence[Mapping]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stack items into a batch, zero-padding images and masks to the batch's largest size.

    The authors zero-pad the (normalised) slices of a batch to its largest height and width
    (Lucchi++ 756x1022 next to VNC 1022x1022 in a paired batch); padding goes to the bottom and the
    right, and ``valid`` marks the real pixels so that losses and metrics leave the padding out.

    Parameters
    ----------
    items : sequence of dict
        Each with ``image`` (3, H, W) and ``mask`` (H, W).

    Returns
    -------
    images : Tensor of shape (B, 3, H_max, W_max)
    masks : Tensor of shape (B, H_max, W_max)
    valid : Tensor of shape (B, H_max, W_max), dtype bool, or None
        None when every item already has the batch's size (nothing was padded).

    Examples
    --------
    >>> a = {"image": torch.ones(3, 2, 4), "mask": torch.ones(2, 4, dtype=torch.long)}
    >>> b = {"image": torch.ones(3, 4, 4), "mask": torch.ones(4, 4, dtype=torch.long)}
    >>> images, masks, valid = pad_collate([a, b])
    >>> tuple(images.shape), int(valid[0].sum()), int(valid[1].sum())
    ((2, 3, 4, 4), 8, 16)
    >>> pad_collate([a, a])[2] is None
    True
    """
    sizes = {tuple(it["image"].shape[-2:]) for it in items}
    if len(sizes) == 1:
        return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items]), None
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    first = items[0]
    images = first["image"].new_zeros((len(items), first["image"].shape[0], h, w))
    masks = first["mask"].new_zeros((len(items), h, w))
    valid = torch.zeros((len(items), h, w), dtype=torch.bool)
    for i, it in enumerate(items):
        ih, iw = it["image"].shape[-2:]
        images[i, :, :ih, :iw] = it["image"]
        masks[i, :ih, :iw] = it["mask"]
        valid[i, :ih, :iw] = True
    return images, masks, valid


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Slice positions for training and for validation: ``round(fraction * n)`` held out (at least 1), seeded.

    The authors hold out 10 % of the training slices with a seeded random split (``val_ratio 0.1``,
    ``split_seed 42``); ``fraction=0`` keeps every slice for training.

    Returns
    -------
    train, val : ndarray of int, sorted

    Examples
    --------
    >>> validation_split(10, 0.1, 42)[1].tolist(), len(validation_split(165, 0.1, 42)[1])
    ([5], 16)
    """
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    if n < 2:
        raise ConfigError(f"a validation split needs at least 2 training slices, got {n}; set val_fraction=0 or use more slices")
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
