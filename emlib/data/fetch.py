"""Downloading Lucchi++ and VNC from their official URLs, and checking a copy against upstream.

:func:`fetch_dataset` fetches an archive with pooch, checks its SHA-256 (or, for archives that
are not byte-stable, the SHA-256 of every extracted file) and unpacks it atomically under the
data root. :func:`verify_dataset` compares the decoded pixels of every image of a local copy with
the packaged registry (:mod:`emlib.data.sources`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emlib.data.layout import ENV_DATA, check_layout, data_root, fix_hint, official_slices, partner
from emlib.data.decode import decode_image, pixel_sha256
from emlib.data.sources import DatasetSource, get_source, pixel_registry
from emlib.errors import ChecksumError, ConfigError, DataError
from emlib.paths import env_path
from emlib.runfiles import file_sha256

__all__ = ["VerifyReport", "fetch_dataset", "verify_dataset"]


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_dataset`."""

    dataset: str
    checked: int
    expected: int
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """True when every upstream file is present (all present files matched)."""
        return not self.missing


def verify_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, progress: bool = False
) -> VerifyReport:
    """Check every image of a dataset against the packaged pixel SHA-256 registry.

    Decoded pixels are compared (not file bytes), so a losslessly re-encoded copy passes and
    any changed pixel fails. A copy may lack whole folders that are not required (VNC stack2) and
    whole slices of the folders its source calls partial (``DatasetSource.partial``: the staged
    Lucchi++ copy keeps only the even training slices); those files are reported, not failed.
    Every other folder that exists claims to be complete.

    Raises
    ------
    DataError
        A file of a folder that claims to be complete is missing (an image without its label, a
        deleted test slice), or a folder holds a file that is not an official slice.
    ChecksumError
        A file decodes to pixels that differ from upstream.
    """
    src = get_source(name)
    folder = check_layout(name, root)
    hint = fix_hint(name, root)
    registry = pixel_registry(name)
    missing = sorted(rel for rel in registry if not (folder / rel).is_file())
    lacking = [rel for rel in missing if not _may_lack(src, folder, rel, missing)]
    if lacking:
        other_half = partner(name, lacking[0])
        kind = "image" if "_In/" in lacking[0] or "/raw/" in lacking[0] else "label"
        whose = f" (the {kind} of {other_half}, which is there)" if other_half and other_half not in missing else ""
        more = f" and {len(lacking) - 1} more files" if len(lacking) > 1 else ""
        raise DataError(
            f"the {src.title} copy at {folder} lacks {lacking[0]}{whose}{more}; restore {'them' if more else 'it'} ({hint})"
        )
    for sub in sorted({rel.rsplit("/", 1)[0] for rel in registry if (folder / rel).is_file()}):
        official_slices(name, folder, sub, tuple({Path(rel).suffix for rel in registry if rel.startswith(sub + "/")}), hint)
    items: Iterable[tuple[str, tuple[str, str]]] = sorted((rel, v) for rel, v in registry.items() if rel not in missing)
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(list(items), desc=f"verify {name}", unit="file")
    checked = 0
    for rel, (expected, _) in items:
        path = folder / rel
        if pixel_sha256(decode_image(path, hint)) != expected:
            raise ChecksumError(f"{path} does not match the official data (pixel SHA-256 differs); {hint}")
        checked += 1
    return VerifyReport(dataset=name, checked=checked, expected=len(registry), missing=tuple(missing))


def _may_lack(src: DatasetSource, folder: Path, rel: str, missing: list[str]) -> bool:
    """A copy may lack a file of an absent optional folder, or a whole slice of a partial folder."""
    sub = rel.rsplit("/", 1)[0]
    if not (folder / sub).is_dir():
        return sub not in src.required
    other_half = partner(src.name, rel)
    return sub in src.partial and (other_half is None or other_half in missing)


# ----------------------------------------------------------------------------- download


