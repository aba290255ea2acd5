"""The files of a run folder and of the caches: written atomically, read back without unpickling.

Every file emlib writes is first written under a hidden temporary name in the same folder, one
per process and write (``.NAME.<pid>-<n>.incomplete``), and takes its final name in one
``os.replace``, so an interrupted process never leaves a half-written file under a name emlib
reads, and two processes writing the same file never share a temporary one. A write that finds no
room (a full disk, a quota, a file-size limit) keeps the previous file and raises
:class:`~emlib.errors.StorageError` naming the folder and the space needed. A run folder is made
by one process at a time (:func:`run_lock`). Tensors are stored as safetensors and everything else as JSON (the
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
``.lock``                  while a process makes the run: its ``flock``, naming the process
=========================  ==================================================================
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import re
import resource
import shutil
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from emlib.config import RunConfig
from emlib.errors import ConfigError, DataError, StorageError, short_reason
from emlib.paths import env_path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS: runs are not locked
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ADAPTER",
    "CHECKPOINT",
    "CONFIG",
    "ERROR_LOG",
    "HISTORY",
    "LEGACY_PICKLES",
    "LOCK",
    "METRICS",
    "MODEL",
    "RESULTS",
    "file_sha256",
    "load_state",
    "read_history",
    "read_json",
    "read_run_config",
    "run_lock",
    "save_state",
    "write_atomic",
    "write_json",
    "write_table",
    "ENV_CACHE",
    "user_cache_file",
]

CONFIG = "config.json"
CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
ADAPTER = "adapter.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
RESULTS = "results.csv"
ERROR_LOG = "error.log"  # why a run failed (emlib.grid.launch.run_status reports it)
LOCK = ".lock"
#: Pickle files that emlib before issue 13 wrote into run folders; they are never read.
LEGACY_PICKLES: tuple[str, ...] = ("checkpoint.pt", "model.pt", "adapter.pt")

_STATE_FORMAT = "emlib-state-v1"


# ----------------------------------------------------------------------------- writing


_WRITES = itertools.count()  # numbers the temporary files of this process
#: Errors of a write that found no room: a full disk, a full quota, a file-size limit (``ulimit -f``).
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _temporary_name(path: Path) -> Path:
    """The hidden name ``path`` is written under before it takes its name: one per process and write."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_WRITES)}.incomplete")


def write_atomic(path: str | os.PathLike[str], write: Callable[[Path], object], *, size: int | None = None) -> Path:
    """Call ``write(tmp)`` on a hidden name beside ``path``, then move it to ``path`` in one step.

    Parameters
    ----------
    path : path-like
        The final name; its folder must exist.
    write : callable
        Writes the whole file to the path it is given.
    size : int, default=None
        The file's size in bytes, if known: named when there is no room for it.

    Returns
    -------
    Path
        ``path``. When ``write`` fails, the temporary file is removed and ``path`` is untouched.

    Raises
    ------
    StorageError
        No room for the file (a full disk or quota, a file-size limit): one sentence naming the
        folder and the space needed; the previous file under ``path``, if any, is kept.
    """
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        code = _no_room(err)
        written = tmp.stat().st_size if code is not None and tmp.is_file() else 0
        tmp.unlink(missing_ok=True)
        if code is None:
            raise
        raise _storage_error(path, code, size, written) from None
    return path


def _no_room(err: BaseException) -> int | None:
    """The errno of a write that found no room, also when safetensors wraps it (``IoError(Os { code: 28, ...``)."""
    if isinstance(err, OSError):
        return err.errno if err.errno in _NO_ROOM else None
    match = re.search(r"\b(?:code: |os error )(\d+)", str(err))
    return int(match.group(1)) if match and int(match.group(1)) in _NO_ROOM else None


