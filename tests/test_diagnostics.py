"""Tests of emlib.diagnostics on synthetic embeddings and a fake backbone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from emlib.diagnostics import (
    bootstrap_frechet,
    domain_report,
    downsample_mask_to_grid,
    extract_embeddings,
    extract_token_maps,
    frechet_distance,
    frechet_distance_from_stats,
    linear_probe,
    patch_pca_rgb,
    pca_embed,
    protocol_probe,
    token_separability,
    write_report,
)
from emlib.errors import ConfigError, ShapeError

torch.set_num_threads(1)


def two_blobs(n=60, d=16, shift=6.0, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n + 10, d))
    b[:, 0] += shift
    return a, b


# ----------------------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("method", ["eigh", "sqrtm"])
def test_fd_from_stats_matches_closed_form_for_diagonal_covariances(method):
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2), method=method)
    assert got == pytest.approx(expected, rel=1e-10)


def test_fd_from_stats_methods_agree_on_full_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T + 0.1 * np.eye(8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    e = frechet_distance_from_stats(mu1, s1, mu2, s2, method="eigh")
    q = frechet_distance_from_stats(mu1, s1, mu2, s2, method="sqrtm")
    assert e == pytest.approx(q, rel=1e-8)
    # a rotation of both Gaussians leaves the distance unchanged
    r, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    rot = frechet_distance_from_stats(r @ mu1, r @ s1 @ r.T, r @ mu2, r @ s2 @ r.T)
    assert rot == pytest.approx(e, rel=1e-8)


def test_fd_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(200, 10))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x, method="sqrtm") == pytest.approx(0.0, abs=1e-6)


def test_fd_large_samples_approach_population_value():
    rng = np.random.default_rng(1)
    v1, v2 = np.array([1.0, 4.0]), np.array([2.0, 0.5])
    mu1, mu2 = np.array([0.0, 0.0]), np.array([1.0, -1.0])
    x = mu1 + rng.normal(size=(20000, 2)) * np.sqrt(v1)
    y = mu2 + rng.normal(size=(20000, 2)) * np.sqrt(v2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.05)
    # and equals the stats formula on the sample statistics exactly
    stats = frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert frechet_distance(x, y) == pytest.approx(stats, rel=1e-10)


def test_fd_is_symmetric_and_order_invariant():
    a, b = two_blobs(n=80, d=6)
    rng = np.random.default_rng(5)
    fd = frechet_distance(a, b)
    assert frechet_distance(b, a) == pytest.approx(fd, rel=1e-9)
    assert frechet_distance(a[rng.permutation(len(a))], b[rng.permutation(len(b))]) == pytest.approx(fd, rel=1e-9)
    assert frechet_distance(a, b, method="sqrtm") == pytest.approx(fd, rel=1e-7)


def test_fd_rank_deficient_sample_form_matches_stats_form():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 40)), rng.normal(size=(30, 40)) + 0.5
    fd = frechet_distance(x, y, allow_singular=True)
    stats = frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    # the sample (singular-value) form is the more accurate one here: sqrt of the
    # ~1e-16 rounding eigenvalues of a singular covariance adds ~1e-8 to the stats form
    assert fd == pytest.approx(stats, rel=1e-6)


def test_fd_errors():
    x = np.zeros((50, 4))
    with pytest.raises(ShapeError, match="4 features but y has 5"):
        frechet_distance(x, np.zeros((50, 5)))
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=(20, 30)), rng.normal(size=(100, 30))
    with pytest.raises(ConfigError, match=r"at least 31 samples.*got 20; pass n_components=19"):
        frechet_distance(small, big)
    assert np.isfinite(frechet_distance(small, big, n_components=10))
    with pytest.raises(ConfigError, match="n_components=19 or fewer"):
        frechet_distance(small, big, n_components=25)
    with pytest.raises(ConfigError, match="method"):
        frechet_distance(big, big, method="svd")


def test_bootstrap_frechet_interval_contains_spread():
    a, b = two_blobs(n=100, d=4, shift=3.0)
    fd, low, high = bootstrap_frechet(a, b, n_boot=50, seed=0)
    assert fd == pytest.approx(frechet_distance(a, b))
    assert low < high
    assert low <= fd * 1.2 and high >= fd * 0.8
    again = bootstrap_frechet(a, b, n_boot=50, seed=0)
    assert again == (fd, low, high)
    with pytest.raises(ConfigError, match="ci"):
        bootstrap_frechet(a, b, ci=1.5)


# ----------------------------------------------------------------------------- probes and PCA


def test_linear_probe_separable_and_permutation_control():
    a, b = two_blobs(n=80, d=20, shift=8.0)
    x = np.vstack([a, b])
    labels = np.array(["lucchi"] * len(a) + ["vnc"] * len(b))
    res = linear_probe(x, labels, n_splits=5, n_components=8, n_permutations=5)
    assert res["accuracy"] == pytest.approx(1.0)
    assert res["auroc"] == pytest.approx(1.0)
    assert abs(res["permuted_auroc"] - 0.5) < 0.15
    assert res["permutation_pvalue"] == pytest.approx(1 / 6)
    assert res["classes"] == ["lucchi", "vnc"]
    assert len(res["fold_auroc"]) == 5
    assert res["n_components"] == 8


def test_linear_probe_caps_components_and_runs_without_pca():
    a, b = two_blobs(n=10, d=50, shift=8.0)
    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    res = linear_probe(x, y, n_splits=2, n_components=64, n_permutations=0)
    assert res["n_components"] < 20
    assert np.isnan(res["permuted_auroc"])
    raw = linear_probe(x, y, n_splits=2, n_components=None, n_permutations=0)
    assert raw["auroc"] == pytest.approx(1.0)


def test_linear_probe_errors():
    x = np.random.default_rng(0).normal(size=(20, 5))
    with pytest.raises(ConfigError, match="single class"):
        linear_probe(x, np.zeros(20))
    y = np.r_[np.zeros(17), np.ones(3)]
    with pytest.raises(ConfigError, match=r"got 3 for 1\.0; pass n_splits=3"):
        linear_probe(x, y, n_splits=5)
    with pytest.raises(ShapeError, match="one label per row"):
        linear_probe(x, np.zeros(19))


def test_protocol_probe_matches_authors_recipe():
    a, b = two_blobs(n=60, d=100, shift=8.0)
    x = np.vstack([a, b])
    y = np.array([0] * len(a) + [1] * len(b))
    res = protocol_probe(x, y)
    assert res["n_components"] == 64
    assert res["n_test"] == round(0.2 * len(y)) or res["n_test"] == int(np.ceil(0.2 * len(y)))
    assert res["accuracy"] == pytest.approx(1.0) and res["auroc"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="single class"):
        protocol_probe(x, np.zeros(len(y)))


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


# ----------------------------------------------------------------------------- extraction


class FakeBackbone(torch.nn.Module):
    """Tiny stand-in with the emlib backbone interface."""

    patch_size = 4
    embed_dim = 6
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    weights_label = "random weights"
    name = "fake"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Conv2d(3, self.embed_dim, kernel_size=4, stride=4)

    def forward(self, x):  # (B, C, H/p, W/p)
        return self.proj(x)

    def forward_tokens(self, x):
        return self(x).flatten(2).transpose(1, 2)

    def embed(self, x):
        return self.forward_tokens(x).mean(1)


def normalise(batch):
    x = torch.from_numpy(np.asarray(batch)).float() / 255.0
    return x[:, None].expand(-1, 3, -1, -1)


def test_extract_embeddings_and_token_maps():
    bb = FakeBackbone().train()
    images = np.random.default_rng(0).integers(0, 256, size=(5, 16, 20), dtype=np.uint8)
    emb = extract_embeddings(bb, images, normalise=normalise, batch_size=2, progress=False)
    assert emb.shape == (5, 6) and emb.dtype == np.float32
    assert bb.training  # training flag restored
    with torch.no_grad():
        ref = bb.embed(normalise(images)).numpy()
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-6)
    tok = extract_token_maps(bb, images, normalise=normalise, batch_size=3, progress=False)
    assert tok.shape == (5, 4, 5, 6)
    np.testing.assert_allclose(tok.mean(axis=(1, 2)), emb, rtol=1e-5, atol=1e-6)
    # a sequence of slices of two sizes is batched per size
    mixed = [images[0], images[1], np.zeros((8, 8), np.uint8)]
    assert extract_embeddings(bb, mixed, normalise=normalise, progress=False).shape == (3, 6)
    with pytest.raises(ShapeError, match=r"\(Z, H, W\)"):
        extract_embeddings(bb, images[0], normalise=normalise, progress=False)


# ----------------------------------------------------------------------------- report


def test_domain_report_and_write(tmp_path):
    a, b = two_blobs(n=40, d=12, shift=6.0)
    df = domain_report(
        {"Lucchi++": a, "VNC": b},
        backbone="fake",
        adapter="frozen",
        weights_label="random weights",
        n_boot=20,
        n_permutations=3,
        probe_components=8,
    )
    assert isinstance(df, pd.DataFrame) and len(df) == 1
    row = df.iloc[0]
    for col in (
        "fd", "fd_low", "fd_high", "probe_accuracy", "probe_accuracy_std", "probe_auroc", "probe_auroc_std",
        "permuted_auroc", "protocol_accuracy", "protocol_auroc", "pca_pc1_variance", "pca_pc2_variance",
    ):
        assert np.isfinite(row[col]), col
    assert row["n_a"] == 40 and row["n_b"] == 50 and row["dataset_a"] == "Lucchi++"
    assert row["fd"] == pytest.approx(frechet_distance(a, b))
    assert row["probe_auroc"] == pytest.approx(1.0)
    assert row["fd_space"] == "raw" and not row["fd_rank_deficient"]
    paths = write_report(df, tmp_path / "run")
    back = pd.read_csv(paths["csv"])
    assert back.loc[0, "fd"] == pytest.approx(row["fd"])
    records = json.loads(paths["json"].read_text())
    assert records[0]["weights_label"] == "random weights"
    with pytest.raises(ConfigError, match="exactly two"):
        domain_report({"a": a}, backbone="x", adapter="frozen", weights_label="w")
