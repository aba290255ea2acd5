"""Tests of emlib.diagnostics.frechet on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from emlib.diagnostics import bootstrap_frechet, frechet_distance, frechet_distance_from_stats
from emlib.errors import ConfigError, ShapeError

from .conftest import two_blobs


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


# ---- coverage of the interval (Gaussians with known parameters) ------------------------------


def _gaussians(d: int, seed: int = 0):
    """Two Gaussians with decaying spectra in different orientations, and shifted means."""
    rng = np.random.default_rng(seed)
    q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
    q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1 = (q1 * (1.0 / np.arange(1, d + 1) ** 0.8)) @ q1.T
    s2 = (q2 * (0.6 / np.arange(1, d + 1) ** 1.2)) @ q2.T
    return np.zeros(d), s1, 0.3 * rng.normal(size=d), s2


def _coverage(d: int, n1: int, n2: int, reps: int = 150, n_boot: int = 40) -> dict:
    mu1, s1, mu2, s2 = _gaussians(d)
    l1, l2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
    rng = np.random.default_rng(1)

    def draw():
        return mu1 + rng.normal(size=(n1, d)) @ l1.T, mu2 + rng.normal(size=(n2, d)) @ l2.T

    population = frechet_distance_from_stats(mu1, s1, mu2, s2)  # closed form
    at_n = np.mean([frechet_distance(*draw(), allow_singular=True) for _ in range(2000)])  # E[FD(n1, n2)]
    out = {"population": population, "at_n": at_n}
    for interval in ("subsample", "percentile"):
        hits_n = hits_pop = above = 0
        for r in range(reps):
            fd, low, high = bootstrap_frechet(*draw(), n_boot=n_boot, seed=r, interval=interval, allow_singular=True)
            hits_n += low <= at_n <= high
            hits_pop += low <= population <= high
            above += low > fd
        out[interval] = (hits_n / reps, hits_pop / reps, above / reps)
    return out


def test_subsample_interval_covers_the_fd_at_the_sample_size_when_n_is_below_d():
    """d=8, 16 vs 6 samples (VNC's 20 slices in 1024-d, scaled down): 150 repetitions, 40 replicates each."""
    c = _coverage(d=8, n1=16, n2=6)
    assert c["at_n"] > 1.5 * c["population"]  # the plug-in is strongly biased at this size
    sub_n, sub_pop, sub_above = c["subsample"]
    pct_n, pct_pop, pct_above = c["percentile"]
    assert 0.89 <= sub_n <= 0.995  # nominal 0.95 (measured 0.98)
    assert pct_n <= 0.85 and pct_n <= sub_n - 0.1  # percentile bootstrap: measured 0.75
    assert pct_pop == 0.0 and sub_pop < 0.6  # no interval recovers the population FD at n < d
    assert pct_above > 0.05 and sub_above == 0.0  # the percentile interval can lie above its own estimate (0.11)


def test_subsample_interval_covers_the_population_fd_when_n_is_large():
    """d=3, 200 vs 200 samples: the bias is small and the closed-form FD is covered too."""
    c = _coverage(d=3, n1=200, n2=200)
    sub_n, sub_pop, _ = c["subsample"]
    assert 0.89 <= sub_n <= 0.995 and 0.89 <= sub_pop <= 0.995  # measured 0.95 and 0.94


def test_interval_errors():
    a, b = two_blobs(n=20, d=4, shift=1.0)
    with pytest.raises(ConfigError, match="interval='bca' is not known"):
        bootstrap_frechet(a, b, interval="bca")
    with pytest.raises(ConfigError, match="at least 4 rows per set"):
        bootstrap_frechet(a[:3], b, allow_singular=True)
    assert np.isfinite(bootstrap_frechet(a[:3], b, allow_singular=True, interval="percentile", n_boot=5)).all()
