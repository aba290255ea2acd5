"""Tests of emlib.diagnostics.tokens: PCA views, patch tokens and token labels."""

from __future__ import annotations

import numpy as np
import pytest

from emlib.diagnostics import downsample_mask_to_grid, patch_pca_rgb, pca_embed, token_separability
from emlib.errors import ConfigError, ShapeError

from .conftest import two_blobs


def test_pca_embed_shapes_and_errors():
    a, b = two_blobs(n=30, d=8, shift=10.0)
    coords, evr = pca_embed(np.vstack([a, b]), n_components=3)
    assert coords.shape == (len(a) + len(b), 3)
    assert evr.shape == (3,) and evr[0] > 0.5 and np.all(np.diff(evr) <= 0)
    with pytest.raises(ConfigError, match="n_components"):
        pca_embed(a[:2], n_components=3)


# ----------------------------------------------------------------------------- patch tokens


def test_patch_pca_rgb_joint_fit_and_containers():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(6, 7, 12)), rng.normal(size=(5, 5, 12))
    rgb = patch_pca_rgb(m1)
    assert rgb.shape == (6, 7, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    out = patch_pca_rgb({"lucchi": m1, "vnc": m2})
    assert set(out) == {"lucchi", "vnc"} and out["vnc"].shape == (5, 5, 3)
    lst = patch_pca_rgb([m1, m2])
    np.testing.assert_allclose(lst[0], out["lucchi"])
    stack = patch_pca_rgb(np.stack([m1, m1]))
    assert stack.shape == (2, 6, 7, 3)
    fitted = patch_pca_rgb(m2, fit_on=m1.reshape(-1, 12))
    assert fitted.shape == (5, 5, 3)
    with pytest.raises(ShapeError, match="channel sizes"):
        patch_pca_rgb([m1, m2[..., :5]])


def test_downsample_mask_to_grid():
    m = np.zeros((28, 42), bool)
    m[:14, :14] = True
    m[14:21, 14:28] = True  # half of token (1, 1)
    frac = downsample_mask_to_grid(m, (2, 3), patch_size=14, threshold=None)
    np.testing.assert_allclose(frac, [[1, 0, 0], [0, 0.5, 0]])
    lab = downsample_mask_to_grid(m, (2, 3), patch_size=14)
    assert lab.dtype == bool and lab.tolist() == [[True, False, False], [False, True, False]]
    # without patch_size, any mask size is area-averaged onto the grid
    area = downsample_mask_to_grid(m, (2, 3), threshold=None)
    np.testing.assert_allclose(area, frac)
    assert downsample_mask_to_grid(np.stack([m, ~m]), (2, 3)).shape == (2, 2, 3)
    with pytest.raises(ShapeError, match="patch_size=None"):
        downsample_mask_to_grid(m, (2, 2), patch_size=14)


def test_token_separability_separable_vs_random():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.3
    tokens = rng.normal(size=(400, 8))
    sep = token_separability(tokens + 4.0 * labels[:, None], labels)
    assert sep["auroc"] > 0.99 and sep["fisher_ratio"] > 5
    assert sep["n_fg"] == labels.sum() and sep["n_bg"] == (~labels).sum()
    noise = token_separability(tokens, labels)
    assert abs(noise["auroc"] - 0.5) < 0.15 and noise["fisher_ratio"] < 0.5
    with pytest.raises(ConfigError, match="both"):
        token_separability(tokens, np.zeros(400, bool))
    with pytest.raises(ConfigError, match="threshold"):
        token_separability(tokens, rng.random(400))
