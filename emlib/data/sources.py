"""Lucchi++ and VNC: the registry of where each dataset comes from.

Two public EM mitochondria datasets, each described by a frozen :class:`DatasetSource` in
:data:`DATASETS` (official URL, archive checksum, folder layout, voxel size, splits, citation,
licence, how its labels are encoded), plus the packaged registry of every upstream image
(``emlib/data/registry/<name>.tsv``: the pixel and file SHA-256 of each, and for the labels of the
staged copy the SHA-256 of the mask they decode to and its foreground pixel count). Reading lives in :mod:`emlib.data.read`, downloading and
checking in :mod:`emlib.data.fetch`.

Lucchi++ (Lucchi et al. 2012, labels by Casser et al. 2020): FIB-SEM of mouse CA1 hippocampus,
5x5x5 nm voxels, slices of 768x1024. VNC (Gerhard et al. 2013, doi:10.6084/m9.figshare.856713):
ssTEM of the Drosophila L3 ventral nerve cord, 4.6x4.6 nm pixels and 45-50 nm sections, slices of
1024x1024, licensed CC BY-NC-SA 3.0. Please cite these works if you use the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from emlib.errors import ConfigError

__all__ = [
    "DATASETS",
    "DatasetSource",
    "LabelEncoding",
    "VNC_TEST_SLICES",
    "get_source",
    "label_registry",
    "list_datasets",
    "list_splits",
    "pixel_registry",
]

#: VNC stack1 slices the paper tests on. The authors' ``compose_em_datasets.py`` shuffles the 20
#: stem-sorted pairs with ``random.Random(42).shuffle`` and keeps ``round(0.85 * 20) = 17`` for
#: training; the 3 left over are slices 00, 03 and 08 (see ``test_vnc_split_is_the_authors_seed_42_shuffle``
#: in tests/data/test_sources.py, which recomputes it).
VNC_TEST_SLICES: tuple[int, ...] = (0, 3, 8)


@dataclass(frozen=True)
class LabelEncoding:
    """How a dataset's label files encode the mask (:func:`emlib.data.read.decode_label` reads them so).

    Background is 0 and foreground is ``foreground`` in the official files; a 0/1 export (foreground
    1) reads the same. Any other value set is refused, except for a share of at most
    ``stray_fraction`` of the pixels with values between 0 and 255 (annotation anti-aliasing), which
    are foreground above 127.

    Attributes
    ----------
    channel : int, default=0
        Channel that holds the mask in a colour label (Lucchi++ ``Test_Out`` is RGBA with R=G=B).
    foreground : int, default=255
        Foreground value of the official files.
    stray_fraction : float, default=0.0
        Largest share of pixels that may hold other values (VNC: at most 0.005 % per official mask).
    """

    channel: int = 0
    foreground: int = 255
    stray_fraction: float = 0.0


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
        Splits :func:`~emlib.data.read.read_volume` accepts.
    required : tuple of str
        Folders every copy must have.
    partial : tuple of str
        Folders a copy may hold only some slices of (whole slices, image and label together), as the
        staged Lucchi++ copy holds only the even training slices; every other folder that exists must
        be complete (:func:`~emlib.data.fetch.verify_dataset`).
    labels : LabelEncoding
        How its label files encode the mask.
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
    partial: tuple[str, ...] = field(default=())
    labels: LabelEncoding = field(default=LabelEncoding())


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
        partial=("Train_In", "Train_Out"),
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
        labels=LabelEncoding(stray_fraction=0.001),  # 279 anti-aliased pixels over 20 masks, at most 51 in one
    ),
}


def list_datasets() -> list[str]:
    """Names of the registered datasets.

    Examples
    --------
    >>> list_datasets()
    ['lucchi_pp', 'vnc']
    """
    return sorted(DATASETS)


def get_source(name: str) -> DatasetSource:
    """Registered :class:`DatasetSource` of ``name``; unknown names raise ConfigError listing the known ones."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {list_datasets()}")
    return DATASETS[name]


def list_splits(name: str) -> tuple[str, ...]:
    """Splits that :func:`~emlib.data.read.read_volume` accepts for dataset ``name``."""
    return get_source(name).splits


@lru_cache(maxsize=None)
def pixel_registry(name: str) -> dict[str, tuple[str, str]]:
    """The packaged SHA-256 registry of dataset ``name``: every upstream image and label.

    Parameters
    ----------
    name : str
        Dataset.

    Returns
    -------
    dict of str to (str, str)
        File (relative to the layout folder) -> (pixel SHA-256, upstream file SHA-256).

    Examples
    --------
    >>> len(pixel_registry("vnc")), "stack1/mitochondria/05.png" in pixel_registry("vnc")
    (60, True)
    """
    return {row[0]: (row[1], row[2]) for row in _registry_rows(name)}


@lru_cache(maxsize=None)
def label_registry(name: str) -> dict[str, tuple[str, int]]:
    """What the official labels decode to, for the labels of the staged copy.

    Parameters
    ----------
    name : str
        Dataset.

    Returns
    -------
    dict of str to (str, int)
        Label file (relative to the layout folder) -> (SHA-256 of its mask as {0, 1} uint8 bytes,
        foreground pixel count). Labels the registry lists without them (Lucchi++'s odd training
        slices, not staged) are left out.

    Examples
    --------
    >>> label_registry("vnc")["stack1/mitochondria/00.png"][1]
    77490
    """
    return {row[0]: (row[3], int(row[4])) for row in _registry_rows(name) if len(row) > 4 and row[3]}


@lru_cache(maxsize=None)
def _registry_rows(name: str) -> tuple[list[str], ...]:
    text = resources.files("emlib.data").joinpath("registry", get_source(name).registry).read_text()
    return tuple(line.split("\t") for line in text.splitlines()[1:] if line.strip())
