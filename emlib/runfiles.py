"""The files of a run folder and of the caches: written atomically, read back without unpickling.

Every file emlib writes is first written under a hidden temporary name in the same folder and
takes its final name in one ``os.replace``, so an interrupted process never leaves a half-written
file under a name emlib reads. Tensors are stored as safetensors and everything else as JSON (the
metadata of a safetensors file included): reading a run folder or a cache never unpickles, so a
crafted file cannot run code. A file that cannot be read raises :class:`~emlib.errors.DataError`
naming the file and the fix the caller gives; caches catch it and rebuild.

A run folder holds:

=========================  ==================================================================
``config.json``            the :class:`~emlib.config.RunConfig`
``checkpoint.safetensors``  trainable tensors, optimiser state and history, after every epoch
``model.safetensors``      the trained tensors of the finished run (written last)
``adapter.safetensors``    the LoRA adapter (LoRA runs)
``history.csv``            one row per epoch
``metrics.json``           the test rows (:mod:`emlib.grid.runner`), and ``results.csv``
``error.log``              why the run failed (a diverged loss, a job's traceback): no ``metrics.json``
=========================  ==================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from emlib.config import RunConfig
from emlib.errors import ConfigError, DataError, short_reason

__all__ = [
    "ADAPTER",
    "CHECKPOINT",
    "CONFIG",
    "ERROR_LOG",
    "HISTORY",
    "LEGACY_PICKLES",
    "METRICS",
    "MODEL",
    "RESULTS",
    "file_sha256",
    "load_state",
    "read_history",
    "read_json",
    "read_run_config",
    "save_state",
    "write_atomic",
    "write_json",
    "write_table",
]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
ADAPTER = "adapter.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
RESULTS = "results.csv"
ERROR_LOG = "error.log"  # why a run failed (emlib.grid.launch.run_status reports it)
#: Pickle files that emlib before issue 13 wrote into run folders; they are never read.
LEGACY_PICKLES: tuple[str, ...] = ("checkpoint.pt", "model.pt", "adapter.pt")

_STATE_FORMAT = "emlib-state-v1"


# ----------------------------------------------------------------------------- writing


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a hidden name beside ``path``, then move it to ``path`` in one step.

    Parameters
    ----------
    path : path-like
        The final name; its folder must exist.
    write : callable
        Writes the whole file to the path it is given.

    Returns
    -------
    Path
        ``path``. When ``write`` fails, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.incomplete")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _json_default(value: object) -> object:
    """numpy scalars -> Python scalars (full float precision), anything else -> str."""
    return value.item() if hasattr(value, "item") else str(value)


def write_json(path: str | os.PathLike[str], data: object) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy scalars become Python numbers)."""
    text = json.dumps(data, indent=2, default=_json_default)
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_table(path: str | os.PathLike[str], frame: Any, *, records_json: bool = False) -> Path:
    """Write a DataFrame as CSV (or, with ``records_json``, as a JSON list of rows), atomically."""
    if records_json:
        return write_atomic(path, lambda tmp: frame.to_json(tmp, orient="records", indent=2))
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


# ----------------------------------------------------------------------------- reading


def read_json(path: str | os.PathLike[str], *, fix: str) -> Any:
    """The JSON in ``path``; a missing, truncated or foreign file raises DataError ending in ``fix``."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(f"{path} cannot be read ({short_reason(err, limit=120)}); {fix}") from None


def read_run_config(run_dir: str | os.PathLike[str], *, fix: str) -> RunConfig:
    """The :class:`RunConfig` in ``run_dir/config.json``, validated; anything else raises DataError ending in ``fix``."""
    path = Path(run_dir) / CONFIG
    data = read_json(path, fix=fix)
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a run configuration; {fix}")
    try:
        return RunConfig.from_dict(data)
    except ConfigError as err:
        raise DataError(f"{path} is not a valid run configuration ({err}); {fix}") from None


def read_history(path: str | os.PathLike[str], *, fix: str) -> Any:
    """``history.csv`` of a run as a DataFrame (empty when absent); a damaged file raises DataError ending in ``fix``."""
    import pandas as pd

    if not Path(path).is_file():
        return pd.DataFrame(columns=["epoch", "loss", "seconds"])
    try:
        history = pd.read_csv(path)
    except (ValueError, OSError) as err:  # pandas' parser errors are ValueErrors
        raise DataError(f"{path} cannot be read ({short_reason(err, limit=120)}); {fix}") from None
    if not {"epoch", "loss"} <= set(history.columns):
        raise DataError(f"{path} is not a training history (it has no epoch and loss columns); {fix}")
    return history


_SHA256: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, remembered for as long as its size and modification time stay the same."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


# ----------------------------------------------------------------------------- state files


def _encode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of nested state; tensors go to ``tensors`` and leave ``{"$tensor": key}`` behind."""
    if isinstance(node, torch.Tensor):
        key = str(len(tensors))
        tensor = node.detach().to("cpu")
        if not tensor.is_contiguous() or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone(memory_format=torch.contiguous_format)  # a view: safetensors wants its own storage
        tensors[key] = tensor
        return {"$tensor": key}
    if isinstance(node, Mapping):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in node):
            raise TypeError(f"state keys must be str or int, got {sorted(map(repr, node))[:3]}")
        return {"$dict": [[k, _encode(v, tensors)] for k, v in node.items()]}  # keeps int keys (optimizer state)
    if isinstance(node, tuple):
        return {"$tuple": [_encode(v, tensors) for v in node]}
    if isinstance(node, list):
        return [_encode(v, tensors) for v in node]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if hasattr(node, "item"):  # numpy scalars
        return node.item()
    raise TypeError(f"a state file cannot hold a {type(node).__name__}")


def _decode(node: Any, tensors: Mapping[str, torch.Tensor] | None) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "$tensor" in node:
        return None if tensors is None else tensors[node["$tensor"]]
    if "$dict" in node:
        return {k: _decode(v, tensors) for k, v in node["$dict"]}
    if "$tuple" in node:
        return tuple(_decode(v, tensors) for v in node["$tuple"])
    raise ValueError(f"unknown node {sorted(node)[:3]}")


def save_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write nested ``state`` (dicts, lists, tuples, numbers, strings, None, tensors) to one safetensors file.

    Tensors are stored bit for bit; the rest is JSON in the file's metadata. The write is atomic.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": _STATE_FORMAT, "state": json.dumps(_encode(dict(state), tensors))}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_state(path: str | os.PathLike[str], *, fix: str, tensors: bool = True) -> dict[str, Any]:
    """Read a file written by :func:`save_state` without unpickling anything.

    Parameters
    ----------
    path : path-like
    fix : str
        What the user should do when the file cannot be read (ends the DataError's sentence).
    tensors : bool, default=True
        False reads only the metadata (every tensor is then None), e.g. to check a digest first.

    Raises
    ------
    DataError
        The file is missing, truncated, not a safetensors file, or not an emlib state file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("format") != _STATE_FORMAT:
                raise ValueError(f"not an emlib state file (format {meta.get('format')!r})")
            stored = {k: handle.get_tensor(k) for k in handle.keys()} if tensors else None  # noqa: SIM118
            state = _decode(json.loads(meta["state"]), stored)
    except Exception as err:  # noqa: BLE001 - every unreadable file means the same to the user
        raise DataError(f"{path} cannot be read ({short_reason(err, limit=120)}); {fix}") from None
    if not isinstance(state, dict):
        raise DataError(f"{path} does not hold an emlib state; {fix}")
    return state
