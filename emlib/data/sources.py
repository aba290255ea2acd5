"""Lucchi++ and VNC: where the files live, how to fetch them, and how to read them.

Two public EM mitochondria datasets, each kept in the folder layout of its official archive
under one *data root*::

    <root>/lucchi_pp/Lucchi++/{Train_In,Train_Out,Test_In,Test_Out}/...
    <root>/vnc/groundtruth-drosophila-vnc-master/stack1/{raw,mitochondria}/NN.{tif,png}
    <root>/vnc/groundtruth-drosophila-vnc-master/stack2/raw/NN.tif

The root is ``$EMLIB_DATA`` when that variable is set (a local copy; nothing is ever downloaded
into it), otherwise a per-user cache folder (``pooch.os_cache("emlib")``) that
:func:`fetch_dataset` fills from the official URLs with checksums.

Lucchi++ (Lucchi et al. 2012, labels by Casser et al. 2020): FIB-SEM of mouse CA1 hippocampus,
5x5x5 nm voxels, slices of 768x1024. VNC (Gerhard et al. 2013, doi:10.6084/m9.figshare.856713):
ssTEM of the Drosophila L3 ventral nerve cord, 4.6x4.6 nm pixels and 45-50 nm sections, slices of
1024x1024, licensed CC BY-NC-SA 3.0. Please cite these works if you use the data.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from emlib.errors import ChecksumError, ConfigError, DataError, ShapeError

__all__ = [
    "DATASETS",
    "DatasetSource",
    "Volume",
    "VNC_TEST_SLICES",
    "data_root",
    "dataset_dir",
    "fetch_dataset",
    "get_source",
    "load_volume",
    "VerifyReport",
    "list_datasets",
    "list_splits",
    "read_volume",
    "verify_dataset",
    "pixel_sha256",
    "volume_sha256",
]

#: VNC stack1 slices the paper tests on. The authors' ``compose_em_datasets.py`` shuffles the 20
#: stem-sorted pairs with ``random.Random(42).shuffle`` and keeps ``round(0.85 * 20) = 17`` for
#: training; the 3 left over are slices 00, 03 and 08 (see ``verify_vnc_split_matches_authors``
#: in the tests, which recomputes it).
VNC_TEST_SLICES: tuple[int, ...] = (0, 3, 8)

_ENV_DATA = "EMLIB_DATA"
_FIX_HINT = (
    "run `emlib data download {name}` (or emlib.data.fetch_dataset({name!r})) "
    "or set EMLIB_DATA to a folder that holds the official layout"
)


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset comes from and how its archive unpacks.

    Attributes
    ----------
    name : str
        Registry name, also the sub-folder of the data root (``lucchi_pp``, ``vnc``).
    title : str
        Human name used in messages and plots.
    url : str
        Official download URL of the zip archive.
    archive_sha256 : str or None
        SHA-256 of the archive, or None where the archive is not byte-stable (GitHub-made zips);
        then every extracted file is checked against ``registry`` instead.
    archive_top : str
        Regular expression for the archive's top folder.
    layout_dir : str
        Name the top folder gets under ``<root>/<name>/`` (the official one).
    registry : str
        Packaged TSV (``emlib/data/registry``) with the pixel SHA-256 of every upstream image.
    voxel_size_nm : tuple of float
        (z, y, x) size of one voxel in nanometres.
    splits : tuple of str
        Splits :func:`read_volume` accepts.
    """

    name: str
    title: str
    url: str
    archive_sha256: str | None
    archive_top: str
    layout_dir: str
    registry: str
    voxel_size_nm: tuple[float, float, float]
    splits: tuple[str, ...]
    citation: str = ""
    license: str = ""
    required: tuple[str, ...] = field(default=())


