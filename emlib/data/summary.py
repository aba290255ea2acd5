"""One tidy table describing every dataset split: slices, shape, voxel size, foreground."""

from __future__ import annotations

import os

import pandas as pd

from emlib.data.read import read_volume
from emlib.data.sources import DATASETS, get_source

__all__ = ["dataset_summary"]


def dataset_summary(*, root: str | os.PathLike[str] | None = None, datasets: list[str] | None = None) -> pd.DataFrame:
    """Per dataset and split: slice count, slice shape, voxel size (nm) and foreground fraction.

    Returns
    -------
    DataFrame
        Columns ``dataset, split, slices, height, width, voxel_size_nm, foreground_fraction,
        mean_intensity``; ``foreground_fraction`` is NaN for unlabelled splits.
    """
    rows = []
    for name in datasets or sorted(DATASETS):
        src = get_source(name)
        for split in src.splits:
            if split == "all":
                continue
            vol = read_volume(name, split, root=root)
            rows.append(
                {
                    "dataset": src.title,
                    "split": split,
                    "slices": len(vol),
                    "height": vol.shape[1],
                    "width": vol.shape[2],
                    "voxel_size_nm": "x".join(f"{v:g}" for v in vol.voxel_size_nm),
                    "foreground_fraction": vol.foreground_fraction,
                    "mean_intensity": float(vol.images.mean()),
                }
            )
    return pd.DataFrame(rows)
