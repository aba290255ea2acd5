"""The dataset summary table: sizes and foreground of the staged copy, and of a tiny synthetic copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emlib.data import dataset_summary, read_volume

@pytest.mark.slow
def test_summary_matches_readme_sizes_and_foreground(shared_data: Path) -> None:
    table = dataset_summary(root=shared_data).set_index(["dataset", "split"])
    assert table.loc[("Lucchi++", "train"), "slices"] == 83
    assert table.loc[("Lucchi++", "test"), "slices"] == 165
    assert table.loc[("VNC", "train"), "slices"] == 17
    assert table.loc[("VNC", "test"), "slices"] == 3
    assert table.loc[("VNC", "unlabelled"), "slices"] == 20
    assert (table.loc[("Lucchi++", "test"), ["height", "width"]] == [768, 1024]).all()
    assert (table.loc[("VNC", "train"), ["height", "width"]] == [1024, 1024]).all()
    assert table.loc[("Lucchi++", "train"), "foreground_fraction"] == pytest.approx(0.0701, abs=5e-5)
    assert table.loc[("Lucchi++", "test"), "foreground_fraction"] == pytest.approx(0.0669, abs=5e-5)
    vnc_all = read_volume("vnc", "all", root=shared_data, with_masks=True)
    assert vnc_all.foreground_fraction == pytest.approx(0.05388, abs=5e-6)

def test_summary_of_a_tiny_copy(tiny_root) -> None:
    root, truth = tiny_root
    table = dataset_summary(root=root).set_index(["dataset", "split"])
    assert list(table.index) == [("Lucchi++", "train"), ("Lucchi++", "test"), ("VNC", "train"), ("VNC", "test"), ("VNC", "unlabelled")]
    assert list(table["slices"]) == [12, 12, 7, 3, 10]
    assert (table.loc[("Lucchi++", "test"), ["height", "width"]] == [48, 64]).all()
    assert table.loc[("VNC", "train"), "voxel_size_nm"] == "47.5x4.6x4.6"
    assert table.loc[("Lucchi++", "test"), "foreground_fraction"] == pytest.approx(truth["lucchi_pp"]["test_masks"].mean())
    assert np.isnan(table.loc[("VNC", "unlabelled"), "foreground_fraction"])
    only_vnc = dataset_summary(root=root, datasets=["vnc"])
    assert set(only_vnc["dataset"]) == {"VNC"}
