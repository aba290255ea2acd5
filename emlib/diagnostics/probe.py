"""Linear probes that predict the dataset from an embedding (accuracy and AUROC are scores).

:func:`protocol_probe` is the authors' single 80/20 split; :func:`linear_probe` a
leakage-free cross-validated version with a label-permutation control.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline

from emlib.diagnostics._checks import as_embeddings, check_per_class
from emlib.errors import ConfigError, ShapeError

__all__ = ["linear_probe", "protocol_probe"]


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
    x = as_embeddings(x, "x")
    classes, y = _encode_labels(y_labels, x.shape[0], "y_labels")
    n_splits = int(n_splits)
    if n_splits < 2:
        raise ConfigError(f"n_splits={n_splits} is below 2; pass at least 2 folds")
    check_per_class(y, classes, n_splits, "linear_probe", f"pass n_splits={max(2, np.bincount(y).min())} or fewer")
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
        ``accuracy``, ``auroc``, ``n_components``, ``n_train``, ``n_test``, ``test_counts`` (test
        samples per class), ``classes``.
    """
    x = as_embeddings(x, "x")
    classes, y = _encode_labels(y_labels, x.shape[0], "y_labels")
    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size={test_size!r} is outside (0, 1); pass e.g. 0.2")
    check_per_class(y, classes, 2, "protocol_probe", "pass more embeddings of that class")
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
    names = [c.item() if hasattr(c, "item") else c for c in classes]
    return {
        "accuracy": float(accuracy_score(y_te, model.predict(z_te))),
        "auroc": _auroc(y_te, model.predict_proba(z_te), classes.size),
        "n_components": k,
        "n_train": int(len(y_tr)),
        "n_test": int(len(y_te)),
        "test_counts": {name: int(np.sum(y_te == i)) for i, name in enumerate(names)},
        "classes": names,
    }
