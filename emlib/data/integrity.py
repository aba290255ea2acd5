"""Is each slice a run reads the official one? Pixel hashes against the registry, checked where runs read, cached by stat.

Every image and label a run reads is compared with the packaged registry
(:func:`~emlib.data.sources.pixel_registry`, :func:`~emlib.data.sources.label_registry`): an image
by the SHA-256 of its decoded pixels (or of its bytes), a label also by the SHA-256 of the mask it
decodes to, so a 0/1 export of an official label is official too. A slice that differs is refused
unless modified data is allowed (``$EMLIB_ALLOW_MODIFIED_DATA``, ``emlib grid --allow-modified-data``;
:func:`~emlib.data.layout.modified_allowed`); then the split's data fingerprint says ``modified``. A
label that decodes to an empty mask where the official one has foreground is always refused, and a
file that holds the official content of another name (swapped splits, renamed slices) too.

What a file decodes to is measured once and remembered under its real path (a symbolic link's
target) while its size, modification time and inode stay the same: in memory, and in a small JSON file
(``slice-checks.json`` in ``$EMLIB_CACHE_DIR``, else the user cache folder ``pooch.os_cache("emlib")``),
so the second check of a copy, in any process, costs a ``stat`` per file. The file holds measured
hashes, not verdicts (those come from the registry each time); a damaged one is ignored and rebuilt,
and one that cannot be written only costs the next process the decoding again.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emlib.data.decode import decode_image, decode_label, pixel_sha256
from emlib.data.layout import ENV_MODIFIED, check_file
from emlib.data.sources import get_source, label_registry, pixel_registry
from emlib.errors import DataError, ShapeError
from emlib.runfiles import file_sha256, user_cache_file

__all__ = ["SliceFacts", "check_cache_path", "examine", "judge", "save_checks"]

#: Environment variable naming the folder of emlib's small caches (the slice checks).
_FORMAT = "emlib-slice-checks-v1"


@dataclass(frozen=True)
class SliceFacts:
    """What one slice file holds, measured once.

    Attributes
    ----------
    sha256 : str
        Of the file's bytes.
    pixels : str
        Of its decoded pixels (:func:`~emlib.data.decode.pixel_sha256`).
    shape : tuple of int
        (H, W) of the slice.
    mask, foreground : str or None, int or None
        For a label: the SHA-256 of its mask as {0, 1} uint8 bytes and its foreground pixel count.
    """

    sha256: str
    pixels: str
    shape: tuple[int, int]
    mask: str | None = None
    foreground: int | None = None


def check_cache_path() -> Path:
    """``slice-checks.json`` in ``$EMLIB_CACHE_DIR``, else in the user cache folder."""
    return user_cache_file("slice-checks.json")


_MEMORY: dict[str, dict] = {}
_LOADED: set[str] = set()
_NEW: dict[str, dict] = {}
_LOAD_LOCK = threading.Lock()


def _read_disk(path: Path) -> dict[str, dict]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT or not isinstance(saved.get("files"), dict):
        return {}
    return {k: v for k, v in saved["files"].items() if isinstance(v, dict) and isinstance(v.get("stat"), list)}


def _entries() -> dict[str, dict]:
    path = str(check_cache_path())
    if path not in _LOADED:
        with _LOAD_LOCK:  # the threads of one check wait for the file instead of measuring what it holds
            if path not in _LOADED:
                _MEMORY.update({k: v for k, v in _read_disk(Path(path)).items() if k not in _MEMORY})
                _LOADED.add(path)
    return _MEMORY


def save_checks() -> None:
    """Write what was measured since the last save into the JSON file (atomically, merged with other processes')."""
    if not _NEW:
        return
    path = check_cache_path()
    files = {k: v for k, v in _read_disk(path).items() if os.path.lexists(k)}  # forget copies that are gone
    files.update(_NEW)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.incomplete")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": _FORMAT, "files": files}))
        os.replace(tmp, path)
    except OSError:  # a cache only: the next process decodes again
        tmp.unlink(missing_ok=True)
        return
    _NEW.clear()


