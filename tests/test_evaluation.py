"""Evaluation (emlib.evaluation): every model is tested on both test sets, the cross-dataset rows.

Besides one trained run on the staged data, a model whose predictions are known (it thresholds its
input) is tested on a synthetic stack whose pixel counts are known by construction, so the pooled
IoU is pinned exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from torch import nn

from emlib.config import SCORED_TEST_SETS, TEST_LABELS, RunConfig
from emlib.errors import ConfigError
from emlib.evaluation import EvalResult, evaluate, evaluate_both, is_degenerate, scored_rows
from emlib.metrics import confusion_counts, segmentation_scores
from emlib.train import TrainedModel, fit

from .conftest import make_lucchi, make_vnc, write_png

SIDE = 32  # test slices of 32 x 32 pixels, a multiple of the U-Net's patch size 8


def test_evaluate_both_gives_the_cross_dataset_rows(tiny, shared_data: Path) -> None:
    trained = fit(tiny(regime="unet", crop=56, eval_window=56), root=shared_data, progress=False)
    table, raw = evaluate_both(trained, root=shared_data, keep_predictions=True)
    matrix = scored_rows(table)
    assert list(matrix.test_set) == ["lucchi_pp", "vnc"]
    assert matrix.in_domain.tolist() == [True, False]
    assert len(table) == len(SCORED_TEST_SETS) * len(TEST_LABELS)
    assert table.iou_fg.between(0, 1).all()
    assert raw["vnc"].predictions.shape == (1, 56, 56)


class Threshold(nn.Module):
    """Foreground wherever the normalised input is positive: with mean 0.5 and std 1, a pixel > 127."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x[:, :1]
        return torch.cat([-grey, grey], dim=1)


def _known_slices() -> tuple[np.ndarray, np.ndarray]:
    """Three test slices (images that draw the prediction, true masks) with known pixel counts.

    ====== =============================== ===== ==== ==== ===========
    slice  prediction vs truth             TP    FP   FN   slice IoU
    ====== =============================== ===== ==== ==== ===========
    0      equal (rows 0-7)                256   0    0    1
    1      4x4 square beside a 4x4 truth   0     16   16   0
    2      8x8 truth, prediction shifted   32    32   32   1/3
           by 4 columns
    ====== =============================== ===== ==== ==== ===========

    Pooled over the stack: TP 288, FP 48, FN 48, IoU_fg 288/384 = 3/4 (the mean of the slice
    IoUs is 4/9).
    """
    pred = np.zeros((3, SIDE, SIDE), bool)
    truth = np.zeros((3, SIDE, SIDE), bool)
    pred[0, :8], truth[0, :8] = True, True
    pred[1, 20:24, 4:8], truth[1, 20:24, 12:16] = True, True
    pred[2, 10:18, 14:22], truth[2, 10:18, 10:18] = True, True
    return np.where(pred, 255, 0).astype(np.uint8), truth


