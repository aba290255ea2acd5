"""Input-level remedies (emlib.data.alignment): intensity statistics, histogram matching, CLAHE, resampling."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from emlib.data.alignment import (
    ReferenceStats,
    align_run_volume,
    align_volume,
    clahe,
    clahe_available,
    grey_cdf,
    histogram_match,
    intensity_reference,
    pixel_scale,
    reference_for,
    resample_stack,
    standardise_intensity,
)
from emlib.errors import ConfigError
from emlib.train import build_train_dataset


def _stack(mean: float, std: float, seed: int, shape=(2, 64, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.normal(mean, std, shape)), 0, 255).astype(np.uint8)


def test_histogram_matching_makes_the_cdfs_agree_both_ways() -> None:
    vnc_like, lucchi_like = _stack(120, 50, 0), _stack(140, 25, 1)
    assert np.abs(grey_cdf(vnc_like) - grey_cdf(lucchi_like)).max() > 0.2
    for source, reference in ((vnc_like, lucchi_like), (lucchi_like, vnc_like)):
        matched = histogram_match(source, grey_cdf(reference))
        assert matched.dtype == np.uint8 and matched.shape == source.shape
        assert np.abs(grey_cdf(matched) - grey_cdf(reference)).max() < 0.02
        assert np.array_equal(histogram_match(source, reference), matched)  # a stack works as reference too


def test_standardisation_gives_the_reference_mean_and_std() -> None:
    out = standardise_intensity(_stack(90, 40, 2), mean=137.0, std=30.0)
    assert out.dtype == np.uint8
    assert out.mean() == pytest.approx(137.0, abs=0.5) and out.std() == pytest.approx(30.0, abs=0.5)
    with pytest.raises(ConfigError, match="std=0"):
        standardise_intensity(out, mean=1.0, std=0)


def test_resampling_changes_the_shape_by_the_pixel_size_ratio() -> None:
    assert pixel_scale("vnc", 5.0) == pytest.approx(0.92)
    assert pixel_scale("lucchi_pp", 5.0) == 1.0
    images, masks = _stack(128, 30, 3, (2, 100, 50)), np.zeros((2, 100, 50), bool)
    masks[:, 40:60, 10:30] = True
    assert resample_stack(images, 0.92).shape == (2, 92, 46)
    ref = intensity_reference(images, dataset="lucchi_pp", pixel_size_nm=5.0)
    out, out_masks = align_volume(images, "vnc", "resample", ref, masks=masks)
    assert out.shape == out_masks.shape == (2, 92, 46) and out_masks.dtype == bool
    assert out_masks.mean() == pytest.approx(masks.mean(), abs=0.01)
    same, same_masks = align_volume(images, "lucchi_pp", "resample", ref, masks=masks)
    assert same is images and same_masks is masks


def test_clahe_and_its_missing_dependency(monkeypatch) -> None:
    images = _stack(128, 10, 4, (1, 64, 64))
    monkeypatch.setitem(sys.modules, "skimage.exposure", None)
    with pytest.raises(ConfigError, match="pip install scikit-image"):
        clahe(images)
    monkeypatch.undo()
    pytest.importorskip("skimage")
    out = clahe(images)
    assert out.dtype == np.uint8 and out.shape == images.shape and out.std() > images.std()


def test_clahe_available_follows_the_import(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    assert clahe_available() is False


def test_align_volume_rejects_unknown_methods() -> None:
    with pytest.raises(ConfigError, match="input_alignment='gamma'"):
        align_volume(_stack(1, 1, 0), "vnc", "gamma", None)
    with pytest.raises(ConfigError, match="needs reference statistics"):
        align_volume(_stack(1, 1, 0), "vnc", "histmatch", None)


def test_intensity_reference_holds_the_stack_statistics() -> None:
    images = _stack(100, 20, 5)
    ref = intensity_reference(images, dataset="vnc", pixel_size_nm=4.6)
    assert isinstance(ref, ReferenceStats)
    assert ref.mean == pytest.approx(float(images.mean())) and ref.std == pytest.approx(float(images.std()))
    assert np.allclose(ref.cdf, grey_cdf(images))


def test_training_items_see_the_aligned_pixels(tiny, shared_data: Path) -> None:
    from emlib.data import IMAGENET_MEAN, IMAGENET_STD

    paired = tiny(train_set="paired")
    plain = build_train_dataset(paired, patch_size=14, mean=IMAGENET_MEAN, std=IMAGENET_STD, root=shared_data)
    matched = build_train_dataset(paired.replace(input_alignment="histmatch"), patch_size=14, mean=IMAGENET_MEAN, std=IMAGENET_STD, root=shared_data)
    lucchi, vnc = plain.sources
    assert np.array_equal(matched.sources[0].images, lucchi.images)  # the reference maps onto itself
    ref = reference_for(paired, shared_data)
    assert np.abs(grey_cdf(matched.sources[1].images) - ref.cdf).max() < 0.02
    assert np.abs(grey_cdf(vnc.images) - ref.cdf).max() > 0.05
    assert [plain[i]["domain"] for i in (0, len(plain) - 1)] == [0, 1]


def test_align_run_volume_follows_the_config(tiny, shared_data: Path) -> None:
    images = _stack(120, 50, 6)
    cfg = tiny(train_set="paired")
    same, no_masks = align_run_volume(cfg, "vnc", images, None, shared_data)
    assert same is images and no_masks is None  # no input_alignment: untouched
    out, masks = align_run_volume(cfg.replace(input_alignment="histmatch"), "vnc", images, None, shared_data)
    assert masks is None and np.abs(grey_cdf(out) - reference_for(cfg, shared_data).cdf).max() < 0.02
