"""Preprocessing: normalisation with the backbone statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlib.data import IMAGENET_MEAN, IMAGENET_STD, normalize
from emlib.errors import ShapeError

def test_normalisation_matches_backbone_statistics() -> None:
    x = normalize(np.array([[0, 255]], np.uint8))
    assert x.shape == (1, 3, 1, 2)
    expected_low = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    expected_high = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected_low, rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 1].numpy(), expected_high, rtol=1e-6)
    clip = normalize(np.zeros((1, 1), np.uint8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.allclose(clip, torch.full((1, 3, 1, 1), -2.0))
    with pytest.raises(ShapeError, match="uint8"):
        normalize(np.zeros((2, 2), np.float32))


def test_select_test_slices_and_center_region() -> None:
    from emlib.data import center_region, select_test_slices

    assert select_test_slices(165, 3) == [0, 82, 164]
    assert select_test_slices(3, 5) is None
    assert center_region(np.zeros((2, 10, 20)), 4).shape == (2, 4, 4)
