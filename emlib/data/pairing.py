"""Which image goes with which label: the correct pairing, and the one the authors' published script makes.

Image ``maskNNNN.png`` of Lucchi++ goes with label ``int(NNNN).png``; a VNC image with the mask of
the same stem. That is ``pairing="correct"``, the default everywhere.

The paper's paired set is composed by ``scripts/data/compose_em_datasets.py`` in
``uhlmanngroup/MicroscopyFoundationHub``, the step its README documents. For each split it pairs
images with labels of the same file stem and, when no stem matches, zips the two *sorted* file
lists (``pair_by_sorted``). Lucchi++ images are ``mask%04d.png`` and labels ``%d.png``, so no stem
matches, and sorting orders the labels ``0, 1, 10, 100, 101, ...``: ``mask0002.png`` gets
``10.png``, ``mask0003.png`` gets ``100.png``, and on the 165 test slices 2 pairs are right. VNC
stems match, so VNC is paired right (its split, a ``random.Random(42)`` shuffle keeping 85 % for
training, is :data:`~emlib.data.sources.VNC_TEST_SLICES`). ``pairing="published"`` rebuilds that
set from the same local files, exactly as the script would; :mod:`emlib.data.audit` measures it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from emlib.config import PAIRINGS
from emlib.data.layout import check_file, check_layout, fix_hint, official_slices
from emlib.data.sources import VNC_TEST_SLICES, get_source
from emlib.errors import ConfigError, DataError
from emlib.validation import check_choice

__all__ = ["PUBLISHED_SCRIPT", "check_pairing", "published_labels", "slice_pairs"]

#: Where the published pairing is made (named on pages and in tables).
PUBLISHED_SCRIPT = "uhlmanngroup/MicroscopyFoundationHub scripts/data/compose_em_datasets.py"


def check_pairing(pairing: str) -> None:
    """One sentence (ConfigError) when ``pairing`` is not one of :data:`PAIRINGS`."""
    check_choice("pairing", pairing, PAIRINGS)


_LUCCHI_IMAGE = re.compile(r"^mask(\d{4})\.png$")



def _lucchi_pairs(folder: Path, split: str, hint: str) -> list[tuple[str, Path, Path]]:
    """(slice_id, image, label) for one Lucchi++ split, ordered by slice index.

    Image ``maskNNNN.png`` pairs with label ``int(NNNN).png``. Pairing by sorted file name would
    misalign them (labels sort 0, 1, 10, 100, ...).
    """
    prefix = {"train": "Train", "test": "Test"}[split]
    out_dir = folder / f"{prefix}_Out"
    found = [
        (int(_LUCCHI_IMAGE.match(path.name).group(1)), path)  # type: ignore[union-attr] - official names match
        for path in official_slices("lucchi_pp", folder, f"{prefix}_In", (".png",), hint)
    ]
    pairs = []
    for index, image in sorted(found):
        label = out_dir / f"{index}.png"
        if not os.path.lexists(label):
            raise DataError(f"image {image.name} has no label {label}; restore that file ({hint})")
        check_file(label, hint)
        pairs.append((image.stem, image, label))
    return pairs


def _vnc_pairs(folder: Path, split: str, hint: str) -> list[tuple[str, Path, Path | None]]:
    """(slice_id, image, mask or None) for a VNC split, ordered by slice number."""
    stack = "stack2" if split == "unlabelled" else "stack1"
    raw = folder / stack / "raw"
    if not raw.is_dir():
        raise DataError(f"no VNC {stack} at {raw}; {hint}")
    images = sorted(official_slices("vnc", folder, f"{stack}/raw", (".tif", ".tiff"), hint), key=lambda p: int(p.stem))
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
        if not os.path.lexists(mask):
            raise DataError(f"VNC slice {image.name} has no mask {mask}; restore that file ({hint})")
        check_file(mask, hint)
        pairs.append((image.stem, image, mask))
    return pairs


def slice_pairs(
    name: str, split: str, root: str | os.PathLike[str] | None, *, pairing: str = "correct"
) -> list[tuple[str, Path, Path | None]]:
    """The image and label files of one split, in stack order, without decoding them.

    Parameters
    ----------
    name : {'lucchi_pp', 'vnc'}
        Dataset.
    split : str
        One of its splits (:func:`~emlib.data.sources.list_splits`).
    root : path or None
        Data root; None uses ``$EMLIB_DATA`` or the download cache.
    pairing : {'correct', 'published'}, default='correct'
        ``published``: the labels the authors' script gives the images (the module's docstring);
        the slice ids and images stay in stack order, only labels move.

    Returns
    -------
    list of (str, Path, Path or None)
        ``(slice_id, image, label)`` per slice; ``label`` is None for unlabelled slices (VNC stack2).

    Raises
    ------
    ConfigError
        Unknown dataset or split.
    DataError
        Missing data, wrong layout, a stray file, or an image without its label.
    """
    check_pairing(pairing)
    src = get_source(name)
    if split not in src.splits:
        raise ConfigError(f"split {split!r} does not exist for {src.title}; choose one of {list(src.splits)}")
    folder = check_layout(name, root)
    pairs = _lucchi_pairs(folder, split, fix_hint(name, root)) if name == "lucchi_pp" else _vnc_pairs(folder, split, fix_hint(name, root))
    return published_labels(pairs) if pairing == "published" else pairs


def published_labels(pairs: list[tuple[str, Path, Path | None]]) -> list[tuple[str, Path, Path | None]]:
    """The labels the authors' script gives correctly paired files: by stem when every stem matches,
    else the i-th label in sorted file-name order for the i-th image in sorted file-name order.

    Examples
    --------
    >>> correct = [(f"mask{i:04d}", Path(f"In/mask{i:04d}.png"), Path(f"Out/{i}.png")) for i in (0, 1, 2, 3, 10)]
    >>> [(image.name, label.name) for _, image, label in published_labels(correct)]
    [('mask0000.png', '0.png'), ('mask0001.png', '1.png'), ('mask0002.png', '10.png'), ('mask0003.png', '2.png'), ('mask0010.png', '3.png')]
    """
    if any(label is None for _, _, label in pairs) or all(image.stem == label.stem for _, image, label in pairs):  # type: ignore[union-attr]
        return list(pairs)  # unlabelled, or stems match (VNC): the script pairs by stem, which is correct
    given = dict(zip(sorted(image for _, image, _ in pairs), sorted(label for _, _, label in pairs)))  # type: ignore[type-var]
    return [(slice_id, image, given[image]) for slice_id, image, _ in pairs]
