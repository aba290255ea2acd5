"""Backbone feature cache for frozen runs: compute each input's features once, reuse them every epoch.

A frozen backbone maps the same pixels to the same features, so head training only needs the
backbone once per item. :class:`FeatureCache` stores features by item index under a key that
names everything they depend on (backbone, the content of the weights and of the data,
preprocessing); in memory, or on disk (one ``.safetensors`` file per key, written atomically) so a
second run with the same key starts warm. A disk copy that cannot be read (truncated, or not a
safetensors file) is reported with a warning naming it and rebuilt; nothing is ever unpickled. A
disk copy that finds no room (a full disk, a file-size limit) is not written, with a warning that
names the space needed: the features stay in memory and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from emlib.errors import DataError, StorageError
from emlib.runfiles import load_state, save_state

__all__ = ["FeatureCache", "cache_key"]


def cache_key(**parts: Any) -> str:
    """Stable SHA-256 key of keyword parts (JSON-encoded, sorted), e.g. backbone, weights, data."""
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
                saved = load_state(self.path, fix="it is rebuilt")
                if saved.get("key") != key or not isinstance(saved.get("features"), dict):
                    raise DataError(f"{self.path} holds the features of another key; it is rebuilt")
                self.store = {int(i): f for i, f in saved["features"].items()}
            except DataError as err:
                warnings.warn(f"feature cache {err}", RuntimeWarning, stacklevel=2)
                self._dirty = True  # the next save() replaces the damaged file

    def __len__(self) -> int:
        return len(self.store)

    def get(self, indices: Sequence[int], inputs: Callable[[list[int]], torch.Tensor], device: torch.device) -> torch.Tensor:
        """Features (B, C, h, w) float32 on ``device`` for ``indices``.

        ``inputs(missing_indices)`` must return the backbone inputs of the items not cached yet;
        it is not called when every item is cached.
        """
        missing = [i for i in indices if i not in self.store]
        self.hits += len(indices) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                feats = self.compute(inputs(missing).to(device))
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
