"""Latent diagnostics: how far apart are two EM datasets in a backbone's feature space?

The paper explains the collapse of paired Lucchi++ + VNC training with three
analyses of image-level embeddings (one vector per slice, the mean of the patch
tokens; ``authors-protocol.md`` §6):

* a **PCA** of the pooled embeddings, coloured by dataset (:func:`pca_embed`);
* the **Fréchet distance** between the two sets, treated as Gaussians
  (:func:`frechet_distance`, :func:`bootstrap_frechet`); the paper reports
  79.32 (frozen DINOv2) and 45.02 (LoRA);
* a **linear probe** that predicts the dataset from the embedding
  (:func:`protocol_probe` is the authors' single 80/20 split,
  :func:`linear_probe` a leakage-free cross-validated version with a
  label-permutation control); the paper reports accuracy = AUROC = 1.0.

:func:`domain_report` runs all of them on a ``{dataset: embeddings}`` dict and
returns one tidy row. Patch-level helpers (:func:`patch_pca_rgb`,
:func:`token_separability`, :func:`downsample_mask_to_grid`) show what a
segmentation head can read from the tokens. Everything except
:func:`extract_embeddings` / :func:`extract_token_maps` works on plain arrays.

Naming follows scikit-learn: ``*_distance`` is lower-is-closer; accuracy and
AUROC are scores (higher is better).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import scipy.linalg
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emlib.errors import ConfigError, ShapeError

__all__ = [
    "frechet_distance_from_stats",
    "frechet_distance",
    "bootstrap_frechet",
    "linear_probe",
    "protocol_probe",
    "pca_embed",
    "patch_pca_rgb",
    "token_separability",
    "downsample_mask_to_grid",
    "extract_embeddings",
    "extract_token_maps",
    "domain_report",
    "write_report",
]

_FD_METHODS = ("eigh", "sqrtm")


# ----------------------------------------------------------------------------- validation


def _as_embeddings(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"{name} has shape {x.shape}; pass embeddings of shape (n_samples, n_features)")
    if not np.isfinite(x).all():
        raise ConfigError(f"{name} contains NaN or infinite values; drop those rows before computing diagnostics")
    return x


def _check_method(method: str) -> None:
    if method not in _FD_METHODS:
        raise ConfigError(f"method={method!r} is not known; pass 'eigh' or 'sqrtm'")


def _encode_labels(labels: Any, n: int, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ShapeError(f"{name} has shape {labels.shape} but there are {n} samples; pass one label per row")
    classes, y = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        only = classes[0].item() if classes.size else None
        raise ConfigError(
            f"{name} hold a single class ({only!r}); pass samples from at least two datasets or classes"
        )
    return classes, y


# ----------------------------------------------------------------------------- Fréchet distance


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt(S1 S2) = tr sqrt(S1^½ S2 S1^½), a symmetric PSD matrix."""
    h = _sqrt_psd(s1)
    m = h @ s2 @ h
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _trace_sqrt_product_sqrtm(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """pytorch_fid's computation (scipy sqrtm, eps offset, imaginary-part check)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = float(np.max(np.abs(covmean.imag)))
            raise ConfigError(
                f"scipy sqrtm left an imaginary component of {m:.3g} in the Fréchet distance; "
                "pass method='eigh' for the symmetric, always-real computation"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance_from_stats(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    method: str = "eigh",
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between two Gaussians given their means and covariances.

    FD = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2).

    Parameters
    ----------
    mu1, mu2 : ndarray of shape (d,)
        Means.
    sigma1, sigma2 : ndarray of shape (d, d)
        Covariance matrices (symmetric positive semi-definite).
    method : {'eigh', 'sqrtm'}, default='eigh'
        ``'eigh'`` computes tr sqrt(S1 S2) as tr sqrt(S1^½ S2 S1^½) with
        symmetric eigendecompositions (always real, exact for singular
        matrices). ``'sqrtm'`` reproduces ``pytorch_fid.calculate_frechet_distance``
        (scipy ``sqrtm`` of the non-symmetric product, ``eps * I`` added when the
        result is not finite, small imaginary parts dropped), which is what the
        authors ran.
    eps : float, default=1e-6
        Diagonal offset for the ``'sqrtm'`` fallback.

    Returns
    -------
    fd : float
        Squared Fréchet (2-Wasserstein) distance, clipped below at 0.

    Examples
    --------
    >>> import numpy as np
    >>> frechet_distance_from_stats(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))
    4.0
    """
    _check_method(method)
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != mu2.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise ShapeError(
            f"means {mu1.shape} and {mu2.shape} and covariances {s1.shape} and {s2.shape} do not match; "
            "pass statistics of embeddings with the same feature dimension"
        )
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    else:
        tr_covmean = _trace_sqrt_product_sqrtm(s1, s2, eps)
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def _fd_from_samples(x: np.ndarray, y: np.ndarray, method: str, eps: float = 1e-6) -> float:
    """FD of two sample sets (n1, d), (n2, d) with unbiased covariances."""
    n1, d = x.shape
    n2 = y.shape[0]
    mu1, mu2 = x.mean(0), y.mean(0)
    a, b = x - mu1, y - mu2
    if method == "sqrtm":
        return frechet_distance_from_stats(
            mu1, np.cov(x, rowvar=False), mu2, np.cov(y, rowvar=False), method="sqrtm", eps=eps
        )
    diff = mu1 - mu2
    tr1 = float((a * a).sum()) / (n1 - 1)
    tr2 = float((b * b).sum()) / (n2 - 1)
    if min(n1, n2) < d:
        # Nonzero eigenvalues of S1 S2 are the squared singular values of A Bᵀ / sqrt((n1-1)(n2-1)).
        sv = np.linalg.svd(a @ b.T, compute_uv=False)
        tr_covmean = float(sv.sum()) / math.sqrt((n1 - 1) * (n2 - 1))
    else:
        tr_covmean = _trace_sqrt_product_eigh(a.T @ a / (n1 - 1), b.T @ b / (n2 - 1))
    return max(float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean), 0.0)


