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

import os
from pathlib import Path

from emlib.data.sources import get_source, pixel_registry
from emlib.errors import DataError

__all__ = [
    "ENV_DATA",
    "check_layout",
    "data_root",
    "dataset_dir",
    "fix_hint",
    "official_slices",
    "partner",
]

#: Environment variable naming a local copy of the data root (never downloaded into).
ENV_DATA = "EMLIB_DATA"


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
    env = os.environ.get(ENV_DATA)
    if root is None and env:
        return (
            f"EMLIB_DATA points at {env}, a local copy that emlib never downloads into, so put the official files "
            f"there, or unset EMLIB_DATA and run `emlib data download {name}`"
        )
    if root is not None:
        return f"run `emlib data download {name} --root {root} --force`"
    return f"run `emlib data download {name} --force`, or set EMLIB_DATA to a local copy in the official layout"


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$EMLIB_DATA``, else the user cache folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser()
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
        A slice file is not official, or there are none.
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
