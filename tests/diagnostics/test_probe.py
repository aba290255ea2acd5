"""Tests of emlib.diagnostics.probe on synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from emlib.diagnostics import linear_probe, protocol_probe
from emlib.errors import ConfigError, ShapeError

from .conftest import two_blobs


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
    assert set(res["test_counts"]) == {0, 1} and sum(res["test_counts"].values()) == res["n_test"]
    few = protocol_probe(np.vstack([a, b[:3]]), np.array(["lucchi"] * len(a) + ["vnc"] * 3))  # the authors' 3 VNC slices
    assert few["test_counts"] == {"lucchi": 12, "vnc": 1}  # the stratified 20 % tests on one VNC slice
    with pytest.raises(ConfigError, match="single class"):
        protocol_probe(x, np.zeros(len(y)))
