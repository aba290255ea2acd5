"""The feature store of frozen backbones: each input's tokens computed once, reused by every run that sees them.

A frozen backbone maps the same pixels to the same tokens, so head training and the evaluation of a
frozen run only need the backbone once per input. :class:`FeatureCache` stores tokens by item index
under a key that names everything they depend on (:func:`cache_key`: the backbone, the content of
the weights and of the data, the input transform or remedy, the geometry of the items: tile or
window size, stride, long side); in memory, or on disk (one ``.safetensors`` file per key, written
atomically) so a second run or process with the same key starts warm. :func:`feature_store` hands
every run of one process the same store for a key (:data:`SHARED_STORES` of them are kept), so the
second frozen run of a backbone on the same data, test slices included, runs no backbone pass.

A disk copy that cannot be read (truncated, not a safetensors file, another key's, or entries that
are not token maps of the store's type) is reported with a warning naming it and rebuilt; nothing is
ever unpickled. A disk copy that finds no room (a full disk, a file-size limit) is not written, with
a warning that names the space needed: the tokens stay in memory and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from emlib.errors import DataError, StorageError
from emlib.runfiles import load_state, save_state

__all__ = ["FeatureCache", "SHARED_STORES", "cache_key", "clear_feature_stores", "feature_store"]

#: How many stores (keys) :func:`feature_store` keeps in one process; the least recently used goes first.
SHARED_STORES = 8
_STORES: OrderedDict[str, FeatureCache] = OrderedDict()


def cache_key(**parts: Any) -> str:
    """Stable SHA-256 key of keyword parts (JSON-encoded, sorted), e.g. backbone, weights, data.

    Examples
    --------
    >>> cache_key(backbone="dinov2_vits14", tile=56) == cache_key(tile=56, backbone="dinov2_vits14")
    True
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """Features of indexed inputs, computed on first use.

    Parameters
    ----------
    compute : callable
        Maps a batch of inputs (B, 3, H, W) to features (B, C, h, w); called under no_grad.
    key : str
        What the features depend on (see :func:`cache_key`).
    directory : path, default=None
        Folder for a disk copy (``<directory>/<key>.safetensors``); None keeps the cache in memory only.
    dtype : torch.dtype, default=torch.float16
        Storage type (halves memory; features are cast back to float32 when read).

    Attributes
    ----------
    hits, misses : int
        Items served from the cache / computed by the backbone.
    """

    def __init__(
        self,
        compute: Callable[[torch.Tensor], torch.Tensor],
        key: str,
        *,
        directory: str | os.PathLike[str] | None = None,
        dtype: torch.dtype = torch.float16,
    ) -> None:
        self.compute, self.key, self.dtype = compute, key, dtype
        self.path = None if directory is None else Path(directory) / f"{key}.safetensors"
        self.store: dict[int, torch.Tensor] = {}
        self.hits = self.misses = 0
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                self.store = self._read(self.path)
            except DataError as err:
                warnings.warn(f"feature cache {err}", RuntimeWarning, stacklevel=2)
                self._dirty = True  # the next save() replaces the damaged file

    def _read(self, path: Path) -> dict[int, torch.Tensor]:
        """The entries of a disk copy, each checked to be a (C, h, w) token map of the store's type (else DataError)."""
        saved = load_state(path, fix="it is rebuilt")
        if saved.get("key") != self.key or not isinstance(saved.get("features"), dict):
            raise DataError(f"{path} holds the features of another key; it is rebuilt")
        store = {}
        for index, feats in saved["features"].items():
            if not (str(index).isdigit() and isinstance(feats, torch.Tensor) and feats.ndim == 3 and feats.dtype == self.dtype):
                raise DataError(f"{path} holds an entry {index!r} that is not a (C, h, w) {self.dtype} token map; it is rebuilt")
            store[int(index)] = feats
        return store

    def __len__(self) -> int:
        return len(self.store)

    def __contains__(self, index: int) -> bool:
        return index in self.store

    def get(
        self, indices: Sequence[int], inputs: Callable[[list[int]], torch.Tensor], device: torch.device,
        *, compute: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Features (B, C, h, w) float32 on ``device`` for ``indices``.

        ``inputs(missing_indices)`` must return the backbone inputs of the items not cached yet;
        it is not called when every item is cached. ``compute`` replaces the store's own for the
        items computed now (a run's backbone, in a store shared by the runs of one process).
        """
        missing = list(dict.fromkeys(i for i in indices if i not in self.store))
        self.hits += len(indices) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                feats = (compute or self.compute)(inputs(missing).to(device))
            for i, f in zip(missing, feats):
                self.store[i] = f.detach().to("cpu", self.dtype)
            self._dirty = True
        return torch.stack([self.store[i] for i in indices]).to(device, torch.float32)

    def save(self) -> None:
        """Write the disk copy (atomically) if anything new was computed; without room for it, warn and keep it in memory."""
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            save_state(self.path, {"key": self.key, "features": self.store})
        except StorageError as err:
            warnings.warn(f"feature cache not saved: {err}", RuntimeWarning, stacklevel=2)
            return
        self._dirty = False


def feature_store(
    compute: Callable[[torch.Tensor], torch.Tensor], key: str, *, directory: str | os.PathLike[str] | None = None,
) -> FeatureCache:
    """The store of ``key`` that every run of this process shares (made, or read from ``directory``, on first use).

    The key must name everything the tokens depend on (:func:`cache_key`), so a store is never stale;
    ``compute`` is the backbone of the run that asks (used by :meth:`FeatureCache.get` for new items).
    A store asked for with a ``directory`` is written there by :meth:`FeatureCache.save`.

    Examples
    --------
    >>> conv = torch.nn.Conv2d(3, 4, 2, stride=2)
    >>> feature_store(conv, "doc") is feature_store(conv, "doc")
    True
    """
    name = key if directory is None else f"{key}@{Path(directory).resolve()}"
    store = _STORES.get(name)
    if store is None:
        store = _STORES[name] = FeatureCache(compute, key, directory=directory)
        while len(_STORES) > SHARED_STORES:
            _STORES.popitem(last=False)
    _STORES.move_to_end(name)
    store.compute = compute
    return store


def clear_feature_stores() -> None:
    """Forget every store :func:`feature_store` holds in this process (disk copies stay)."""
    _STORES.clear()
