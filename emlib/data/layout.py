"""Where the data lives and the official folder layout that :mod:`emlib.data.read` and :mod:`emlib.data.fetch` share.

Each dataset is kept in the folder layout of its official archive under one *data root*::

    <root>/lucchi_pp/Lucchi++/{Train_In,Train_Out,Test_In,Test_Out}/...
    <root>/vnc/groundtruth-drosophila-vnc-master/stack1/{raw,mitochondria}/NN.{tif,png}
    <root>/vnc/groundtruth-drosophila-vnc-master/stack2/raw/NN.tif

The root is ``$EMLIB_DATA`` when that variable is set (a local copy; nothing is ever downloaded
into it), otherwise a per-user cache folder (``pooch.os_cache("emlib")``) that
:func:`emlib.data.fetch.fetch_dataset` fills from the official URLs with checksums.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from emlib.data.sources import get_source, pixel_registry
from emlib.errors import DataError
from emlib.paths import env_path, user_path

__all__ = [
    "ENV_DATA",
    "ENV_MODIFIED",
    "check_file",
    "check_layout",
    "data_root",
    "dataset_dir",
    "fix_hint",
    "modified_allowed",
    "official_slices",
    "partner",
]

#: Environment variable naming a local copy of the data root (never downloaded into).
ENV_DATA = "EMLIB_DATA"
#: Environment variable that, set to 1, lets runs read slices whose pixels are not the official ones
#: (``emlib grid --allow-modified-data`` sets it); their data fingerprint then says ``modified``.
ENV_MODIFIED = "EMLIB_ALLOW_MODIFIED_DATA"


def modified_allowed(allow: bool | None = None) -> bool:
    """Whether slices that differ from the official pixels may be read: ``allow``, else ``$EMLIB_ALLOW_MODIFIED_DATA``.

    Examples
    --------
    >>> modified_allowed(True), modified_allowed(False)
    (True, False)
    """
    if allow is not None:
        return bool(allow)
    return os.environ.get(ENV_MODIFIED, "").strip().lower() in ("1", "true", "yes")


def _is_env_copy(root: str | os.PathLike[str] | None) -> bool:
    """True when ``root`` is (or defaults to) the copy named by EMLIB_DATA."""
    env = env_path(ENV_DATA)
    if env is None:
        return False
    if root is None:
        return True
    try:
        return user_path(root).resolve() == env.resolve()
    except OSError:  # pragma: no cover - a path that cannot be resolved is not the copy
        return False


def fix_hint(name: str, root: str | os.PathLike[str] | None) -> str:
    """Advice that works from where the user stands (a copy named by EMLIB_DATA is never downloaded into).

    Parameters
    ----------
    name : str
        Dataset the advice is about.
    root : path or None
        The data root the caller was given; None means ``$EMLIB_DATA`` or the download cache.

    Returns
    -------
    str
        The end of an error sentence: what to run or where to put the files.

    Examples
    --------
    >>> fix_hint("vnc", "/data")
    'run `emlib data download vnc --root /data --force`'
    """
    env = env_path(ENV_DATA)
    if _is_env_copy(root):  # also when a caller passes the EMLIB_DATA folder itself as root
        return (
            f"EMLIB_DATA points at {env}, a local copy that emlib never downloads into, so put the official files "
            f"there, or unset EMLIB_DATA and run `emlib data download {name}`"
        )
    if root is not None:
        return f"run `emlib data download {name} --root {root} --force`"
    return f"run `emlib data download {name} --force`, or set EMLIB_DATA to a local copy in the official layout"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$EMLIB_DATA``, else the user cache folder; absolute (a relative
    ``root`` against the cwd, ``$EMLIB_DATA`` as :func:`emlib.paths.env_path` reads it)."""
    if root is not None:
        return user_path(root)
    env = env_path(ENV_DATA)
    if env is not None:
        return env
    import pooch

    return Path(pooch.os_cache("emlib"))


