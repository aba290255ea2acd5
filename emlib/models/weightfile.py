"""What a weights file is before it is read: a regular file (one ``stat``), an archive of a possible size, its SHA-256.

- :func:`weights_file_problem` names what keeps a path from being read as a file (missing, a
  folder, a FIFO, a device, a broken link, a link loop, unreadable) from one ``stat``: nothing is
  opened, so a FIFO or ``/dev/zero`` never blocks a reader;
- :func:`check_archive` refuses a zip checkpoint (torch's format) whose members declare more bytes
  than a limit, from its central directory alone, before anything is inflated (a zip bomb);
- :func:`weights_sha256` is the SHA-256 of a file's content, computed once per file and remembered
  across processes by (path, size, ``mtime_ns``, inode) in :data:`SHA256_CACHE`, so a 1.2 GB file
  costs its hashing once, not at every run.

:mod:`emlib.models.weights` (reading) and :mod:`emlib.models.hub` (finding) use them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import threading
import zipfile
from pathlib import Path

from emlib.errors import WeightsError, short_reason
from emlib.runfiles import file_sha256, user_cache_file

__all__ = ["SHA256_CACHE", "weights_file_problem", "check_archive", "weights_sha256"]

#: Where the SHA-256 of weights files is remembered between processes (None: ``weights-sha256.json`` in emlib's user cache).
SHA256_CACHE: Path | None = None
_SHA256_CACHE_ENTRIES = 256
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def weights_file_problem(path: str | os.PathLike[str]) -> str:
    """What keeps ``path`` from being read as a weights file, as the end of a sentence; ``''`` when nothing does.

    Judged by one ``stat`` (nothing is opened, so a FIFO or a device never blocks): a missing path,
    a broken symbolic link, a link loop, a folder, anything but a regular file, or one that cannot
    be read.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     weights_file_problem(d), weights_file_problem(f"{d}/none.pth")
    ('is a folder, not a file', 'does not exist')
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a broken symbolic link (to {os.readlink(path)})"
        return "does not exist"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if err.errno == errno.ENOTDIR:
            return "does not exist (a folder on its path is a file)"
        return f"cannot be read ({short_reason(err)})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        kind = next((what for test, what in _KINDS if test(info.st_mode)), "not a regular file")
        return f"is {kind}, not a regular file"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return ""


def check_archive(path: str | os.PathLike[str], limit: int, *, backbone: str) -> None:
    """Refuse a zip checkpoint whose members declare more than ``limit`` bytes (for ``backbone``:
    :func:`emlib.models.weights.archive_limit`), from its central directory alone, before anything is inflated.

    Files that are not zip archives (safetensors, legacy torch files, which inflate nothing) pass.

    Raises
    ------
    WeightsError
        The declared sizes exceed the limit: one sentence with both sizes.
    """
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not readable as a zip: torch.load refuses it with its own reason, inflating nothing
    total, count = sum(info.file_size for info in members), len(members)
    if total > limit:
        head = (f"{path} is a zip archive whose {count} member{'s' if count != 1 else ''} would inflate to "
                f"{total / 1e9:.1f} GB, more than the {limit / 1e9:.1f} GB a checkpoint of {backbone} can need, so it was "
                "not opened (it may be a zip bomb)")
        raise WeightsError(f"{head}; use the file the hub or the publisher serves.", why=head)


def _sha256_cache_file() -> Path:
    return SHA256_CACHE if SHA256_CACHE is not None else user_cache_file("weights-sha256.json")


def _known_hashes(cache: Path) -> dict[str, list]:
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: computed again
    return known if isinstance(known, dict) else {}


def weights_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a weights file's content, computed once per file (a 1.2 GB file costs seconds once, then nothing).

    Remembered in this process and in :data:`SHA256_CACHE` (a small JSON file, written atomically
    under a per-process temporary name) under the resolved path with its size, ``mtime_ns`` and
    inode: a file replaced, rewritten or touched is hashed again. A cache that cannot be read or
    written only costs the hashing.
    """
    path = Path(path)
    info, resolved = path.stat(), str(path.resolve())
    key = [info.st_size, info.st_mtime_ns, info.st_ino]
    cache = _sha256_cache_file()
    known = _known_hashes(cache)
    entry = known.get(resolved)
    if isinstance(entry, list) and entry[:3] == key and len(entry) == 4 and _SHA256.match(str(entry[3])):
        return entry[3]
    digest = file_sha256(path)
    known.pop(resolved, None)
    known[resolved] = [*key, digest]
    known = dict(list(known.items())[-_SHA256_CACHE_ENTRIES:])
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.{threading.get_ident()}.incomplete")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return digest
