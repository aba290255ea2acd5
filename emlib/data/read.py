"""Reading Lucchi++ and VNC from their official folder layouts as (Z, H, W) volumes.

Each dataset is kept in the folder layout of its official archive under one *data root*::

    <root>/lucchi_pp/Lucchi++/{Train_In,Train_Out,Test_In,Test_Out}/...
    <root>/vnc/groundtruth-drosophila-vnc-master/stack1/{raw,mitochondria}/NN.{tif,png}
    <root>/vnc/groundtruth-drosophila-vnc-master/stack2/raw/NN.tif

The root is ``$EMLIB_DATA`` when that variable is set (a local copy; nothing is ever downloaded
into it), otherwise a per-user cache folder (``pooch.os_cache("emlib")``) that
:func:`emlib.data.fetch.fetch_dataset` fills from the official URLs with checksums.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emlib.data.sources import VNC_TEST_SLICES, get_source
from emlib.errors import ConfigError, DataError, ShapeError

__all__ = [
    "Volume",
    "data_root",
    "dataset_dir",
    "load_volume",
    "pixel_sha256",
    "read_volume",
    "volume_sha256",
]

_ENV_DATA = "EMLIB_DATA"
_FIX_HINT = (
    "run `emlib data download {name}` (or emlib.data.fetch_dataset({name!r})) "
    "or set EMLIB_DATA to a folder that holds the official layout"
)


@dataclass(frozen=True)
class Volume:
    """A stack of EM slices with its mitochondria masks.

    Attributes
    ----------
    dataset, split : str
        Where it comes from (``lucchi_pp``/``vnc``; ``train``/``test``/...).
    images : ndarray of shape (Z, H, W), dtype uint8
        Grey values, read-only.
    masks : ndarray of shape (Z, H, W), dtype bool, or None
        Mitochondria foreground, read-only; None for unlabelled stacks (VNC stack2).
    slice_ids : tuple of str
        File stem of each slice (``mask0002``, ``03``), in stack order.
    voxel_size_nm : tuple of float
        (z, y, x) voxel size in nanometres.
    """

    dataset: str
    split: str
    images: np.ndarray
    masks: np.ndarray | None
    slice_ids: tuple[str, ...]
    voxel_size_nm: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, H, W) of the stack."""
        return tuple(self.images.shape)  # type: ignore[return-value]

    @property
    def foreground_fraction(self) -> float:
        """Fraction of mask pixels that are foreground (nan when unlabelled)."""
        return float("nan") if self.masks is None else float(self.masks.mean())

    def __len__(self) -> int:
        return int(self.images.shape[0])


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$EMLIB_DATA``, else the user cache folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(_ENV_DATA)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("emlib"))


def dataset_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder holding the official layout of dataset ``name`` (``<root>/lucchi_pp/Lucchi++``)."""
    src = get_source(name)
    return data_root(root) / src.name / src.layout_dir


def _check_layout(name: str, root: str | os.PathLike[str] | None) -> Path:
    src = get_source(name)
    folder = dataset_dir(name, root)
    hint = _FIX_HINT.format(name=name)
    if not folder.is_dir():
        raise DataError(f"no {src.title} data at {folder}; {hint}")
    missing = [sub for sub in src.required if not (folder / sub).is_dir()]
    if missing:
        raise DataError(
            f"{src.title} folder {folder} has the wrong layout (missing {', '.join(missing)}); "
            f"it must hold the official archive's folders {', '.join(src.required)}, so {hint}"
        )
    return folder


# ----------------------------------------------------------------------------- decoding


def _decode(path: Path) -> np.ndarray:
    """Decode one image file to a uint8 array in its own mode (RGBA stays (H, W, 4))."""
    from PIL import Image

    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            with Image.open(path) as img:
                if img.mode == "1":
                    img = img.convert("L")
                arr = np.asarray(img)
    except Exception as err:  # noqa: BLE001 - any decoder failure means the same to the user
        raise DataError(
            f"cannot decode {path} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
            "delete it and download the dataset again with `emlib data download --force`"
        ) from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path} holds {arr.dtype} pixels, expected uint8; replace it with the official file")
    return arr


def _to_mask(arr: np.ndarray) -> np.ndarray:
    """Label image (H, W) or (H, W, C) uint8 -> bool mask, channel 0, ``> 127``."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr > 127


