"""Tests of emlib.diagnostics.report: the one-row domain report and its files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emlib.diagnostics import domain_report, frechet_distance, write_report
from emlib.errors import ConfigError

from .conftest import two_blobs


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
    assert row["fd_low"] <= row["fd"] <= row["fd_high"] and "half-sample subsampling" in row["fd_interval"]
    paths = write_report(df, tmp_path / "run")
    back = pd.read_csv(paths["csv"])
    assert back.loc[0, "fd"] == pytest.approx(row["fd"])
    records = json.loads(paths["json"].read_text())
    assert records[0]["weights_label"] == "random weights"
    with pytest.raises(ConfigError, match="exactly two"):
        domain_report({"a": a}, backbone="x", adapter="frozen", weights_label="w")