@pytest.fixture()
def known_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A data root in the official layouts: Lucchi++ ``Test_*`` holds :func:`_known_slices`; every
    VNC image is black (the threshold predicts no foreground there)."""
    make_lucchi(tmp_path, n=3, shape=(SIDE, SIDE))
    make_vnc(tmp_path, shape=(SIDE, SIDE))
    images, truth = _known_slices()
    lucchi = tmp_path / "lucchi_pp" / "Lucchi++"
    for k in range(3):
        write_png(lucchi / "Test_In" / f"mask{k:04d}.png", images[k])
        write_png(lucchi / "Test_Out" / f"{k}.png", truth[k].astype(np.uint8) * 255)
    for path in (tmp_path / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "raw").glob("*.tif"):
        tifffile.imwrite(path, np.zeros((SIDE, SIDE), np.uint8))
    return tmp_path, images > 127, truth


def _threshold_model(**changes) -> TrainedModel:
    cfg = RunConfig(regime="unet", pretrained=False, crop=SIDE, eval_window=SIDE, device="cpu").replace(**changes)
    return TrainedModel(
        model=Threshold(), config=cfg, patch_size=8, mean=(0.5,) * 3, std=(1.0,) * 3, history=pd.DataFrame()
    )


def test_iou_is_pooled_over_the_test_stack_not_averaged_per_slice(known_root) -> None:
    root, pred, truth = known_root
    result = evaluate(_threshold_model(), "lucchi_pp", root=root, keep_predictions=True)
    assert isinstance(result, EvalResult) and result.n_slices == 3 and len(result.slice_ids) == 3
    np.testing.assert_array_equal(result.predictions, pred)  # the model's predictions, slice by slice
    np.testing.assert_array_equal(result.masks, truth)
    s = result.scores
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (288, 48, 48, 3 * SIDE * SIDE - 384)
    assert s["iou_fg"] == 288 / 384 == 0.75
    assert s["dice_fg"] == pytest.approx(2 * 288 / (2 * 288 + 96))
    assert s["iou_bg"] == pytest.approx(s["tn"] / (s["tn"] + 96))
    assert s["miou"] == pytest.approx((s["iou_fg"] + s["iou_bg"]) / 2)
    assert s["fg_fraction_pred"] == pytest.approx(336 / (3 * SIDE * SIDE))
    per_slice = [segmentation_scores(confusion_counts(p, t))["iou_fg"] for p, t in zip(pred, truth)]
    assert per_slice == pytest.approx([1, 0, 1 / 3])
    assert np.mean(per_slice) == pytest.approx(4 / 9) and s["iou_fg"] != pytest.approx(np.mean(per_slice))
    assert not is_degenerate(s)


def test_eval_slices_and_region_change_the_counts_as_expected(known_root) -> None:
    root, _, _ = known_root
    two = evaluate(_threshold_model(eval_slices=2), "lucchi_pp", root=root)  # slices 0 and 2 of 0..2
    assert two.n_slices == 2
    assert (two.scores["tp"], two.scores["fp"], two.scores["fn"]) == (288, 32, 32)
    assert two.scores["iou_fg"] == 288 / 352
    centre = evaluate(_threshold_model(eval_region=16), "lucchi_pp", root=root)  # rows and columns 8-23
    # slice 0 has no foreground there, slice 1 only its truth, slice 2 all of its prediction and truth
    assert (centre.scores["tp"], centre.scores["fp"], centre.scores["fn"]) == (32, 32, 16 + 32)
    assert centre.scores["iou_fg"] == 32 / 112


def test_evaluate_both_rows_hold_the_pooled_scores_and_flag_a_blank_prediction(known_root) -> None:
    root, _, _ = known_root
    table, raw = evaluate_both(_threshold_model(), root=root)
    table = scored_rows(table)
    assert table.test_set.tolist() == ["lucchi_pp", "vnc"] and table.in_domain.tolist() == [True, False]
    assert table.iou_fg.tolist() == [0.75, 0.0]
    assert table.n_test_slices.tolist() == [3, 3]  # VNC stack1 slices 00, 03, 08
    assert table.degenerate.tolist() == [False, True]  # black VNC images: no foreground predicted anywhere
    assert table.fg_fraction_pred.tolist()[1] == 0.0
    assert raw["vnc"].scores["fn"] == 3 * 6 * 9  # make_vnc's 6x9 squares, all missed


@pytest.fixture()
def mispaired_root(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """12 Lucchi++ test slices whose images draw their own labels (the threshold model predicts each
    label exactly); black VNC images (no foreground predicted). Returns the root and the true masks."""
    truth = make_lucchi(tmp_path, n=12, shape=(SIDE, SIDE))["test_masks"]
    make_vnc(tmp_path, shape=(SIDE, SIDE))
    lucchi = tmp_path / "lucchi_pp" / "Lucchi++"
    for k, mask in enumerate(truth):
        write_png(lucchi / "Test_In" / f"mask{k:04d}.png", mask.astype(np.uint8) * 255)
    for path in (tmp_path / "vnc" / "groundtruth-drosophila-vnc-master" / "stack1" / "raw").glob("*.tif"):
        tifffile.imwrite(path, np.zeros((SIDE, SIDE), np.uint8))
    return tmp_path, truth


def test_every_model_is_also_scored_pooled_over_both_test_sets_and_against_the_published_labels(mispaired_root) -> None:
    root, truth = mispaired_root
    table, raw = evaluate_both(_threshold_model(), root=root)
    rows = table.set_index(["test_set", "test_labels"])
    assert sorted(rows.index) == sorted((t, labels) for t in SCORED_TEST_SETS for labels in TEST_LABELS)
    assert rows.loc[("lucchi_pp", "correct"), "iou_fg"] == 1.0  # each image predicted as its own label
    # the published script zips the images with the labels in sorted file-name order: 0, 1, 10, 11, 2, ...
    given = sorted(range(12), key=lambda k: f"{k}.png")
    expected = confusion_counts(truth, truth[given])
    assert rows.loc[("lucchi_pp", "published"), "iou_fg"] == pytest.approx(expected.tp / (expected.tp + expected.fp + expected.fn))
    assert rows.loc[("lucchi_pp", "published"), "iou_fg"] < 0.5
    assert rows.loc[("vnc", "published"), "iou_fg"] == rows.loc[("vnc", "correct"), "iou_fg"] == 0.0  # VNC stems match
    # the mixed test set pools the pixel counts of both test sets
    for labels in TEST_LABELS:
        pooled = raw["lucchi_pp"].counts[labels] + raw["vnc"].counts[labels]
        assert rows.loc[("mixed", labels), "iou_fg"] == pytest.approx(pooled.compute()["iou_fg"])
        assert rows.loc[("mixed", labels), "n_test_slices"] == 12 + 3
    assert rows.loc[("mixed", "correct"), "iou_fg"] < 1.0  # the missed VNC foreground counts too
    assert not rows.loc[("mixed", "correct"), "in_domain"]  # a Lucchi++ model was not trained on VNC


def test_scored_rows_selects_by_test_set_and_labels_and_refuses_unknown_ones(mispaired_root) -> None:
    table, _ = evaluate_both(_threshold_model(), root=mispaired_root[0])
    assert scored_rows(table, test_sets=["mixed"], test_labels="published").shape[0] == 1
    older = scored_rows(table).drop(columns="test_labels")  # a table written before the extra rows existed
    assert scored_rows(older).test_set.tolist() == ["lucchi_pp", "vnc"]
    with pytest.raises(ConfigError, match="test_labels='wrong'"):
        scored_rows(table, test_labels="wrong")
    with pytest.raises(ConfigError, match="test_sets='both'"):
        scored_rows(table, test_sets=["both"])