def examine(
    path: Path, hint: str, *, name: str | None = None, label: bool = False,
    arrays: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> SliceFacts:
    """The :class:`SliceFacts` of one slice file: remembered while its stat is the same, else measured.

    Parameters
    ----------
    path : Path
        The slice (refused first unless it is a regular file, :func:`~emlib.data.layout.check_file`).
    hint : str
        End of error sentences.
    name : str, default=None
        Dataset whose label encoding reads ``path`` (with ``label=True``).
    label : bool, default=False
        Whether ``path`` is a label.
    arrays : (ndarray, ndarray or None), default=None
        What the caller already decoded (``raw``, ``mask``); None decodes the file when needed.

    Raises
    ------
    DataError
        Not a regular file, not decodable, not 8-bit, or label values outside the encoding.
    ShapeError
        An image that is not a 2-D grey slice.
    """
    info = check_file(path, hint)
    key, stamp = os.path.realpath(path), [info.st_size, info.st_mtime_ns, info.st_ino]  # a link: its target's
    entry = _entries().get(key)
    if entry is not None and entry.get("stat") == stamp and entry.get("label") == label:
        try:
            facts = entry["facts"]
            return SliceFacts(facts["sha256"], facts["pixels"], tuple(facts["shape"]), facts.get("mask"), facts.get("foreground"))
        except (KeyError, TypeError):
            pass  # a damaged entry: measure again
    if arrays is None:
        if label:
            src = get_source(name)  # type: ignore[arg-type]
            arrays = decode_label(path, src.labels, hint, title=src.title)
        else:
            arrays = (decode_image(path, hint), None)
    raw, mask = arrays
    if not label and raw.ndim != 2:
        raise ShapeError(f"{path} has shape {raw.shape}, expected a 2-D grey slice; replace it with the official file ({hint})")
    facts = SliceFacts(
        sha256=file_sha256(path), pixels=pixel_sha256(raw), shape=tuple(raw.shape[:2]),  # type: ignore[arg-type]
        mask=None if mask is None else pixel_sha256(mask.view(np.uint8)),
        foreground=None if mask is None else int(np.count_nonzero(mask)),
    )
    _MEMORY[key] = _NEW[key] = {"stat": stamp, "label": label, "facts": asdict(facts)}
    return facts


@lru_cache(maxsize=None)
def _official_paths(name: str) -> dict[str, str]:
    """Pixel, file or mask SHA-256 of every upstream image and label -> its path in the official layout."""
    out = {}
    for rel, (pixels, file_sha) in pixel_registry(name).items():
        out[pixels] = out[file_sha] = rel
    for rel, (mask, _) in label_registry(name).items():
        out[mask] = rel
    return out


def _check_place(name: str, folder: Path, rel: str, facts: SliceFacts, hint: str) -> None:
    """Refuse a file that holds the official content of another file (swapped splits, renamed slices)."""
    for sha in (facts.sha256, facts.pixels, facts.mask):
        other = _official_paths(name).get(sha) if sha else None
        if other is None or other == rel:
            continue  # the official content for this name, or not official data at all (a synthetic copy)
        here, there = rel.rsplit("/", 1)[0], other.rsplit("/", 1)[0]
        what = (
            f"the folders {here} and {there} are swapped, so rename them back"
            if here != there else f"slices in {here} were renamed, so give every file its official name"
        )
        raise DataError(f"{folder / rel} holds the official pixels of {other}: {what} (or {hint})")


def judge(name: str, folder: Path, rel: str, facts: SliceFacts, hint: str, *, allow: bool) -> bool:
    """Whether the slice ``rel`` with ``facts`` is the official one; refuse it when it must be.

    Parameters
    ----------
    name : str
        Dataset.
    folder : Path
        Its layout folder.
    rel : str
        The slice's path in the layout.
    facts : SliceFacts
        From :func:`examine`.
    hint : str
        End of error sentences.
    allow : bool
        Modified data allowed: a slice that differs from the official one is accepted (False returned).

    Returns
    -------
    bool
        True for official content.

    Raises
    ------
    DataError
        The official content of another file; a label that decodes to an empty mask where the
        official one has foreground; a slice that is not official when ``allow`` is False.
    """
    _check_place(name, folder, rel, facts, hint)
    title = get_source(name).title
    pixels, file_sha = pixel_registry(name).get(rel, (None, None))
    mask, foreground = label_registry(name).get(rel, (None, None))
    if facts.foreground == 0 and foreground:
        raise DataError(
            f"label {folder / rel} decodes to an empty mask, but the official {title} label {rel} has {foreground:,} "
            f"foreground pixels; it may use another encoding or have lost its labels, so restore the official file ({hint})"
        )
    if facts.pixels == pixels or facts.sha256 == file_sha or (facts.mask is not None and facts.mask == mask):
        return True
    if allow:
        return False
    kind = "label" if facts.mask is not None else "slice"
    why = (f"its mask differs from the official one: {facts.foreground:,} foreground pixels, the official {foreground:,}"
           if facts.mask is not None and foreground is not None else "its pixels differ from the registry's SHA-256")
    start = (f"{folder / rel} is not the official {title} {kind} {rel} ({why}), so a run on it would not use the "
             f"paper's data; restore the official file ({hint}), or ")
    end = "to use modified data, which the run's data fingerprint then records"
    raise DataError(start + f"set {ENV_MODIFIED}=1 {end}", cli_message=start + f"pass --allow-modified-data {end}")