DATASETS: dict[str, DatasetSource] = {
    "lucchi_pp": DatasetSource(
        name="lucchi_pp",
        title="Lucchi++",
        url="http://www.casser.io/files/lucchi_pp.zip",
        archive_sha256="770ce9e98fc6f29c1b1a250c637e6c5125f2b5f1260e5a7687b55a79e2e8844d",
        archive_top=r"^Lucchi\+\+$",
        layout_dir="Lucchi++",
        registry="lucchi_pp.tsv",
        voxel_size_nm=(5.0, 5.0, 5.0),
        splits=("train", "test"),
        citation="Lucchi et al., IEEE TMI 2012; Casser et al., MIDL 2020",
        license="no licence statement found; cite Lucchi et al. and Casser et al., research use",
        required=("Train_In", "Train_Out", "Test_In", "Test_Out"),
    ),
    "vnc": DatasetSource(
        name="vnc",
        title="VNC",
        url=(
            "https://github.com/unidesigner/groundtruth-drosophila-vnc/archive/"
            "4a5f051466d24d8dc1e855ab55658bb1b1dcd6bf.zip"
        ),
        archive_sha256=None,
        archive_top=r"^groundtruth-drosophila-vnc-[0-9a-zA-Z]+$",
        layout_dir="groundtruth-drosophila-vnc-master",
        registry="vnc.tsv",
        voxel_size_nm=(47.5, 4.6, 4.6),
        splits=("train", "test", "all", "unlabelled"),
        citation="Gerhard et al., figshare 2013, doi:10.6084/m9.figshare.856713",
        license="CC BY-NC-SA 3.0 (non-commercial; cite Gerhard et al.)",
        required=("stack1/raw", "stack1/mitochondria"),
    ),
}


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


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return sorted(DATASETS)


def get_source(name: str) -> DatasetSource:
    """Registered :class:`DatasetSource` of ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {list_datasets()}")
    return DATASETS[name]


def list_splits(name: str) -> tuple[str, ...]:
    """Splits that :func:`read_volume` accepts for dataset ``name``."""
    return get_source(name).splits


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
    """SHA-256 of the C-order bytes of ``arr`` (the checksum convention of the staged README)."""
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


# ----------------------------------------------------------------------------- checksums


def _registry(name: str) -> dict[str, tuple[str, str]]:
    """file (relative to the layout dir) -> (pixel_sha256, upstream file sha256)."""
    text = resources.files("emlib.data").joinpath("registry", get_source(name).registry).read_text()
    rows = [line.split("\t") for line in text.strip().splitlines()[1:]]
    return {row[0]: (row[1], row[2]) for row in rows}


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
    any changed pixel fails. Files absent from the copy are reported, not failed (the staged
    Lucchi++ copy keeps only the even training slices).

    Raises
    ------
    ChecksumError
        A file decodes to pixels that differ from upstream.
    """
    folder = _check_layout(name, root)
    registry = _registry(name)
    missing = []
    checked = 0
    items: Iterable[tuple[str, tuple[str, str]]] = sorted(registry.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(list(items), desc=f"verify {name}", unit="file")
    for rel, (expected, _) in items:
        path = folder / rel
        if not path.is_file():
            missing.append(rel)
            continue
        if pixel_sha256(_decode(path)) != expected:
            raise ChecksumError(
                f"{path} does not match the official data (pixel SHA-256 differs); "
                f"delete it and run `emlib data download {name} --force`"
            )
        checked += 1
    return VerifyReport(dataset=name, checked=checked, expected=len(registry), missing=tuple(missing))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        local copy is only checked for its layout.
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
    if root is None and os.environ.get(_ENV_DATA):
        return _check_layout(name, None)
    base = data_root(root)
    target_parent = base / src.name
    target = target_parent / src.layout_dir
    if target.is_dir() and not force:
        return _check_layout(name, base)
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
    _unpack(Path(archive), src, target, registry=_registry(src.name) if src.archive_sha256 is None else None)
    return _check_layout(name, base)


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
                if _file_sha256(path) != upstream_sha:
                    raise ChecksumError(
                        f"{rel} in the {src.title} archive does not have its upstream SHA-256; "
                        "nothing was installed, so try again later or use a local copy via EMLIB_DATA"
                    )
        if target.exists():
            shutil.rmtree(target)
        os.replace(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
