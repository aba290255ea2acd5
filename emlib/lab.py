"""A lab without internet: data, weights and finished runs in one archive (``emlib lab pack|unpack``).

:func:`pack_lab` writes one tar archive (``.tar``, or gzip-compressed for ``.tar.gz``/``.tgz``) holding

- ``data/``: the data root (``$EMLIB_DATA``, or ``--data DIR``), as staged;
- ``weights/NAME/<file>``: each backbone's weights file, wherever :func:`emlib.models.hub.find_weights`
  finds it on this machine (``$EMLIB_WEIGHTS``, the torch.hub folder, the Hugging Face cache),
  under the name it has there, so that ``$EMLIB_WEIGHTS`` pointed at ``weights/`` finds it again;
- ``runs/<folder name>/``: finished grid run folders (``--runs DIR``);
- ``emlib-lab.json``, the manifest: the SHA-256 and size of every file, and what each part is.

:func:`unpack_lab` checks every member before writing anything (a regular file or folder listed in the
manifest, a relative path that stays inside ``--into``: no links, devices or ``..``), writes each
file while hashing it, refuses one whose SHA-256 differs from the manifest, and returns the lines to
set (``EMLIB_DATA=...``, ``EMLIB_WEIGHTS=...``). Nothing is unpickled: files are bytes here.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from emlib.data.layout import ENV_DATA, data_root
from emlib.errors import EmlibError, WeightsError
from emlib.models.hub import find_weights, select_backbones
from emlib.models.weights import WEIGHTS_ENV

__all__ = ["MANIFEST", "FORMAT", "LabArchiveError", "LabContents", "folder_files", "pack_lab", "unpack_lab", "env_lines"]

#: The manifest's name inside the archive (its last member).
MANIFEST = "emlib-lab.json"
#: The manifest's ``format`` field; :func:`unpack_lab` refuses any other.
FORMAT = "emlib-lab/1"
_PARTS = ("data", "weights", "runs")
_CHUNK = 1 << 20
_MANIFEST_LIMIT = 64 << 20  # a manifest larger than this is not one pack wrote


class LabArchiveError(EmlibError):
    """An archive that is not a lab archive, is damaged, or would write outside its target folder."""


@dataclass
class LabContents:
    """What an archive holds, or what :func:`unpack_lab` wrote.

    Attributes
    ----------
    archive : Path
    root : Path or None
        The folder unpacked into (None for :func:`pack_lab`'s result).
    data : bool
        The archive holds a data root (``data/``).
    weights : dict of str to str
        Backbone -> its file inside the archive (``weights/NAME/<file>``).
    runs : list of str
        Run folders (``runs/<name>``).
    files : int
    bytes : int
    """

    archive: Path
    root: Path | None = None
    data: bool = False
    weights: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0

    def summary(self) -> str:
        """One line: how many files and bytes, which parts."""
        parts = (["data"] if self.data else []) + ([f"weights of {', '.join(self.weights)}"] if self.weights else [])
        parts += [f"{len(self.runs)} run folders ({', '.join(self.runs)})"] if self.runs else []
        return f"{self.archive}: {self.files} files, {self.bytes / 1e6:.1f} MB: {'; '.join(parts) or 'nothing'}"


# --------------------------------------------------------------------------------------------
# pack
# --------------------------------------------------------------------------------------------


class _Hashing:
    """A reader that hashes what passes through it (so each file is read once while archived)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha = raw, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.sha.update(chunk)
        return chunk


def folder_files(folder: Path) -> Iterator[Path]:
    """Regular files under ``folder`` (links to files followed; linked folders not entered), sorted."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file():
                yield path


def _weights_files(backbones: Sequence[str] | None, profile: str | None) -> dict[str, Path]:
    """Backbone -> its weights file on this machine; named backbones must have one, others are skipped."""
    named = bool(backbones) or profile is not None
    found = {}
    for name in select_backbones(list(backbones or ()) or None, profile=profile):
        try:
            source = find_weights(name)
        except WeightsError as err:
            if named:
                raise LabArchiveError(f"cannot pack the weights of {name}: {getattr(err, 'why', '') or err}; run "
                                      f"`emlib weights fetch {name}` first, or leave it out") from None
            continue
        if source.path is None:
            if named:
                raise LabArchiveError(f"the weights of {name} are not on this machine; run `emlib weights fetch "
                                      f"{name}` first, or leave it out")
            continue
        found[name] = source.path
    return found


def _members(data: Path | None, weights: dict[str, Path], runs: Sequence[Path]) -> list[tuple[str, Path]]:
    """``(name in the archive, file)`` for every file to pack."""
    members = [(f"data/{p.relative_to(data).as_posix()}", p) for p in folder_files(data)] if data else []
    for name, path in weights.items():
        members.append((f"weights/{name}/{path.name}", path))
    for run in runs:
        members += [(f"runs/{run.name}/{p.relative_to(run).as_posix()}", p) for p in folder_files(run)]
    return members


def _check_sources(data: Path | None, runs: Sequence[Path]) -> None:
    if data is not None and not data.is_dir():
        raise LabArchiveError(f"the data root {data} is not a folder; pass --data DIR (data= in Python), set "
                              f"{ENV_DATA}, or leave the data out with --no-data")
    for run in runs:
        if not run.is_dir():
            raise LabArchiveError(f"--runs {run} is not a folder; pass a folder of grid runs, e.g. runs/quick")
    names = [r.name for r in runs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LabArchiveError(f"two --runs folders are both named {twice[0]}; rename one, since each is packed as "
                              f"runs/<its name>")


def pack_lab(
    archive: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None, include_data: bool = True,
    backbones: Sequence[str] | None = None, profile: str | None = None, include_weights: bool = True,
    runs: Sequence[str | os.PathLike[str]] = (),
) -> LabContents:
    """Write a lab archive of data, weights and finished runs (see the module docstring).

    Parameters
    ----------
    archive : path-like
        The archive to write (``.tar``, ``.tar.gz`` or ``.tgz``); it must not exist yet.
    data : path-like, default=None
        The data root to pack (default: ``$EMLIB_DATA``, else the download cache).
    include_data : bool, default=True
    backbones : sequence of str, default=None
        Pack these backbones' weights (each must be on this machine); with neither this nor
        ``profile``, every backbone whose weights are here.
    profile : str, default=None
        The backbones of this profile.
    include_weights : bool, default=True
    runs : sequence of path-like, default=()
        Grid run folders (e.g. ``runs/quick``), each packed as ``runs/<its name>``.

    Returns
    -------
    LabContents

    Raises
    ------
    LabArchiveError
        The archive exists, a folder is missing, a named backbone has no weights here.
    """
    archive = Path(archive).expanduser()
    if archive.exists():
        raise LabArchiveError(f"{archive} already exists; pass a new archive name or delete it first")
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    if mode == "w" and not archive.name.endswith(".tar"):
        raise LabArchiveError(f"{archive} does not end in .tar, .tar.gz or .tgz; name the archive e.g. lab.tar")
    data_dir = data_root(data) if include_data else None
    run_dirs = [Path(r).expanduser() for r in runs]
    _check_sources(data_dir, run_dirs)
    weights = _weights_files(backbones, profile) if include_weights else {}
    members = _members(data_dir, weights, run_dirs)
    entries = []
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode) as tar:
            for name, path in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = path.stat().st_size, int(path.stat().st_mtime), 0o644
                with path.open("rb") as raw:
                    reader = _Hashing(raw)
                    tar.addfile(info, reader)
                entries.append({"path": name, "size": info.size, "sha256": reader.sha.hexdigest()})
            manifest = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "data": data_dir is not None,
                        "weights": {n: f"weights/{n}/{p.name}" for n, p in weights.items()},
                        "runs": [r.name for r in run_dirs], "files": entries}
            blob = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(blob))
    except BaseException:
        archive.unlink(missing_ok=True)  # never a half archive that looks whole
        raise
    return LabContents(archive, None, data_dir is not None, manifest["weights"], manifest["runs"], len(entries),
                       sum(e["size"] for e in entries))


# --------------------------------------------------------------------------------------------
# unpack
# --------------------------------------------------------------------------------------------


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    """``name`` as a relative path under one of :data:`_PARTS`, or LabArchiveError (absolute, ``..``, elsewhere)."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or not path.parts or (
            path.parts[0] not in _PARTS and name != MANIFEST):
        raise LabArchiveError(f"{archive} holds {name!r}, a path that would land outside the folder it is unpacked "
                              "into; it was not made by `emlib lab pack`, so nothing was unpacked (ask for the archive again)")
    return path


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    try:
        info = tar.getmember(MANIFEST)
    except KeyError:
        raise LabArchiveError(f"{archive} holds no {MANIFEST}, so it is not an archive `emlib lab pack` wrote; "
                              "pack it again with `emlib lab pack`") from None
    if not info.isfile() or info.size > _MANIFEST_LIMIT:
        raise LabArchiveError(f"{archive}: its {MANIFEST} is not a manifest `emlib lab pack` wrote; pack it again")
    try:
        manifest = json.loads(tar.extractfile(info).read())  # JSON only: nothing in an archive is unpickled
        files = {e["path"]: (int(e["size"]), str(e["sha256"])) for e in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        raise LabArchiveError(f"{archive}: its {MANIFEST} cannot be read; the archive is damaged, copy it again") from None
    if manifest.get("format") != FORMAT:
        raise LabArchiveError(f"{archive} is a {manifest.get('format')!r} archive, not {FORMAT}; unpack it with the "
                              "emlib version that packed it")
    manifest["files"] = files
    return manifest


def _check_members(tar: tarfile.TarFile, manifest: dict, archive: Path) -> list[tarfile.TarInfo]:
    """The file members to write, after every member has been checked (before anything is written)."""
    files, seen, out = manifest["files"], set(), []
    for name in files:
        _safe_name(name, archive)
    for info in tar.getmembers():
        _safe_name(info.name, archive)
        if info.name == MANIFEST or info.isdir():
            continue
        if not info.isfile():
            kind = "a link" if info.issym() or info.islnk() else "not a regular file"
            raise LabArchiveError(f"{archive} holds {info.name!r}, which is {kind}; a lab archive holds only files, "
                                  "so nothing was unpacked (pack it again with `emlib lab pack`)")
        if info.name not in files or info.name in seen:
            raise LabArchiveError(f"{archive} holds {info.name!r}, which its manifest does not list once; the archive "
                                  "was changed after packing, so nothing was unpacked (ask for the archive again)")
        seen.add(info.name)
        out.append(info)
    missing = sorted(set(files) - seen)
    if missing:
        raise LabArchiveError(f"{archive} lacks {len(missing)} files its manifest lists (e.g. {missing[0]}); the archive "
                              "is incomplete, copy it again")
    return out


def _write_member(tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path, expected: tuple[int, str], archive: Path) -> None:
    """Write one member to ``target`` while hashing it; a SHA-256 or size other than the manifest's is refused."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    sha, size = hashlib.sha256(), 0
    with tar.extractfile(info) as src, part.open("wb") as dst:
        while chunk := src.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    if (size, sha.hexdigest()) != expected:
        part.unlink()
        raise LabArchiveError(f"{info.name} in {archive} is damaged (its SHA-256 is {sha.hexdigest()[:12]}..., the "
                              f"manifest says {expected[1][:12]}...); copy the archive again and unpack it into a new folder")
    part.replace(target)


def unpack_lab(archive: str | os.PathLike[str], into: str | os.PathLike[str]) -> LabContents:
    """Unpack a lab archive into the folder ``into`` (new or empty), verifying every file's SHA-256.

    Returns
    -------
    LabContents
        With ``root``; :func:`env_lines` gives the variables to set.

    Raises
    ------
    LabArchiveError
        Not a lab archive; a member that is a link, a device, or a path escaping ``into`` (checked
        for all members before anything is written); a file not in the manifest or missing from the
        archive; a SHA-256 that differs; ``into`` holds files already.
    """
    archive, root = Path(archive).expanduser(), Path(into).expanduser().resolve()
    if not archive.is_file():
        raise LabArchiveError(f"{archive} is not a file; pass the archive `emlib lab pack` wrote")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise LabArchiveError(f"--into {root} is not a new or empty folder; pass a new folder, e.g. --into {root}-lab")
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error):
        raise LabArchiveError(f"{archive} is not a tar archive (or is cut short); copy it again") from None
    with tar:
        try:
            manifest = _read_manifest(tar, archive)
            members = _check_members(tar, manifest, archive)
            root.mkdir(parents=True, exist_ok=True)
            for info in members:
                target = root.joinpath(*PurePosixPath(info.name).parts)
                if root not in target.resolve().parents:  # a folder replaced by a link on the way: never followed
                    raise LabArchiveError(f"{info.name} would be written outside {root}; unpack into a new folder")
                _write_member(tar, info, target, manifest["files"][info.name], archive)
        except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise LabArchiveError(f"{archive} is damaged or cut short ({type(err).__name__}); copy it again") from None
    return LabContents(archive, root, bool(manifest.get("data")), dict(manifest.get("weights") or {}),
                       list(manifest.get("runs") or []), len(members), sum(m.size for m in members))


def env_lines(contents: LabContents) -> list[str]:
    """The ``export`` lines that point emlib at what :func:`unpack_lab` wrote (data, weights), offline."""
    if contents.root is None:
        return []
    lines = [f"export {ENV_DATA}={contents.root / 'data'}"] if contents.data else []
    if contents.weights:
        lines += [f"export {WEIGHTS_ENV}={contents.root / 'weights'}", "export HF_HUB_OFFLINE=1"]
    return lines
