"""PCA views of embeddings and patch tokens, and what a segmentation head can read from the tokens."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emlib.diagnostics._checks import as_embeddings, check_per_class
from emlib.errors import ConfigError, ShapeError

__all__ = ["pca_embed", "patch_pca_rgb", "downsample_mask_to_grid", "token_separability"]


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
    x = as_embeddings(x, "x")
    k_max = min(x.shape)
    if not 1 <= int(n_components) <= k_max:
        raise ConfigError(
            f"n_components={n_components!r} must be in [1, {k_max}] for x of shape {x.shape}; pass 2 or 3"
        )
    pca = PCA(n_components=int(n_components), random_state=seed)
    coords = pca.fit_transform(x)
    return coords, pca.explained_variance_ratio_.copy()


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
        Token maps, e.g. from :func:`emlib.models.extract_token_maps`. Maps may differ in
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
    x = as_embeddings(tokens, "tokens")
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
    check_per_class(
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
