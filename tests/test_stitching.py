"""Tests of emlib.stitching with toy predict functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emlib.errors import ConfigError, ShapeError
from emlib.stitching import predict_stack, sliding_window_predict, window_positions, window_weights

torch.set_num_threads(1)


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.mark.parametrize(
    "shape, window, kw",
    [
        ((2, 50, 70), 32, {"overlap": 0.5}),  # window divides neither side
        ((1, 45, 61), (28, 14), {"stride": (9, 5), "multiple": 7}),
        ((3, 64, 64), 32, {"stride": 32}),  # exact tiling, no overlap
        ((1, 33, 40), 32, {}),  # default overlap
    ],
)
def test_identity_model_is_reproduced_exactly(shape, window, kw):
    image = torch.rand(shape)
    out = sliding_window_predict(identity, image, window=window, batch_size=3, **kw)
    assert out.shape == image.shape
    assert out.dtype == torch.float32
    assert torch.equal(out, image)


@pytest.mark.parametrize("shape", [(1, 10, 20), (2, 5, 9), (1, 3, 100)])
def test_identity_on_images_smaller_than_window(shape):
    image = torch.rand(shape)
    seen = []

    def record(x):
        seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 14 == 0 and x.shape[-1] % 14 == 0
        return x

    out = sliding_window_predict(record, image, window=28, multiple=14)
    assert torch.equal(out, image)
    assert all(h <= 28 and w <= 28 for h, w in seen)


def test_identity_with_gaussian_weights_and_numpy_input():
    image = np.random.default_rng(0).random((1, 40, 52)).astype(np.float32)
    out = sliding_window_predict(identity, image, window=16, overlap=0.5, weighting="gaussian")
    np.testing.assert_allclose(out.numpy(), image, rtol=1e-6, atol=1e-6)


def test_position_dependent_model_covers_every_pixel():
    def ramp(x):
        b, _, h, w = x.shape
        yy = torch.linspace(-1, 1, h)[:, None].expand(h, w)
        xx = torch.linspace(-1, 1, w)[None, :].expand(h, w)
        return torch.stack([yy, xx, yy * xx]).expand(b, 3, h, w).clone()

    for weighting in ("uniform", "gaussian"):
        out = sliding_window_predict(ramp, torch.zeros(1, 37, 53), window=16, overlap=0.3, weighting=weighting)
        assert out.shape == (3, 37, 53)
        assert torch.isfinite(out).all()
        assert out.abs().max() <= 1.0 + 1e-6


def test_model_output_at_lower_resolution_is_upsampled():
    def coarse(x):  # like a ViT without a decoder: one value per 4x4 patch
        return torch.nn.functional.avg_pool2d(x, 4)

    image = torch.ones(1, 24, 40)
    out = sliding_window_predict(coarse, image, window=16, multiple=4)
    assert out.shape == (1, 24, 40)
    assert torch.allclose(out, image)


def test_window_not_multiple_raises():
    with pytest.raises(ConfigError, match="multiple=14"):
        sliding_window_predict(identity, torch.zeros(1, 64, 64), window=30, multiple=14)
    with pytest.raises(ConfigError, match="only one"):
        sliding_window_predict(identity, torch.zeros(1, 64, 64), window=32, stride=16, overlap=0.5)
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_predict(identity, torch.zeros(1, 64, 64), window=32, overlap=1.0)
    with pytest.raises(ConfigError, match="weighting"):
        window_weights(8, weighting="cosine")


def test_bad_shapes_raise():
    with pytest.raises(ShapeError, match="predict_stack"):
        sliding_window_predict(identity, torch.zeros(2, 1, 8, 8), window=8)
    with pytest.raises(ShapeError, match=r"\(B, K, h, w\)"):
        sliding_window_predict(lambda x: x[:, 0], torch.zeros(1, 8, 8), window=8)


def test_window_positions_cover_axis():
    for size in range(1, 60):
        for win, stride in ((8, 8), (8, 5), (16, 3)):
            starts = window_positions(size, win, stride)
            covered = np.zeros(size, bool)
            for s in starts:
                assert s >= 0 and (s + win <= size or size <= win)
                covered[s : s + win] = True
            assert covered.all()


def test_predict_stack_logits_labels_and_normalise():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 20, 30), dtype=np.uint8)

    def two_class(x):  # class 1 where the first channel is bright
        return torch.cat([128.0 - x[:, :1], x[:, :1] - 128.0], dim=1)

    logits = predict_stack(two_class, images, window=16)
    assert logits.shape == (3, 2, 20, 30) and logits.dtype == np.float32
    labels = predict_stack(two_class, images, window=16, output="labels")
    assert labels.shape == (3, 20, 30) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, (images.astype(np.float32) - 128.0 > 0).astype(np.uint8))
    probs = predict_stack(two_class, images, window=16, output="probabilities")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)

    def normalise(batch):  # (1, H, W) uint8 -> (1, 3, H, W) float
        x = torch.from_numpy(batch).float() / 255.0
        return x[:, None].expand(-1, 3, -1, -1)

    rgb = predict_stack(identity, images, window=16, normalise=normalise)
    assert rgb.shape == (3, 3, 20, 30)
    np.testing.assert_allclose(rgb[:, 1], images / 255.0, atol=1e-6)
    with pytest.raises(ConfigError, match="output"):
        predict_stack(identity, images, window=16, output="masks")
