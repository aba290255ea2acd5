"""Tests of emlib.chapters.remedy_effects: what the input and feature remedies do before any training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlib.chapters.remedy_effects import INPUT_METHODS, feature_remedy_effects, input_remedy_effects
from emlib.chapters.settings import chapter_settings
from emlib.data import Volume
from emlib.errors import ConfigError, ShapeError


def _volume(dataset: str, images: np.ndarray, voxel: tuple[float, float, float]) -> Volume:
    return Volume(dataset, "train", images, None, tuple(str(i) for i in range(len(images))), voxel)


@pytest.fixture
def volumes() -> tuple[Volume, Volume]:
    rng = np.random.default_rng(0)
    lucchi = rng.normal(120, 12, (2, 64, 64)).clip(0, 255).astype(np.uint8)
    vnc = rng.integers(0, 256, (2, 64, 64), dtype=np.uint8)  # flat: standardising cannot match the shape
    return _volume("lucchi_pp", lucchi, (5.0, 5.0, 5.0)), _volume("vnc", vnc, (47.5, 4.6, 4.6))


def test_input_effects_measure_each_remedy_against_the_reference(volumes: tuple[Volume, Volume]) -> None:
    lucchi, vnc = volumes
    table, aligned = input_remedy_effects(lucchi, vnc, methods=INPUT_METHODS)
    distance = "max CDF distance to Lucchi++"
    assert table.columns.tolist() == ["volume", "shape", "mean", "std", distance]
    assert table["volume"].tolist() == ["Lucchi++ (reference)", "VNC as is", "VNC standardise", "VNC histmatch",
                                        "VNC resample"]
    assert list(aligned) == table["volume"].tolist()[1:]
    rows = table.set_index("volume")
    assert rows.loc["Lucchi++ (reference)", distance] == 0.0
    assert rows.loc["VNC as is", "mean"] == pytest.approx(float(vnc.images.mean()))
    assert rows.loc["VNC standardise", "mean"] == pytest.approx(rows.loc["Lucchi++ (reference)", "mean"], abs=1.0)
    assert rows.loc["VNC standardise", "std"] == pytest.approx(rows.loc["Lucchi++ (reference)", "std"], rel=0.1)
    assert rows.loc["VNC histmatch", distance] < rows.loc["VNC standardise", distance] < rows.loc["VNC as is", distance]
    assert rows.loc["VNC resample", "shape"] == (2, 59, 59)  # 4.6 nm pixels to 5 nm: 64 * 0.92
    assert np.array_equal(aligned["VNC as is"], vnc.images)


def test_input_effects_default_methods_follow_scikit_image(volumes: tuple[Volume, Volume]) -> None:
    from emlib.data.alignment import clahe_available

    table, _ = input_remedy_effects(*volumes)
    assert len(table) == 2 + len(INPUT_METHODS) + clahe_available()


def test_feature_effects_standardise_each_dataset_with_its_own_statistics(volumes: tuple[Volume, Volume]) -> None:
    settings = chapter_settings("smoke", device="cpu")
    images = {"lucchi_pp": volumes[0].images, "vnc": volumes[1].images}
    table, features, standardised = feature_remedy_effects(settings, images, crop=56)
    assert table["features"].tolist() == ["backbone output", "after per-dataset standardisation"]
    assert (table["weights_label"] == "random weights").all()
    assert np.isfinite(table["coral_loss"]).all() and (table["coral_loss"] >= 0).all()
    assert features["vnc"].shape == (2, 384, 4, 4) and standardised["vnc"].shape == (2, 384, 4, 4)
    for f in standardised.values():  # per dataset: zero mean, unit variance per channel
        torch.testing.assert_close(f.mean(dim=(0, 2, 3)), torch.zeros(384), atol=1e-4, rtol=0)
    again, _, _ = feature_remedy_effects(settings, images, crop=56)
    np.testing.assert_allclose(again["coral_loss"], table["coral_loss"])  # random weights, seeded


def test_feature_effects_reject_other_datasets_and_small_slices(volumes: tuple[Volume, Volume]) -> None:
    settings = chapter_settings("smoke", device="cpu")
    with pytest.raises(ConfigError, match="exactly two"):
        feature_remedy_effects(settings, {"lucchi_pp": volumes[0].images})
    with pytest.raises(ShapeError, match="smaller than"):
        feature_remedy_effects(settings, {"lucchi_pp": volumes[0].images, "vnc": volumes[1].images}, crop=224)