def fetch_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    source: DatasetSource | None = None,
    progress: bool = True,
) -> Path:
    """Download and unpack a dataset into ``<root>/<name>/`` unless it is already there.

    The archive is fetched with pooch (atomic: a partial download never takes the final name)
    and checked against its SHA-256 where the archive is byte-stable (Lucchi++); VNC's GitHub
    archive is pinned to a commit and every extracted file is checked against its upstream
    SHA-256 instead. Unpacking happens in a temporary folder that is moved into place only when
    complete, so an interrupted run leaves nothing half-written.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
        Dataset.
    root : path, default=None
        Data root. When ``$EMLIB_DATA`` is set and ``root`` is None, nothing is downloaded: the
        local copy is only checked for its layout (and ``force`` raises ConfigError saying so).
    force : bool, default=False
        Download and unpack again even if the folder exists.
    source : DatasetSource, default=None
        Override the registered source (tests use a local server).

    Returns
    -------
    Path
        The dataset's layout folder (``dataset_dir(name, root)``).
    """
    import pooch

    src = source or get_source(name)
    if root is None and env_path(ENV_DATA) is not None:
        if force:
            raise ConfigError(
                f"EMLIB_DATA points at {env_path(ENV_DATA)}, a local copy that emlib never downloads into; "
                f"to download {src.title}, unset EMLIB_DATA or pass --root with another folder"
            )
        return check_layout(name, None)
    base = data_root(root)
    target_parent = base / src.name
    target = target_parent / src.layout_dir
    if target.is_dir() and not force:
        return check_layout(name, base)
    target_parent.mkdir(parents=True, exist_ok=True)
    known_hash = f"sha256:{src.archive_sha256}" if src.archive_sha256 else None
    try:
        archive = pooch.retrieve(
            src.url,
            known_hash=known_hash,
            fname=f"{src.name}.zip",
            path=target_parent / "downloads",
            progressbar=progress,
        )
    except ValueError as err:
        if "hash" in str(err).lower():
            raise ChecksumError(
                f"the {src.title} archive from {src.url} does not have the expected SHA-256 "
                f"{src.archive_sha256}; the file was not kept, so try again later or use a local copy via EMLIB_DATA"
            ) from None
        raise
    except Exception as err:  # noqa: BLE001 - network failures come in many types
        raise DataError(
            f"could not download {src.title} from {src.url} ({type(err).__name__}); "
            "check the internet connection or set EMLIB_DATA to a local copy in the official layout"
        ) from None
    _unpack(Path(archive), src, target, registry=pixel_registry(src.name) if src.archive_sha256 is None else None)
    return check_layout(name, base)


def _unpack(archive: Path, src: DatasetSource, target: Path, *, registry: dict[str, tuple[str, str]] | None) -> None:
    """Extract ``archive`` into a temporary folder, check it, and move its top folder to ``target``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{src.name}-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile:
            archive.unlink(missing_ok=True)
            raise DataError(
                f"{archive} is not a valid zip archive; it was deleted, so run `emlib data download {src.name}` again"
            ) from None
        tops = [p for p in tmp.iterdir() if p.is_dir() and re.match(src.archive_top, p.name)]
        if len(tops) != 1:
            raise DataError(
                f"the {src.title} archive does not hold one top folder matching {src.archive_top!r} "
                f"(found {sorted(p.name for p in tmp.iterdir())}); the URL may have changed, so use a local copy via EMLIB_DATA"
            )
        top = tops[0]
        if registry is not None:
            for rel, (_, upstream_sha) in registry.items():
                path = top / rel
                if not path.is_file():
                    raise DataError(f"the {src.title} archive lacks {rel}; use a local copy via EMLIB_DATA")
                if file_sha256(path) != upstream_sha:
                    raise ChecksumError(
                        f"{rel} in the {src.title} archive does not have its upstream SHA-256; "
                        "nothing was installed, so try again later or use a local copy via EMLIB_DATA"
                    )
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