def _prepare_fd(
    x: Any, y: Any, n_components: int | None, allow_singular: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    x = _as_embeddings(x, "x")
    y = _as_embeddings(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ShapeError(
            f"x has {x.shape[1]} features but y has {y.shape[1]}; pass embeddings from the same backbone and layer"
        )
    n_min = min(x.shape[0], y.shape[0])
    if n_min < 2:
        raise ConfigError(f"need at least 2 samples per set for a covariance, got {n_min}; pass more embeddings")
    d = x.shape[1]
    if n_components is not None:
        k = int(n_components)
        k_max = min(x.shape[0] + y.shape[0], d)
        if not 1 <= k <= k_max:
            raise ConfigError(f"n_components={n_components!r} must be in [1, {k_max}]; pass a smaller value")
        if not allow_singular and k >= n_min:
            raise ConfigError(
                f"need at least {k + 1} samples per set for a full-rank Fréchet distance in {k} dimensions, "
                f"got {n_min}; pass n_components={n_min - 1} or fewer, or allow_singular=True"
            )
        pca = PCA(n_components=k, random_state=seed).fit(np.vstack([x, y]))
        return pca.transform(x), pca.transform(y)
    if not allow_singular and n_min <= d:
        raise ConfigError(
            f"need at least {d + 1} samples per set for a full-rank Fréchet distance in {d} dimensions, "
            f"got {n_min}; pass n_components={n_min - 1} (or fewer) to compute it on a PCA-reduced space, "
            "or allow_singular=True to use the rank-deficient covariances as the authors did"
        )
    return x, y


def frechet_distance(
    x: Any,
    y: Any,
    *,
    n_components: int | None = None,
    allow_singular: bool = False,
    method: str = "eigh",
    seed: int = 0,
) -> float:
    """Fréchet distance between two embedding sets, each treated as a Gaussian.

    Parameters
    ----------
    x : array-like of shape (n1, d)
        Embeddings of the first dataset (one row per image).
    y : array-like of shape (n2, d)
        Embeddings of the second dataset.
    n_components : int, default=None
        If given, fit one PCA with this many components on the union of ``x``
        and ``y`` and compute the distance in that space.
    allow_singular : bool, default=False
        Compute the distance even when a set has no more samples than
        dimensions, so its covariance is rank-deficient (what the authors did
        on raw 1024-d embeddings of 20 VNC slices). The value is then defined
        but depends strongly on the sample size.
    method : {'eigh', 'sqrtm'}, default='eigh'
        See :func:`frechet_distance_from_stats`. With ``'eigh'`` and fewer
        samples than dimensions the trace term is computed from the singular
        values of the n1 × n2 cross-product of centred samples (exact, fast).
    seed : int, default=0
        PCA random state.

    Returns
    -------
    fd : float
        Means in float64, covariances unbiased (``np.cov(rowvar=False)``).

    Raises
    ------
    ShapeError
        If ``x`` and ``y`` have different numbers of features.
    ConfigError
        If a set has too few samples for a full-rank covariance and neither
        ``n_components`` nor ``allow_singular`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 3))
    >>> round(frechet_distance(x, x), 6)
    0.0
    >>> round(frechet_distance(x, x + 2.0), 6)
    12.0
    """
    _check_method(method)
    x, y = _prepare_fd(x, y, n_components, allow_singular, seed)
    return _fd_from_samples(x, y, method)


def bootstrap_frechet(
    x: Any,
    y: Any,
    *,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    n_components: int | None = None,
    allow_singular: bool = False,
    method: str = "eigh",
) -> tuple[float, float, float]:
    """Fréchet distance with a percentile bootstrap confidence interval.

    Each replicate resamples the rows of ``x`` and ``y`` independently, with
    replacement. The PCA of ``n_components`` (if any) is fitted once on the
    full sets and kept fixed.

    Parameters
    ----------
    x, y : array-like of shape (n1, d), (n2, d)
        Embeddings of the two datasets.
    n_boot : int, default=200
        Number of bootstrap replicates.
    ci : float, default=0.95
        Coverage of the percentile interval.
    seed : int, default=0
        Seed of the resampling and of the PCA.
    n_components, allow_singular, method
        As in :func:`frechet_distance`.

    Returns
    -------
    fd : float
        Distance on the full sets.
    low, high : float
        Percentile bounds of the bootstrap distribution. Resampling duplicates
        rows, which shrinks the covariances, so the bootstrap distribution sits
        above ``fd`` for small sets; read the interval as a spread, not a
        bias-corrected estimate.
    """
    _check_method(method)
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot={n_boot!r} is not positive; pass e.g. 200")
    if not 0.0 < ci < 1.0:
        raise ConfigError(f"ci={ci!r} is outside (0, 1); pass e.g. 0.95")
    x, y = _prepare_fd(x, y, n_components, allow_singular, seed)
    fd = _fd_from_samples(x, y, method)
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        xi = x[rng.integers(0, x.shape[0], x.shape[0])]
        yi = y[rng.integers(0, y.shape[0], y.shape[0])]
        values[i] = _fd_from_samples(xi, yi, method)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return fd, float(low), float(high)


# ----------------------------------------------------------------------------- probes and PCA


def _probe_model(n_components: int | None, seed: int) -> Any:
    steps: list[Any] = []
    if n_components is not None:
        steps.append(PCA(n_components=n_components, random_state=seed))
    steps.append(LogisticRegression(max_iter=1000))
    return make_pipeline(*steps)


def _auroc(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    if n_classes == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", labels=np.arange(n_classes)))


def _cv_scores(
    x: np.ndarray, y: np.ndarray, n_classes: int, n_splits: int, n_components: int | None, seed: int
) -> tuple[list[float], list[float], int | None]:
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    accs, aucs = [], []
    k_used: int | None = None
    for train, test in folds.split(x, y):
        k = None
        if n_components is not None:
            k = max(1, min(int(n_components), len(train) - 1, x.shape[1]))
            k_used = k if k_used is None else min(k_used, k)
        model = _probe_model(k, seed).fit(x[train], y[train])
        accs.append(float(accuracy_score(y[test], model.predict(x[test]))))
        aucs.append(_auroc(y[test], model.predict_proba(x[test]), n_classes))
    return accs, aucs, k_used


def _check_per_class(y: np.ndarray, classes: np.ndarray, needed: int, what: str, fix: str) -> None:
    counts = np.bincount(y, minlength=classes.size)
    if counts.min() < needed:
        worst = classes[int(np.argmin(counts))]
        worst = worst.item() if hasattr(worst, "item") else worst
        raise ConfigError(
            f"{what} needs at least {needed} samples per class, got {int(counts.min())} for {worst!r}; {fix}"
        )


def linear_probe(
    x: Any,
    y_labels: Any,
    *,
    n_splits: int = 5,
    n_components: int | None = 64,
    seed: int = 0,
    n_permutations: int = 5,
) -> dict[str, Any]:
    """Cross-validated linear probe that predicts the dataset from an embedding.

    PCA (fitted inside each training fold, so the test fold never leaks into
    it) followed by logistic regression (L2, ``max_iter=1000``), evaluated with
    stratified k-fold cross-validation. A label-permutation control reruns the
    same cross-validation with shuffled labels and must come out near chance.

    Parameters
    ----------
    x : array-like of shape (n_samples, d)
        Embeddings.
    y_labels : array-like of shape (n_samples,)
        Dataset name (or any class label) of each row; two or more classes.
    n_splits : int, default=5
        Number of stratified folds.
    n_components : int or None, default=64
        PCA components, capped at ``n_train - 1`` and ``d`` per fold; ``None``
        fits the probe on the raw features.
    seed : int, default=0
        Seed of the fold shuffling, PCA and permutations.
    n_permutations : int, default=5
        Number of label shuffles for the control; 0 skips it.

    Returns
    -------
    result : dict
        ``accuracy``, ``accuracy_std``, ``auroc``, ``auroc_std`` (mean and
        standard deviation over folds; AUROC is one-vs-rest macro for more than
        two classes), ``fold_accuracy``, ``fold_auroc``, ``permuted_accuracy``,
        ``permuted_auroc``, ``permuted_auroc_std`` (over permutations),
        ``permutation_pvalue`` (``(1 + #{permuted AUROC >= AUROC}) / (1 + n)``),
        ``n_components`` (the smallest number used), ``n_splits``,
        ``n_samples``, ``classes``.

    Raises
    ------
    ConfigError
        If there is one class only, or fewer samples of a class than folds.
    """
    x = _as_embeddings(x, "x")
    classes, y = _encode_labels(y_labels, x.shape[0], "y_labels")
    n_splits = int(n_splits)
    if n_splits < 2:
        raise ConfigError(f"n_splits={n_splits} is below 2; pass at least 2 folds")
    _check_per_class(y, classes, n_splits, "linear_probe", f"pass n_splits={max(2, np.bincount(y).min())} or fewer")
    accs, aucs, k_used = _cv_scores(x, y, classes.size, n_splits, n_components, seed)
    result: dict[str, Any] = {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "auroc": float(np.mean(aucs)),
        "auroc_std": float(np.std(aucs)),
        "fold_accuracy": accs,
        "fold_auroc": aucs,
    }
    rng = np.random.default_rng(seed)
    perm_acc, perm_auc = [], []
    for i in range(int(n_permutations)):
        yp = rng.permutation(y)
        a, u, _ = _cv_scores(x, yp, classes.size, n_splits, n_components, seed + 1 + i)
        perm_acc.append(float(np.mean(a)))
        perm_auc.append(float(np.mean(u)))
    nan = float("nan")
    result.update(
        permuted_accuracy=float(np.mean(perm_acc)) if perm_acc else nan,
        permuted_auroc=float(np.mean(perm_auc)) if perm_auc else nan,
        permuted_auroc_std=float(np.std(perm_auc)) if perm_auc else nan,
        permutation_pvalue=(
            (1.0 + sum(p >= result["auroc"] for p in perm_auc)) / (1.0 + len(perm_auc)) if perm_auc else nan
        ),
        n_components=k_used,
        n_splits=n_splits,
        n_samples=int(x.shape[0]),
        classes=[c.item() if hasattr(c, "item") else c for c in classes],
    )
    return result


def protocol_probe(
    x: Any, y_labels: Any, *, n_components: int | None = 64, test_size: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """The authors' probe: one PCA on all features, one stratified 80/20 split.

    Reproduces ``authors-protocol.md`` §6 exactly: ``PCA(64, random_state=seed)``
    fitted on the concatenated embeddings of both datasets (so the test rows
    shape the PCA too), ``train_test_split(stratify=labels, test_size=0.2,
    random_state=seed)``, ``LogisticRegression(max_iter=1000)``, accuracy at
    threshold 0.5 and ROC-AUC on the held-out part. Use :func:`linear_probe` for
    a cross-validated estimate without this leakage.

    Parameters
    ----------
    x : array-like of shape (n_samples, d)
        Embeddings.
    y_labels : array-like of shape (n_samples,)
        Dataset label of each row.
    n_components : int or None, default=64
        PCA components, capped at ``min(n_samples, d)``; ``None`` skips PCA.
    test_size : float, default=0.2
        Held-out fraction.
    seed : int, default=0
        PCA random state and split seed.

    Returns
    -------
    result : dict
        ``accuracy``, ``auroc``, ``n_components``, ``n_train``, ``n_test``, ``classes``.
    """
    x = _as_embeddings(x, "x")
    classes, y = _encode_labels(y_labels, x.shape[0], "y_labels")
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size={test_size!r} is outside (0, 1); pass e.g. 0.2")
    _check_per_class(y, classes, 2, "protocol_probe", "pass more embeddings of that class")
    k = None
    z = x
    if n_components is not None:
        k = min(int(n_components), x.shape[0], x.shape[1])
        z = PCA(n_components=k, random_state=seed).fit_transform(x)
    try:
        z_tr, z_te, y_tr, y_te = train_test_split(z, y, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as err:
        raise ConfigError(
            f"a stratified split with test_size={test_size} is impossible for {x.shape[0]} samples ({err}); "
            "pass a test_size that leaves every class in both parts"
        ) from None
    model = LogisticRegression(max_iter=1000).fit(z_tr, y_tr)
    return {
        "accuracy": float(accuracy_score(y_te, model.predict(z_te))),
        "auroc": _auroc(y_te, model.predict_proba(z_te), classes.size),
        "n_components": k,
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
    }


def pca_embed(x: Any, *, n_components: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project embeddings on their first principal components (no whitening).

    Parameters
    ----------
    x : array-like of shape (n_samples, d)
        Embeddings of all datasets together.
    n_components : int, default=2
        Number of components, at most ``min(n_samples, d)``.
    seed : int, default=0
        PCA random state.

    Returns
    -------
    coords : ndarray of shape (n_samples, n_components)
    explained_variance_ratio : ndarray of shape (n_components,)
    """
    x = _as_embeddings(x, "x")
    k_max = min(x.shape)
    if not 1 <= int(n_components) <= k_max:
        raise ConfigError(
            f"n_components={n_components!r} must be in [1, {k_max}] for x of shape {x.shape}; pass 2 or 3"
        )
    pca = PCA(n_components=int(n_components), random_state=seed)
    coords = pca.fit_transform(x)
    return coords, pca.explained_variance_ratio_.copy()


# ----------------------------------------------------------------------------- patch tokens


def _as_token_map(t: Any, name: str) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    t = np.asarray(t, dtype=np.float32)
    if t.ndim != 3:
        raise ShapeError(f"{name} has shape {t.shape}; pass token maps of shape (h, w, C)")
    return t


def patch_pca_rgb(
    tokens: Any,
    *,
    fit_on: Any = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    max_fit_tokens: int = 100_000,
    seed: int = 0,
) -> Any:
    """The classic DINO picture: the first three principal components of patch tokens as RGB.

    One PCA with three components is fitted jointly on the tokens of all given
    maps (so colours mean the same thing in every map), and each component is
    min-max scaled to [0, 1] between robust percentiles of the fitted tokens.

    Parameters
    ----------
    tokens : ndarray (h, w, C), ndarray (Z, h, w, C), list of (h, w, C) or dict name → (h, w, C)
        Token maps, e.g. from :func:`extract_token_maps`. Maps may differ in
        (h, w) but not in C.
    fit_on : same kinds as ``tokens`` or ndarray of shape (N, C), default=None
        Tokens to fit the PCA and the scaling on; ``None`` uses all of ``tokens``.
    percentiles : (float, float), default=(1.0, 99.0)
        Lower and upper percentiles mapped to 0 and 1.
    max_fit_tokens : int, default=100_000
        Random subsample used for fitting when there are more tokens.
    seed : int, default=0
        Seed of the subsample and the PCA.

    Returns
    -------
    rgb : same container as ``tokens``, with (h, w, 3) float32 arrays in [0, 1]
    """
    was_stack = False
    if isinstance(tokens, Mapping):
        keys = list(tokens)
        maps = [_as_token_map(tokens[k], f"tokens[{k!r}]") for k in keys]
    elif isinstance(tokens, (list, tuple)):
        keys = None
        maps = [_as_token_map(t, f"tokens[{i}]") for i, t in enumerate(tokens)]
    else:
        keys = None
        arr = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
        was_stack = arr.ndim == 4
        if was_stack:
            maps = [_as_token_map(t, f"tokens[{i}]") for i, t in enumerate(arr)]
        else:
            maps = [_as_token_map(arr, "tokens")]
    if not maps:
        raise ConfigError("tokens is empty; pass at least one token map")
    c = maps[0].shape[-1]
    if any(m.shape[-1] != c for m in maps):
        raise ShapeError(
            f"token maps have channel sizes {sorted({m.shape[-1] for m in maps})}; pass maps from one backbone"
        )
    if fit_on is None:
        fit = np.concatenate([m.reshape(-1, c) for m in maps])
    else:
        fa = fit_on.detach().cpu().numpy() if isinstance(fit_on, torch.Tensor) else fit_on
        if isinstance(fa, Mapping):
            fa = list(fa.values())
        if isinstance(fa, (list, tuple)):
            fit = np.concatenate([np.asarray(f, np.float32).reshape(-1, c) for f in fa])
        else:
            fa = np.asarray(fa, np.float32)
            if fa.shape[-1] != c:
                raise ShapeError(
                    f"fit_on has {fa.shape[-1]} channels but tokens have {c}; pass tokens of the same backbone"
                )
            fit = fa.reshape(-1, c)
    if fit.shape[0] < 3 or c < 3:
        raise ConfigError(f"need at least 3 tokens with 3 channels for an RGB PCA, got {fit.shape}; pass bigger maps")
    rng = np.random.default_rng(seed)
    if fit.shape[0] > max_fit_tokens:
        fit = fit[rng.choice(fit.shape[0], max_fit_tokens, replace=False)]
    pca = PCA(n_components=3, random_state=seed).fit(fit)
    proj = pca.transform(fit)
    lo, hi = np.percentile(proj, percentiles, axis=0)
    scale = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    out = []
    for m in maps:
        p = pca.transform(m.reshape(-1, c))
        rgb = np.clip((p - lo) / scale, 0.0, 1.0).astype(np.float32)
        out.append(rgb.reshape(m.shape[0], m.shape[1], 3))
    if keys is not None:
        return dict(zip(keys, out))
    if isinstance(tokens, (list, tuple)):
        return out
    return np.stack(out) if was_stack else out[0]


def downsample_mask_to_grid(
    mask: Any, grid: tuple[int, int], *, patch_size: int | None = None, threshold: float | None = 0.5
) -> np.ndarray:
    """Label each patch token with the foreground fraction of the pixels it covers.

    Parameters
    ----------
    mask : array-like of shape (H, W) or (Z, H, W)
        Binary mask (foreground ``> 0``) of the image the tokens came from.
    grid : (int, int)
        Token grid (h, w).
    patch_size : int, default=None
        If given, the mask must be at model-input resolution, exactly
        ``(h * patch_size, w * patch_size)``, and each token gets the mean of its
        patch. If ``None``, the mask may have any size and is area-averaged onto
        the grid (the image was resized to the model input as a whole).
    threshold : float or None, default=0.5
        Return ``fraction >= threshold`` as bool; ``None`` returns the fractions.

    Returns
    -------
    labels : ndarray of shape (h, w) or (Z, h, w)
        Bool (with a threshold) or float32 fractions in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((4, 4), bool); m[:2, :2] = True; m[2, 2] = True
    >>> downsample_mask_to_grid(m, (2, 2), patch_size=2, threshold=None)
    array([[1.  , 0.  ],
           [0.  , 0.25]], dtype=float32)
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim not in (2, 3):
        raise ShapeError(f"mask has shape {m.shape}; pass one mask (H, W) or a stack (Z, H, W)")
    h, w = (int(g) for g in grid)
    if h < 1 or w < 1:
        raise ConfigError(f"grid={grid!r} is not positive; pass the token grid (h, w)")
    stack = (m > 0).astype(np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    H, W = stack.shape[-2:]
    if patch_size is not None:
        p = int(patch_size)
        if (H, W) != (h * p, w * p):
            raise ShapeError(
                f"mask is {H}x{W} but grid {h}x{w} with patch_size={p} covers {h * p}x{w * p}; "
                "resize the mask with the image, or pass patch_size=None to area-average"
            )
        frac = stack.reshape(-1, h, p, w, p).mean(axis=(2, 4))
    else:
        if H < h or W < w:
            raise ShapeError(f"mask is {H}x{W}, smaller than the grid {h}x{w}; pass the full-resolution mask")
        frac = F.adaptive_avg_pool2d(torch.from_numpy(stack)[:, None], (h, w))[:, 0].numpy()
    frac = frac.astype(np.float32)
    if m.ndim == 2:
        frac = frac[0]
    if threshold is None:
        return frac
    return frac >= float(threshold)


def token_separability(
    tokens: Any,
    labels: Any,
    *,
    n_splits: int = 5,
    seed: int = 0,
    max_tokens: int = 20_000,
) -> dict[str, float]:
    """How well a linear read-out separates foreground from background tokens.

    A segmentation head is a (non-linear, but local) read-out of the patch
    tokens; if foreground and background tokens are linearly separable the
    head has an easy job. This reports a cross-validated logistic-regression
    probe (standardised features, ``max_iter=1000``) and two geometric
    summaries.

    Parameters
    ----------
    tokens : array-like of shape (N, C)
        Patch tokens (flatten (Z, h, w, C) maps with ``reshape(-1, C)``).
    labels : array-like of shape (N,)
        Bool or {0, 1} foreground labels, e.g. from
        :func:`downsample_mask_to_grid` (flattened).
    n_splits : int, default=5
        Stratified folds.
    seed : int, default=0
        Seed of subsampling and folds.
    max_tokens : int, default=20_000
        Random subsample used when there are more tokens.

    Returns
    -------
    result : dict
        ``auroc``, ``auroc_std``, ``accuracy``, ``balanced_accuracy`` (mean over
        folds), ``fisher_ratio`` (squared gap of the class means along their
        difference direction over the sum of the class variances along it),
        ``centroid_distance`` (Euclidean distance of the class means),
        ``centroid_cosine``, ``n_fg``, ``n_bg``, ``fg_fraction``.
    """
    x = _as_embeddings(tokens, "tokens")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != x.shape[0]:
        raise ShapeError(f"labels has shape {lab.shape} but tokens has {x.shape[0]} rows; pass one label per token")
    if lab.dtype != bool:
        if not np.isin(lab, (0, 1)).all():
            raise ConfigError(
                "labels are not boolean or {0, 1}; threshold foreground fractions first, "
                "e.g. downsample_mask_to_grid(..., threshold=0.5)"
            )
        lab = lab.astype(bool)
    y = lab.astype(int)
    n_fg, n_bg = int(y.sum()), int((1 - y).sum())
    if n_fg == 0 or n_bg == 0:
        raise ConfigError(
            f"labels hold {n_fg} foreground and {n_bg} background tokens; pass tokens from slices that contain both"
        )
    rng = np.random.default_rng(seed)
    if x.shape[0] > max_tokens:
        idx = rng.choice(x.shape[0], int(max_tokens), replace=False)
        x, y = x[idx], y[idx]
    _check_per_class(
        y, np.array([False, True]), int(n_splits), "token_separability", "pass more tokens or fewer n_splits"
    )
    folds = StratifiedKFold(n_splits=int(n_splits), shuffle=True, random_state=seed)
    aucs, accs, baccs = [], [], []
    for train, test in folds.split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[train], y[train])
        proba = model.predict_proba(x[test])[:, 1]
        pred = proba >= 0.5
        aucs.append(float(roc_auc_score(y[test], proba)))
        accs.append(float(accuracy_score(y[test], pred)))
        baccs.append(float(balanced_accuracy_score(y[test], pred)))
    fg, bg = x[y == 1], x[y == 0]
    m1, m0 = fg.mean(0), bg.mean(0)
    diff = m1 - m0
    dist = float(np.linalg.norm(diff))
    if dist > 0:
        u = diff / dist
        p1, p0 = fg @ u, bg @ u
        denom = float(p1.var() + p0.var())
        fisher = float((p1.mean() - p0.mean()) ** 2 / denom) if denom > 0 else float("inf")
    else:
        fisher = 0.0
    norms = float(np.linalg.norm(m1) * np.linalg.norm(m0))
    return {
        "auroc": float(np.mean(aucs)),
        "auroc_std": float(np.std(aucs)),
        "accuracy": float(np.mean(accs)),
        "balanced_accuracy": float(np.mean(baccs)),
        "fisher_ratio": fisher,
        "centroid_distance": dist,
        "centroid_cosine": float(m1 @ m0 / norms) if norms > 0 else float("nan"),
        "n_fg": n_fg,
        "n_bg": n_bg,
        "fg_fraction": n_fg / (n_fg + n_bg),
    }


# ----------------------------------------------------------------------------- extraction (needs a backbone)


def _iter_batches(images: Any, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of equally sized slices (a new batch starts when the size changes)."""
    if isinstance(images, np.ndarray):
        if images.ndim != 3:
            raise ShapeError(f"images has shape {images.shape}; pass a stack of shape (Z, H, W)")
        return [images[i : i + batch_size] for i in range(0, images.shape[0], batch_size)]
    batches: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for i, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim != 2:
            raise ShapeError(f"images[{i}] has shape {im.shape}; pass 2-D slices (H, W)")
        if current and (im.shape != current[0].shape or len(current) == batch_size):
            batches.append(np.stack(current))
            current = []
        current.append(im)
    if current:
        batches.append(np.stack(current))
    return batches


def _run_backbone(
    fn: Callable[[torch.Tensor], torch.Tensor],
    backbone: Any,
    images: Any,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int,
    device: str | torch.device,
    progress: bool,
    desc: str,
) -> list[np.ndarray]:
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not positive; pass at least 1")
    batches = _iter_batches(images, int(batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=desc)  # type: ignore[assignment]
    was_training = getattr(backbone, "training", False)
    if hasattr(backbone, "eval"):
        backbone.eval()
    outputs = []
    try:
        with torch.no_grad():
            for batch in batches:
                x = normalise(batch)
                x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
                if x.ndim != 4 or x.shape[0] != batch.shape[0]:
                    raise ShapeError(
                        f"normalise returned shape {tuple(x.shape)} for a batch of {batch.shape[0]} slices; "
                        "make it return (B, 3, H, W)"
                    )
                outputs.append(fn(x.to(device)).detach().float().cpu().numpy())
    finally:
        if was_training and hasattr(backbone, "train"):
            backbone.train()
    return outputs


def extract_embeddings(
    backbone: Any,
    images: Any,
    *,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """One global embedding per slice: ``backbone.embed`` (mean of patch tokens).

    Parameters
    ----------
    backbone : emlib backbone
        Object with ``embed(x: (B, 3, H, W)) -> (B, C)``; it is put in eval
        mode for the call and its training flag restored afterwards.
    images : ndarray of shape (Z, H, W), dtype uint8, or sequence of (H, W) arrays
        Slices; in a sequence, consecutive slices of the same size are batched.
    normalise : callable
        Maps a uint8 batch (B, H, W) to a float batch (B, 3, H, W) (resize,
        grey → RGB, ImageNet statistics), from the data layer.
    batch_size : int, default=8
        Slices per forward pass.
    device : str or torch.device, default='cpu'
        Where the batch is sent; the backbone must already be there.
    progress : bool, default=True
        Show a tqdm bar over batches.

    Returns
    -------
    embeddings : ndarray of shape (Z, C), dtype float32
    """
    out = _run_backbone(backbone.embed, backbone, images, normalise, batch_size, device, progress, "embeddings")
    for o in out:
        if o.ndim != 2:
            raise ShapeError(f"backbone.embed returned shape {o.shape}; make it return (B, C)")
    return np.concatenate(out).astype(np.float32)


def extract_token_maps(
    backbone: Any,
    images: Any,
    *,
    normalise: Callable[[np.ndarray], Any],
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Patch-token maps of each slice, channels last, for :func:`patch_pca_rgb`.

    Calls ``backbone(x) -> (B, C, h, w)``. Mind the memory: a 1022 × 756 slice
    through a ViT-L/14 gives 73 × 54 × 1024 floats (16 MB).

    Parameters
    ----------
    backbone, images, normalise, batch_size, device, progress
        As in :func:`extract_embeddings`; all slices must give the same grid.

    Returns
    -------
    tokens : ndarray of shape (Z, h, w, C), dtype float32
    """
    out = _run_backbone(backbone, backbone, images, normalise, batch_size, device, progress, "token maps")
    for o in out:
        if o.ndim != 4:
            raise ShapeError(f"backbone(x) returned shape {o.shape}; make it return (B, C, h, w)")
    grids = {o.shape[1:] for o in out}
    if len(grids) > 1:
        raise ShapeError(f"slices gave token maps of shapes {sorted(grids)}; pass slices of one size")
    return np.concatenate(out).transpose(0, 2, 3, 1).astype(np.float32)


# ----------------------------------------------------------------------------- report


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
    n_boot, ci : int, float
        Bootstrap of the Fréchet distance, see :func:`bootstrap_frechet`.
    probe_components, n_splits, n_permutations : int
        Cross-validated probe, see :func:`linear_probe`; the protocol probe
        (:func:`protocol_probe`) uses ``probe_components`` too.
    seed : int, default=0
        Seed of everything random.

    Returns
    -------
    report : pandas.DataFrame with one row
        Columns: backbone, adapter, weights_label, dataset_a, dataset_b, n_a,
        n_b, embed_dim, fd, fd_low, fd_high, fd_space, fd_rank_deficient,
        probe_accuracy, probe_accuracy_std, probe_auroc, probe_auroc_std,
        permuted_auroc, permuted_auroc_std, probe_pvalue, probe_n_components,
        protocol_accuracy, protocol_auroc, pca_pc1_variance, pca_pc2_variance.
    """
    if len(emb) != 2:
        raise ConfigError(f"emb has {len(emb)} datasets ({sorted(emb)}); pass exactly two, e.g. Lucchi++ and VNC")
    (name_a, xa), (name_b, xb) = ((k, _as_embeddings(v, f"emb[{k!r}]")) for k, v in emb.items())
    if xa.shape[1] != xb.shape[1]:
        raise ShapeError(
            f"emb[{name_a!r}] has {xa.shape[1]} features but emb[{name_b!r}] has {xb.shape[1]}; "
            "pass embeddings from the same backbone"
        )
    d = xa.shape[1]
    fd, low, high = bootstrap_frechet(
        xa, xb, n_boot=n_boot, ci=ci, seed=seed, n_components=fd_components, allow_singular=allow_singular
    )
    fd_dim = d if fd_components is None else int(fd_components)
    x = np.vstack([xa, xb])
    labels = np.array([name_a] * len(xa) + [name_b] * len(xb))
    probe = linear_probe(
        x, labels, n_splits=n_splits, n_components=probe_components, seed=seed, n_permutations=n_permutations
    )
    proto = protocol_probe(x, labels, n_components=probe_components, seed=seed)
    _, evr = pca_embed(x, n_components=min(2, *x.shape), seed=seed)
    evr = np.concatenate([evr, [np.nan, np.nan]])[:2]
    row = {
        "backbone": backbone,
        "adapter": adapter,
        "weights_label": weights_label,
        "dataset_a": name_a,
        "dataset_b": name_b,
        "n_a": int(len(xa)),
        "n_b": int(len(xb)),
        "embed_dim": int(d),
        "fd": fd,
        "fd_low": low,
        "fd_high": high,
        "fd_space": "raw" if fd_components is None else f"pca{int(fd_components)}",
        "fd_rank_deficient": bool(min(len(xa), len(xb)) <= fd_dim),
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
        "pca_pc1_variance": float(evr[0]),
        "pca_pc2_variance": float(evr[1]),
    }
    return pd.DataFrame([row])


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
    df.to_csv(csv_path, index=False)
    records = json.loads(df.to_json(orient="records"))
    json_path.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"csv": csv_path, "json": json_path}