def dataset_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the official layout of dataset ``name`` (``<root>/lucchi_pp/Lucchi++``)."""
    src = get_source(name)
    return data_root(root) / src.name / src.layout_dir


def check_layout(name: str, root: str | os.PathLike[str] | None) -> Path:
    """The layout folder of dataset ``name``, checked to hold every folder its source requires.

    Parameters
    ----------
    name : str
        Dataset.
    root : path or None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.

    Returns
    -------
    Path
        ``dataset_dir(name, root)``.

    Raises
    ------
    DataError
        The folder is missing, or lacks one of ``DatasetSource.required``.
    """
    src = get_source(name)
    folder = dataset_dir(name, root)
    hint = fix_hint(name, root)
    if not folder.is_dir():
        raise DataError(f"no {src.title} data at {folder}; {hint}")
    missing = [sub for sub in src.required if not (folder / sub).is_dir()]
    if missing:
        raise DataError(
            f"{src.title} folder {folder} has the wrong layout (missing {', '.join(missing)}); "
            f"it must hold the official archive's folders {', '.join(src.required)}, so {hint}"
        )
    return folder


def check_file(path: Path, hint: str) -> os.stat_result:
    """The ``stat`` of a slice file, refused unless it is a regular file (a symlink to one is fine); opens nothing.

    A named pipe or a device (``/dev/zero``) would block or never end a read, a folder or a broken
    link cannot be read: each is one sentence naming what the path is, before anything opens it.

    Parameters
    ----------
    path : Path
        Where a slice should be.
    hint : str
        End of the error sentence (:func:`fix_hint`).

    Returns
    -------
    os.stat_result
        Of the file (of the link's target for a symlink).

    Raises
    ------
    DataError
        The path is missing, a broken or looping link, or not a regular file.
    """
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            what = "a symbolic link that loops back on itself"
        elif os.path.islink(path):
            what = f"a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        elif err.errno == errno.ENOENT:
            what = "missing"
        else:
            what = f"unreadable ({err.strerror})"
        raise DataError(f"{path} is {what}; replace it with the official file ({hint})") from None
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return info
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO), which a read would wait on forever"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    what = next((kind for test, kind in kinds if test(mode)), "not a regular file")
    target = f" (a symbolic link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise DataError(f"{path}{target} is {what}, not an image file; replace it with the official file ({hint})")


def official_slices(name: str, folder: Path, sub: str, suffixes: tuple[str, ...], hint: str) -> list[Path]:
    """The image files of ``folder/sub``, each one an official slice of the registry (a stray file raises DataError).

    Parameters
    ----------
    name : str
        Dataset.
    folder : Path
        Its layout folder.
    sub : str
        Sub-folder of the layout (``Train_In``, ``stack1/raw``).
    suffixes : tuple of str
        File suffixes that count as slices (``(".png",)``).
    hint : str
        End of the error sentence when there are no slices.

    Returns
    -------
    list of Path
        The slice files, sorted by path.

    Raises
    ------
    DataError
        A slice file is not official or not a regular file (:func:`check_file`), or there are none.
    """
    official = {rel for rel in pixel_registry(name) if rel.rsplit("/", 1)[0] == sub}
    found = sorted(p for p in (folder / sub).iterdir() if p.suffix.lower() in suffixes)
    stray = [p.name for p in found if f"{sub}/{p.name}" not in official]
    if stray:
        names = sorted(rel.rsplit("/", 1)[1] for rel in official)
        what = (
            f"{stray[0]}, which is not an official {get_source(name).title} slice" if len(stray) == 1
            else f"{stray[0]} and {len(stray) - 1} more files, which are not official {get_source(name).title} slices"
        )
        raise DataError(
            f"{folder / sub} holds {what} ({names[0]} ... {names[-1]}); move {'it' if len(stray) == 1 else 'them'} "
            "out of that folder"
        )
    if not found:
        raise DataError(f"{folder / sub} holds no {'/'.join(suffixes)} slices; {hint}")
    for path in found:
        check_file(path, hint)
    return found


def partner(name: str, rel: str) -> str | None:
    """The other half of a slice in the official layout, image <-> label (None for unlabelled slices).

    Parameters
    ----------
    name : str
        Dataset.
    rel : str
        Path of a slice relative to the layout folder.

    Returns
    -------
    str or None
        Relative path of its label (for an image) or image (for a label); None for unlabelled slices.

    Examples
    --------
    >>> partner("lucchi_pp", "Train_In/mask0012.png"), partner("vnc", "stack1/mitochondria/03.png")
    ('Train_Out/12.png', 'stack1/raw/03.tif')
    """
    sub, file = rel.rsplit("/", 1)
    stem = Path(file).stem
    if name == "lucchi_pp":
        prefix, kind = sub.split("_")
        return f"{prefix}_Out/{int(stem[4:])}.png" if kind == "In" else f"{prefix}_In/mask{int(stem):04d}.png"
    return {"stack1/raw": f"stack1/mitochondria/{stem}.png", "stack1/mitochondria": f"stack1/raw/{stem}.tif"}.get(sub)