def _bytes(n: float) -> str:
    """``n`` bytes in words: 512 bytes, 3.2 kB, 14.0 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _storage_error(path: Path, code: int, size: int | None, written: int) -> StorageError:
    need = f"about {_bytes(size)}" if size else f"more than the {_bytes(written)} written"
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was left"
    again = "run the same command again, which resumes where it stopped"
    if code == errno.EFBIG:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft == resource.RLIM_INFINITY:
            return StorageError(f"{path.name} ({need}) is larger than the file system of {path.parent} allows ({kept}); "
                                f"choose another --out (out_dir) on another file system and {again}")
        return StorageError(
            f"{path.name} ({need}) is larger than this process's file-size limit of {_bytes(soft)} (`ulimit -f`) lets it "
            f"write in {path.parent} ({kept}); raise it with `ulimit -f unlimited` and {again}"
        )
    free = shutil.disk_usage(path.parent).free
    full = "the disk quota" if code == errno.EDQUOT else "the disk"
    return StorageError(
        f"{full} of {path.parent} has no room for {path.name} ({need} needed, {_bytes(free)} free; {kept}); "
        f"free that much space there (or choose another --out, out_dir) and {again}"
    )


def _json_default(value: object) -> object:
    """numpy scalars -> Python scalars (full float precision), anything else -> str."""
    return value.item() if hasattr(value, "item") else str(value)


def write_json(path: str | os.PathLike[str], data: object) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy scalars become Python numbers)."""
    return _write_text(path, json.dumps(data, indent=2, default=_json_default))


def write_table(path: str | os.PathLike[str], frame: Any, *, records_json: bool = False) -> Path:
    """Write a DataFrame as CSV (or, with ``records_json``, as a JSON list of rows), atomically."""
    return _write_text(path, frame.to_json(orient="records", indent=2) if records_json else frame.to_csv(index=False))


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    data = text.encode("utf-8")
    return write_atomic(path, lambda tmp: tmp.write_bytes(data), size=len(data))


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
    size = sum(t.numel() * t.element_size() + 64 for t in tensors.values()) + len(meta["state"])  # + the header
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta), size=size)


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


# ----------------------------------------------------------------------------- one process per run


@contextmanager
def run_lock(
    run_dir: str | os.PathLike[str], *, wait: bool = True, on_busy: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the lock of a run folder (an ``flock`` on ``run_dir/.lock``, removed on release) while the block runs.

    Parameters
    ----------
    run_dir : path-like
    wait : bool, default=True
        When another process holds the lock: wait for it (True) or yield False at once (False).
    on_busy : callable, default=None
        Called with the holder (``pid <n> on <host>``) when another process holds the lock.

    Yields
    ------
    bool
        True while this process holds the lock (leftover temporary files of killed writers in
        ``run_dir`` are removed first: nobody else writes there); False when ``wait`` is False and
        another process holds it. The lock is an ``flock``: the system releases it when its
        process ends, however it ends.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path, told = run_dir / LOCK, False
    while True:  # the holder removes the lock file when it is done: lock the file that is there, not one removed
        handle = open(path, "a+")  # noqa: SIM115 - closed below, after the block
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                if on_busy is not None and not told:
                    on_busy(holder)
                told = True
                if not wait:
                    handle.close()
                    yield False
                    return
                fcntl.flock(handle, fcntl.LOCK_EX)
        if _same_file(handle, path):
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        for leftover in run_dir.glob(".*.incomplete"):
            leftover.unlink(missing_ok=True)
        yield True
    finally:
        path.unlink(missing_ok=True)  # while still held: a run folder keeps no lock file once its run is made
        handle.close()


def _same_file(handle: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


ENV_CACHE = "EMLIB_CACHE_DIR"  # where emlib keeps what it measured once (slice checks, weights hashes)


def user_cache_file(name: str) -> Path:
    """The file ``name`` in ``$EMLIB_CACHE_DIR``, else in the user cache folder (``pooch.os_cache("emlib")``).

    Examples
    --------
    >>> import os
    >>> os.environ["EMLIB_CACHE_DIR"] = "/tmp/emlib-cache"
    >>> user_cache_file("slice-checks.json").as_posix()
    '/tmp/emlib-cache/slice-checks.json'
    >>> del os.environ["EMLIB_CACHE_DIR"]
    """
    folder = env_path(ENV_CACHE)
    if folder is None:
        import pooch

        folder = pooch.os_cache("emlib")
    return Path(folder).expanduser() / name
