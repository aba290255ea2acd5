"""Tests of emlib.metrics on hand-made masks with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emlib.errors import ConfigError, ShapeError
from emlib.metrics import (
    ConfusionCounts,
    PooledCounts,
    confusion_counts,
    foreground_iou_score,
    segmentation_scores,
)

torch.set_num_threads(1)


def test_confusion_counts_partial_overlap():
    # 3x3: pred covers the left two columns, target the top two rows.
    pred = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0]], dtype=bool)
    target = np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=bool)
    c = confusion_counts(pred, target)
    assert c == ConfusionCounts(tp=4, fp=2, fn=2, tn=1)
    s = segmentation_scores(c)
    assert s["iou_fg"] == pytest.approx(4 / 8)
    assert s["iou_bg"] == pytest.approx(1 / 5)
    assert s["miou"] == pytest.approx((4 / 8 + 1 / 5) / 2)
    assert s["dice_fg"] == pytest.approx(8 / 12)
    assert s["dice_bg"] == pytest.approx(2 / 6)
    assert s["mean_dice"] == pytest.approx((8 / 12 + 2 / 6) / 2)
    assert s["n_pixels"] == 9
    assert s["fg_fraction_target"] == pytest.approx(6 / 9)
    assert s["fg_fraction_pred"] == pytest.approx(6 / 9)


def test_empty_empty_uses_zero_division():
    z = np.zeros((4, 5), dtype=bool)
    c = confusion_counts(z, z)
    assert c == ConfusionCounts(tp=0, fp=0, fn=0, tn=20)
    s = segmentation_scores(c)
    assert s["iou_fg"] == 1.0 and s["dice_fg"] == 1.0
    assert s["iou_bg"] == 1.0 and s["miou"] == 1.0
    s0 = segmentation_scores(c, zero_division=0.0)
    assert s0["iou_fg"] == 0.0 and s0["dice_fg"] == 0.0
    assert s0["iou_bg"] == 1.0  # background is present, so no 0/0 there
    assert math.isnan(segmentation_scores(c, zero_division=float("nan"))["iou_fg"])


def test_disjoint_masks_score_zero():
    pred = np.array([[1, 1, 0, 0]])
    target = np.array([[0, 0, 1, 1]])
    s = segmentation_scores(confusion_counts(pred, target))
    assert s["iou_fg"] == 0.0 and s["dice_fg"] == 0.0
    assert s["iou_bg"] == 0.0  # no pixel is background in both


def test_label_values_and_torch_inputs_agree():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 2, size=(3, 8, 8))
    target = rng.integers(0, 2, size=(3, 8, 8)) * 255  # {0, 255} mask
    a = confusion_counts(pred, target)
    b = confusion_counts(torch.from_numpy(pred), torch.from_numpy(target).to(torch.uint8))
    c = confusion_counts(pred.astype(bool), target > 0)
    assert a == b == c
    assert a.n_pixels == 3 * 8 * 8


def test_pooled_differs_from_per_image_mean():
    # slice 0: big object, predicted well (IoU 0.75);
    # slice 1: one-pixel object, missed (IoU 0).
    pred = np.array([[[1, 1, 1, 1]], [[0, 0, 0, 0]]])
    target = np.array([[[1, 1, 1, 0]], [[0, 0, 0, 1]]])
    acc = PooledCounts()
    for p, t in zip(pred, target):
        acc.update(p, t)
    assert acc.n_updates == 2
    assert acc.counts == ConfusionCounts(tp=3, fp=1, fn=1, tn=3)
    pooled = acc.compute()["iou_fg"]
    per_image = np.mean([segmentation_scores(confusion_counts(p, t))["iou_fg"] for p, t in zip(pred, target)])
    assert pooled == pytest.approx(3 / 5)
    assert per_image == pytest.approx((3 / 4 + 0) / 2)
    assert pooled != pytest.approx(per_image)
    assert foreground_iou_score(pred, target) == pytest.approx(pooled)
    assert foreground_iou_score(pred, target, average="per_image") == pytest.approx(per_image)


def test_pooled_counts_addition():
    a = PooledCounts().update(np.array([1, 0]), np.array([1, 1]))
    b = PooledCounts().update(np.array([1, 1]), np.array([0, 0]))
    total = a + b
    assert total.counts == ConfusionCounts(tp=1, fp=2, fn=1, tn=0)
    assert total.n_updates == 2
    assert (a.counts + b.counts) == total.counts
    assert segmentation_scores(total)["iou_fg"] == pytest.approx(1 / 4)
    assert segmentation_scores(total.counts.as_dict())["iou_fg"] == pytest.approx(1 / 4)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(3, 2\)"):
        confusion_counts(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ShapeError):
        foreground_iou_score(np.zeros((2, 2, 3)), np.zeros((2, 3, 2)), average="per_image")


def test_bad_options_raise_config_error():
    c = ConfusionCounts(tp=1)
    with pytest.raises(ConfigError, match="zero_division"):
        segmentation_scores(c, zero_division=2.0)
    with pytest.raises(ConfigError, match="average"):
        foreground_iou_score(np.zeros(2), np.zeros(2), average="macro")
    with pytest.raises(ConfigError, match="confusion_counts"):
        segmentation_scores({"tp": 1})
