"""All latent diagnostics of two datasets as one tidy row, and writing report tables to a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from emlib.diagnostics._checks import as_embeddings
from emlib.diagnostics.frechet import FD_INTERVAL_NAMES, bootstrap_frechet, frechet_distance
from emlib.diagnostics.probe import linear_probe, protocol_probe
from emlib.diagnostics.tokens import pca_embed
from emlib.errors import ConfigError, ShapeError
from emlib.runfiles import write_atomic, write_table

__all__ = ["domain_report", "write_report"]


def domain_report(
    emb: Mapping[str, Any],
    *,
    backbone: str,
    adapter: str,
    weights_label: str,
    fd_components: int | None = None,
    allow_singular: bool = True,
    n_boot: int = 200,
    ci: float = 0.95,
    fd_interval: str | None = "subsample",
    probe_components: int | None = 64,
    n_splits: int = 5,
    n_permutations: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """All latent diagnostics of one backbone/adapter on two datasets, as one tidy row.

    Parameters
    ----------
    emb : dict of str → ndarray of shape (n_i, d)
        Global embeddings per dataset, exactly two (e.g. ``{"Lucchi++": ..., "VNC": ...}``).
    backbone : str
        Backbone name, e.g. ``'dinov2_vitl14'``.
    adapter : str
        ``'frozen'`` or the adapter's name (e.g. ``'lora'``).
    weights_label : str
        Label of the weights used (``'random weights'`` for a smoke run).
    fd_components : int, default=None
        Compute the Fréchet distance on this many PCA components; ``None`` uses
        the raw embeddings as the authors did.
    allow_singular : bool, default=True
        Allow rank-deficient covariances (needed on raw embeddings of small sets).
    n_boot, ci, fd_interval : int, float, str or None
        Confidence interval of the Fréchet distance (``interval`` of :func:`bootstrap_frechet`;
        the default covers the FD at these sample sizes). ``fd_interval=None`` computes no interval
        (``fd_low``/``fd_high`` NaN), e.g. for a set of 3 slices, too few to subsample.
    probe_components, n_splits, n_permutations : int
        Cross-validated probe, see :func:`linear_probe`; the protocol probe
        (:func:`protocol_probe`) uses ``probe_components`` too.
    seed : int, default=0
        Seed of everything random.

    Returns
    -------
    report : pandas.DataFrame with one row
        Columns: backbone, adapter, weights_label, dataset_a, dataset_b, n_a,
        n_b, embed_dim, fd, fd_low, fd_high, fd_interval, fd_space, fd_rank_deficient,
        probe_accuracy, probe_accuracy_std, probe_auroc, probe_auroc_std,
        permuted_auroc, permuted_auroc_std, probe_pvalue, probe_n_components,
        protocol_accuracy, protocol_auroc, protocol_test_a, protocol_test_b (test slices of each set in
        the 80/20 split), pca_pc1_variance, pca_pc2_variance.
    """
    (name_a, xa), (name_b, xb) = _two_sets(emb)
    row = {
        "backbone": backbone,
        "adapter": adapter,
        "weights_label": weights_label,
        "dataset_a": name_a,
        "dataset_b": name_b,
        "n_a": int(len(xa)),
        "n_b": int(len(xb)),
        "embed_dim": int(xa.shape[1]),
        **_frechet_columns(
            xa, xb, fd_components=fd_components, allow_singular=allow_singular, n_boot=n_boot, ci=ci,
            fd_interval=fd_interval, seed=seed,
        ),
        **_separation_columns(
            xa, xb, name_a, name_b, probe_components=probe_components, n_splits=n_splits,
            n_permutations=n_permutations, seed=seed,
        ),
    }
    return pd.DataFrame([row])


def _two_sets(emb: Mapping[str, Any]) -> tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]:
    """The two (name, embeddings) of ``emb``, checked: exactly two sets, finite, with one feature count."""
    if len(emb) != 2:
        raise ConfigError(f"emb has {len(emb)} datasets ({sorted(emb)}); pass exactly two, e.g. Lucchi++ and VNC")
    (name_a, xa), (name_b, xb) = ((k, as_embeddings(v, f"emb[{k!r}]")) for k, v in emb.items())
    if xa.shape[1] != xb.shape[1]:
        raise ShapeError(
            f"emb[{name_a!r}] has {xa.shape[1]} features but emb[{name_b!r}] has {xb.shape[1]}; "
            "pass embeddings from the same backbone"
        )
    return (name_a, xa), (name_b, xb)


def _frechet_columns(
    xa: np.ndarray, xb: np.ndarray, *, fd_components: int | None, allow_singular: bool, n_boot: int, ci: float,
    fd_interval: str | None, seed: int,
) -> dict[str, Any]:
    """The ``fd*`` columns: the Fréchet distance, its interval, and the space it was computed in."""
    if fd_interval is None:
        fd = frechet_distance(xa, xb, n_components=fd_components, allow_singular=allow_singular, seed=seed)
        low = high = float("nan")
    else:
        fd, low, high = bootstrap_frechet(
            xa, xb, n_boot=n_boot, ci=ci, seed=seed, n_components=fd_components, allow_singular=allow_singular,
            interval=fd_interval,
        )
    fd_dim = xa.shape[1] if fd_components is None else int(fd_components)
    return {
        "fd": fd,
        "fd_low": low,
        "fd_high": high,
        "fd_interval": "none" if fd_interval is None else f"{ci:.0%} {FD_INTERVAL_NAMES[fd_interval]}",
        "fd_space": "raw" if fd_components is None else f"pca{int(fd_components)}",
        "fd_rank_deficient": bool(min(len(xa), len(xb)) <= fd_dim),
    }


def _separation_columns(
    xa: np.ndarray, xb: np.ndarray, name_a: str, name_b: str, *, probe_components: int | None, n_splits: int,
    n_permutations: int, seed: int,
) -> dict[str, Any]:
    """The ``probe*``, ``protocol*`` and ``pca*`` columns: how well the pooled embeddings tell the datasets apart."""
    x = np.vstack([xa, xb])
    labels = np.array([name_a] * len(xa) + [name_b] * len(xb))
    probe = linear_probe(
        x, labels, n_splits=n_splits, n_components=probe_components, seed=seed, n_permutations=n_permutations
    )
    proto = protocol_probe(x, labels, n_components=probe_components, seed=seed)
    _, evr = pca_embed(x, n_components=min(2, *x.shape), seed=seed)
    evr = np.concatenate([evr, [np.nan, np.nan]])[:2]
    return {
        "probe_accuracy": probe["accuracy"],
        "probe_accuracy_std": probe["accuracy_std"],
        "probe_auroc": probe["auroc"],
        "probe_auroc_std": probe["auroc_std"],
        "permuted_auroc": probe["permuted_auroc"],
        "permuted_auroc_std": probe["permuted_auroc_std"],
        "probe_pvalue": probe["permutation_pvalue"],
        "probe_n_components": probe["n_components"],
        "protocol_accuracy": proto["accuracy"],
        "protocol_auroc": proto["auroc"],
        "protocol_test_a": proto["test_counts"][name_a],
        "protocol_test_b": proto["test_counts"][name_b],
        "pca_pc1_variance": float(evr[0]),
        "pca_pc2_variance": float(evr[1]),
    }


def write_report(df: pd.DataFrame, run_dir: str | Path, *, name: str = "domain_report") -> dict[str, Path]:
    """Write a report table as ``<run_dir>/<name>.csv`` and ``<run_dir>/<name>.json``.

    Parameters
    ----------
    df : pandas.DataFrame
        E.g. the output of :func:`domain_report` (or several concatenated).
    run_dir : str or Path
        Run folder; created if missing.
    name : str, default='domain_report'
        File stem.

    Returns
    -------
    paths : dict
        ``{"csv": Path, "json": Path}``. The JSON is a list of records; NaN is
        written as ``null``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    csv_path = run_dir / f"{name}.csv"
    json_path = run_dir / f"{name}.json"
    write_table(csv_path, df)
    records = json.loads(df.to_json(orient="records"))
    text = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    write_atomic(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return {"csv": csv_path, "json": json_path}
