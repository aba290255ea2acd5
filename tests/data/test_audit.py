"""The audit of the published paired set (emlib.data.audit), on a copy whose answer is known by construction
and on the staged data."""

from __future__ import annotations

from pathlib import Path

import pytest

from emlib.data import AUDIT_SCOPES, pairing_audit, pairing_table


def test_pairing_table_on_a_copy_with_known_overlaps(tiny_root) -> None:
    root, _ = tiny_root
    # make_lucchi: slice k's label is a 5x5 square at (k, 2k); the published pairing gives image k the
    # label of slice 0, 1, 10, 11, 2, 3, ..., 9, so 2 pairs are right and the others are 8 or 2 slices off
    t = pairing_table("lucchi_pp", "test", root)
    assert t["right"].tolist() == [True, True] + [False] * 10
    assert t["published_label"].tolist()[2:5] == ["10.png", "11.png", "2.png"]
    assert t["iou"].tolist() == [1.0, 1.0, 0.0, 0.0] + [3 / 47] * 8  # two slices off: 3 of 47 pixels shared
    assert (t["intersection"].sum(), t["union"].sum()) == (2 * 25 + 8 * 3, 2 * 25 + 2 * 50 + 8 * 47)


def test_pairing_audit_counts_and_the_perfect_model_bound(tiny_root) -> None:
    root, _ = tiny_root
    audit = pairing_audit(root).set_index("scope")
    assert tuple(audit.index) == AUDIT_SCOPES
    assert audit["pairs"].tolist() == [12, 12, 7, 3, 15] and audit["right"].tolist() == [2, 2, 7, 3, 5]
    assert audit.loc["lucchi_pp test", "perfect_iou_fg"] == 74 / 526
    assert audit.loc["vnc test", "perfect_iou_fg"] == 1.0
    assert audit.loc["mixed test", "perfect_iou_fg"] == (74 + 3 * 54) / (526 + 3 * 54)  # VNC squares: 6x9
    assert audit.loc["lucchi_pp test", "min_iou"] == 0.0


@pytest.mark.slow
def test_pairing_audit_of_the_staged_data(shared_data: Path) -> None:
    audit = pairing_audit(shared_data).set_index("scope")
    # the local Train_* holds the 83 even slices (../shared/data/README.md), so its count is of those
    assert audit["pairs"].tolist() == [83, 165, 17, 3, 168]
    assert audit["right"].tolist() == [1, 2, 17, 3, 5]
    assert audit.loc["lucchi_pp test", "perfect_iou_fg"] == pytest.approx(0.096890, abs=5e-7)
    assert audit.loc["mixed test", "perfect_iou_fg"] == pytest.approx(0.107317, abs=5e-7)
    assert audit.loc["lucchi_pp train", "perfect_iou_fg"] == pytest.approx(0.058860, abs=5e-7)