def pixel_sha256(arr: np.ndarray) -> str:
    """SHA-256 of the C-order bytes of ``arr`` (the checksum convention of the staged README).

    Examples
    --------
    >>> pixel_sha256(np.zeros((2, 2), np.uint8))[:12]
    'df3f619804a9'
    """
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def volume_sha256(arr: np.ndarray) -> str:
    """SHA-256 of a whole (Z, H, W) volume; bool masks hash as {0, 1} uint8."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    return pixel_sha256(arr)


# ----------------------------------------------------------------------------- pairing

_LUCCHI_IMAGE = re.compile(r"^mask(\d{4})\.png$")


def _lucchi_pairs(folder: Path, split: str) -> list[tuple[str, Path, Path]]:
    """(slice_id, image, label) for one Lucchi++ split, ordered by slice index.

    Image ``maskNNNN.png`` pairs with label ``int(NNNN).png``. Pairing by sorted file name would
    misalign them (labels sort 0, 1, 10, 100, ...).
    """
    prefix = {"train": "Train", "test": "Test"}[split]
    in_dir, out_dir = folder / f"{prefix}_In", folder / f"{prefix}_Out"
    found = []
    for path in in_dir.iterdir():
        match = _LUCCHI_IMAGE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise DataError(f"{in_dir} holds no maskNNNN.png images; {_FIX_HINT.format(name='lucchi_pp')}")
    pairs = []
    for index, image in sorted(found):
        label = out_dir / f"{index}.png"
        if not label.is_file():
            raise DataError(
                f"image {image.name} has no label {label}; restore the file from the official archive "
                "(`emlib data download lucchi_pp --force`)"
            )
        pairs.append((image.stem, image, label))
    return pairs


def _vnc_pairs(folder: Path, split: str) -> list[tuple[str, Path, Path | None]]:
    """(slice_id, image, mask or None) for a VNC split, ordered by slice number."""
    stack = "stack2" if split == "unlabelled" else "stack1"
    raw = folder / stack / "raw"
    if not raw.is_dir():
        raise DataError(f"no VNC {stack} at {raw}; {_FIX_HINT.format(name='vnc')}")
    images = sorted(raw.glob("*.tif"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not images:
        raise DataError(f"{raw} holds no .tif slices; {_FIX_HINT.format(name='vnc')}")
    if split == "test":
        images = [p for p in images if p.stem.isdigit() and int(p.stem) in VNC_TEST_SLICES]
    elif split == "train":
        images = [p for p in images if p.stem.isdigit() and int(p.stem) not in VNC_TEST_SLICES]
    pairs: list[tuple[str, Path, Path | None]] = []
    for image in images:
        if split == "unlabelled":
            pairs.append((image.stem, image, None))
            continue
        mask = folder / "stack1" / "mitochondria" / f"{image.stem}.png"
        if not mask.is_file():
            raise DataError(
                f"VNC slice {image.name} has no mask {mask}; restore it with `emlib data download vnc --force`"
            )
        pairs.append((image.stem, image, mask))
    return pairs


def _pairs(name: str, split: str, root: str | os.PathLike[str] | None) -> list[tuple[str, Path, Path | None]]:
    src = get_source(name)
    if split not in src.splits:
        raise ConfigError(f"split {split!r} does not exist for {src.title}; choose one of {list(src.splits)}")
    folder = _check_layout(name, root)
    if name == "lucchi_pp":
        return list(_lucchi_pairs(folder, split))
    return _vnc_pairs(folder, split)


# ----------------------------------------------------------------------------- reading


def read_volume(
    name: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    slices: Sequence[int] | int | None = None,
    with_masks: bool = True,
) -> Volume:
    """Read one split of a dataset as a (Z, H, W) uint8 stack with bool masks.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
        Dataset.
    split : str
        ``train`` or ``test`` (the paper's meaning: Lucchi++ ``Train_*``/``Test_*``; VNC stack1
        without / with :data:`VNC_TEST_SLICES`), plus ``all`` (VNC stack1, 20 slices) and
        ``unlabelled`` (VNC stack2, no masks).
    root : path, default=None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.
    slices : int or sequence of int, default=None
        Keep only these positions in the stack (an int keeps the first ``slices``), e.g. for the
        smoke profile. None reads all.
    with_masks : bool, default=True
        Decode the masks too (False skips them, e.g. for embeddings).

    Returns
    -------
    Volume
        ``images`` of shape (Z, H, W) uint8 and ``masks`` of shape (Z, H, W) bool (or None).

    Raises
    ------
    ConfigError
        Unknown dataset or split.
    DataError
        Data missing, wrong layout, or an unreadable file.
    ShapeError
        An image and its mask differ in shape, or slices differ in shape.
    """
    pairs = _pairs(name, split, root)
    if slices is not None:
        if isinstance(slices, int):
            pairs = pairs[:slices]
        else:
            try:
                pairs = [pairs[i] for i in slices]
            except IndexError:
                raise ConfigError(
                    f"slices={list(slices)} is out of range for {name} {split}, which has {len(pairs)} slices"
                ) from None
    images, masks = [], []
    for slice_id, image_path, mask_path in pairs:
        image = _decode(image_path)
        if image.ndim != 2:
            raise ShapeError(f"{image_path} has shape {image.shape}, expected a 2-D grey slice")
        images.append(image)
        if with_masks and mask_path is not None:
            mask = _to_mask(_decode(mask_path))
            if mask.shape != image.shape:
                raise ShapeError(
                    f"mask {mask_path} has shape {mask.shape} but image {image_path} has {image.shape}; "
                    "replace the mismatched file with the official one"
                )
            masks.append(mask)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ShapeError(f"{name} {split} mixes slice shapes {sorted(shapes)}; every slice must have one shape")
    stack = np.stack(images)
    stack.flags.writeable = False
    mask_stack = None
    if masks:
        mask_stack = np.stack(masks)
        mask_stack.flags.writeable = False
    return Volume(
        dataset=name,
        split=split,
        images=stack,
        masks=mask_stack,
        slice_ids=tuple(p[0] for p in pairs),
        voxel_size_nm=get_source(name).voxel_size_nm,
    )


@lru_cache(maxsize=4)
def _cached_volume(name: str, split: str, root: str, slices: tuple[int, ...] | int | None) -> Volume:
    return read_volume(name, split, root=root, slices=slices)


def load_volume(
    name: str, split: str, *, root: str | os.PathLike[str] | None = None, slices: Sequence[int] | int | None = None
) -> Volume:
    """:func:`read_volume` with an in-memory cache of the last few volumes (arrays are read-only)."""
    key = slices if slices is None or isinstance(slices, int) else tuple(slices)
    return _cached_volume(name, split, str(data_root(root)), key)
