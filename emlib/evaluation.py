"""Evaluation of whole test slices: pooled IoU_fg over the test stack, and the cross-dataset matrix.

Every model is tested on both test sets (Lucchi++ ``Test_*`` and VNC stack1 slices 00, 03, 08).
Pixel counts are pooled over the whole test stack before IoU is taken, as the authors do
(``scripts/eval_em_seg.py``), never averaged per slice.

A run's plug-ins (:mod:`emlib.plugins`) see the test volumes as they saw the training volumes
(``transform_volume``) and give the model its extra arguments (``forward_kwargs``, e.g. the test
set's domain).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from emlib.cache import FeatureCache
from emlib.config import MIXED_TEST, SCORED_TEST_SETS, TEST_LABELS, TEST_SETS, RunConfig
from emlib.data import (
    Volume, center_region, data_root, load_volume, normalize, protocol_size, resize_slice, select_test_slices,
)
from emlib.device import resolve_device
from emlib.errors import DataError
from emlib.featurestore import EVAL_OVERLAP, window_store
from emlib.metrics import PooledCounts
from emlib.models import domain_index
from emlib.plugins import Plugin, forward_kwargs, plugins_for, transform_volume
from emlib.stitching import sliding_window_predict
from emlib.train import TrainedModel
from emlib.validation import check_choice

__all__ = ["EvalResult", "evaluate", "evaluate_both", "is_degenerate", "scored_rows"]


@dataclass
class EvalResult:
    """Scores of one model on one test set.

    Attributes
    ----------
    test_set : str
    scores : dict
        ``iou_fg, iou_bg, miou, dice_fg, dice_bg, mean_dice`` and the pooled counts, against the true labels.
    n_slices : int
    seconds : float
    images, masks, predictions : ndarray of shape (Z, H, W) or None
        The evaluated slices (after region crop / protocol resize), kept when asked for.
    label_scores : dict of str → dict
        The scores against each kind of test labels of :data:`~emlib.config.TEST_LABELS`
        (``"correct"`` is ``scores``; ``"published"``: the labels the authors' script gives the images).
    counts : dict of str → PooledCounts
        The pooled counts behind ``label_scores`` (summed over test sets for the mixed test set).
    """

    test_set: str
    scores: dict[str, float]
    n_slices: int
    seconds: float
    slice_ids: tuple[str, ...] = ()
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    predictions: np.ndarray | None = None
    label_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, PooledCounts] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _n_test_slices(test_set: str, root: str) -> int:
    # counted once per process: the volume cache holds only a few stacks, and re-reading all 165
    # Lucchi++ test slices just to count them cost seconds per run in a grid
    return len(load_volume(test_set, "test", root=root, slices=None).slice_ids)


def _test_volume(
    trained: TrainedModel, test_set: str, root: str | os.PathLike[str] | None, *, labels: str = "correct"
) -> Volume:
    cfg = trained.config
    n_total = _n_test_slices(test_set, str(data_root(root))) if cfg.eval_slices else 0
    keep = select_test_slices(n_total, cfg.eval_slices) if cfg.eval_slices else None
    return load_volume(test_set, "test", root=root, slices=keep, pairing=labels)


def _test_slices(
    trained: TrainedModel, test_set: str, plugins: list[Plugin], root: str | os.PathLike[str] | None, *,
    labels: str = "correct",
) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The selected test slices as the model sees them (plug-ins, ``eval_region``, protocol resize): (volume, images, masks).

    ``labels="published"``: with the labels the authors' script gives these images (:mod:`emlib.data.pairing`).
    """
    cfg = trained.config
    vol = _test_volume(trained, test_set, root, labels=labels)
    images, masks = transform_volume(plugins, test_set, np.asarray(vol.images), np.asarray(vol.masks))
    images = center_region(images, cfg.eval_region)
    masks = center_region(masks, cfg.eval_region)
    if cfg.crop is None and cfg.long_edge is not None:
        size = protocol_size(*images.shape[1:], long_edge=cfg.long_edge, multiple=trained.patch_size)
        images = np.stack([resize_slice(im, size) for im in images])
        masks = np.stack([resize_slice(m, size, is_mask=True) for m in masks])
    return vol, images, masks


def _window(cfg: RunConfig, patch_size: int, height: int, width: int) -> int | None:
    """The sliding window for slices of ``height`` x ``width``; None for one pass of the whole slice (the protocol)."""
    p = patch_size
    if cfg.crop is None and height % p == 0 and width % p == 0:
        return None
    window = cfg.eval_window or cfg.crop or (height // p * p)
    return min(window, height // p * p, width // p * p) if window > min(height, width) else window


def _slice_predictor(
    trained: TrainedModel, test_set: str, plugins: list[Plugin], device: torch.device, *, window: int | None,
    batch_size: int, store: FeatureCache | None = None,
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Logits (K, H, W) on the CPU of one normalised slice (C, H, W), slice ``z`` of the test set: in one pass
    (``window=None``) or window by window; with a ``store`` the head reads the tokens of each window from it."""
    cfg = trained.config
    model = trained.model.eval().to(device)
    use_amp = cfg.amp and device.type == "cuda"
    domain = forward_kwargs(plugins, domain_index(test_set))

    def predict_fn(x: torch.Tensor, first: int | None = None) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            if store is None or first is None:
                return model(x, **domain).float()
            items = list(range(first, first + len(x)))
            feats = store.get(items, lambda missing: x[[i - first for i in missing]], device, compute=model.backbone)
            return model.head(feats, tuple(x.shape[-2:]), **domain).float()

    def predict(x: torch.Tensor, z: int) -> torch.Tensor:
        done = [z * x.shape[-2] * x.shape[-1]]  # the store's item of the next window (window_store's numbering)

        def stored_fn(batch: torch.Tensor) -> torch.Tensor:
            done[0] += len(batch)
            return predict_fn(batch, done[0] - len(batch) if store is not None else None)

        if window is None:
            with torch.no_grad():
                return stored_fn(x[None].to(device))[0].cpu()
        return sliding_window_predict(
            stored_fn, x, window=window, overlap=EVAL_OVERLAP, multiple=trained.patch_size, batch_size=batch_size,
            device=device,
        )

    return predict


def evaluate(
    trained: TrainedModel,
    test_set: str,
    *,
    root: str | os.PathLike[str] | None = None,
    keep_predictions: bool = False,
    batch_size: int = 4,
    progress: bool = False,
) -> EvalResult:
    """Predict every selected test slice and pool the pixel counts.

    Profiles that train on crops predict with a sliding window of ``eval_window`` (else the
    training crop) and 25 % overlap. A frozen run's head reads the backbone tokens of each window (or
    slice) from the feature store (:func:`emlib.featurestore.window_store`): computed by the first frozen
    run of the backbone evaluated on these slices, read back by every later one. In the protocol mode (``crop=None``) each slice is resized to
    the long side ``long_edge`` (sides floored to the patch size) and predicted in ONE forward pass
    of the whole slice, and masks are compared at that resized resolution, as the authors do.

    Parameters
    ----------
    trained : TrainedModel
    test_set : {'lucchi_pp', 'vnc'}
    root : path, default=None
        Data root (None: ``$EMLIB_DATA`` or the download cache).
    keep_predictions : bool, default=False
        Keep the evaluated images, masks and predictions in the result.
    batch_size : int, default=4
        Windows per forward pass of the sliding window.
    progress : bool, default=False
        A tqdm bar over slices.

    Returns
    -------
    EvalResult
    """
    cfg = trained.config
    device = resolve_device(cfg.device)
    plugins = plugins_for(cfg, root)
    vol, images, masks = _test_slices(trained, test_set, plugins, root)
    targets = {"correct": masks, "published": _published_masks(trained, test_set, plugins, root, vol, masks)}
    window = _window(cfg, trained.patch_size, *images.shape[1:])
    store = window_store(
        cfg, trained.model.backbone, test_set, slice_ids=vol.slice_ids, shape=images.shape[1:], window=window,
        mean=trained.mean, std=trained.std, patch_size=trained.patch_size, plugins=plugins, root=root, run_dir=trained.run_dir,
    ) if cfg.regime == "frozen" else None
    predict = _slice_predictor(trained, test_set, plugins, device, window=window, batch_size=batch_size, store=store)
    pooled = {labels: PooledCounts() for labels in TEST_LABELS}
    preds = np.zeros(images.shape, bool) if keep_predictions else None
    t0 = time.perf_counter()
    for z in tqdm(range(len(images)), desc=f"test {test_set}", disable=not progress, leave=False):
        pred = predict(normalize(images[z], trained.mean, trained.std)[0], z).argmax(0).numpy().astype(bool)
        for labels, counts in pooled.items():
            counts.update(pred, targets[labels][z])
        if preds is not None:
            preds[z] = pred
    if store is not None:
        store.save()
    label_scores = {labels: counts.compute() for labels, counts in pooled.items()}
    return EvalResult(
        test_set=test_set,
        scores=label_scores["correct"],
        n_slices=len(images),
        seconds=time.perf_counter() - t0,
        slice_ids=vol.slice_ids,
        images=images if keep_predictions else None,
        masks=masks if keep_predictions else None,
        predictions=preds,
        label_scores=label_scores,
        counts=pooled,
    )


def _published_masks(
    trained: TrainedModel, test_set: str, plugins: list[Plugin], root: str | os.PathLike[str] | None, vol: Volume,
    masks: np.ndarray,
) -> np.ndarray:
    """The test masks the authors' script gives the same slices (``masks`` itself where it pairs them right: VNC)."""
    published = _test_volume(trained, test_set, root, labels="published")
    if published.slice_ids != vol.slice_ids:  # the data layer keeps slices in stack order; only labels move
        raise DataError(f"the published pairing of {test_set} lists other slices than the correct one; restore the data folder")
    if np.array_equal(np.asarray(published.masks), np.asarray(vol.masks)):
        return masks
    return _test_slices(trained, test_set, plugins, root, labels="published")[2]


def is_degenerate(scores: dict[str, float]) -> bool:
    """True when a model predicted one class for every pixel of a test set (pooled counts).

    Such a model scores IoU_fg = foreground fraction (all foreground) or 0 (all background)
    whatever it was trained on, so its row says nothing about the regime.

    Examples
    --------
    >>> is_degenerate({"tp": 5, "fp": 95, "fn": 0, "tn": 0}), is_degenerate({"tp": 5, "fp": 3, "fn": 2, "tn": 90})
    (True, False)
    """
    predicted_fg = scores["tp"] + scores["fp"]
    return bool(predicted_fg == 0 or predicted_fg == scores["tp"] + scores["fp"] + scores["fn"] + scores["tn"])


def _in_domain(train_set: str, test_set: str) -> bool:
    """The model was trained on every dataset of the test set (the mixed test set: paired runs only)."""
    return train_set == "paired" or train_set == test_set


def evaluate_both(
    trained: TrainedModel, *, root: str | os.PathLike[str] | None = None, keep_predictions: bool = False, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, EvalResult]]:
    """Test one model on Lucchi++ and on VNC: a tidy table and the raw results (one per test set).

    The table has one row per ``test_set`` of :data:`~emlib.config.SCORED_TEST_SETS` and ``test_labels``
    of :data:`~emlib.config.TEST_LABELS`: each test set alone, and ``"mixed"``, the pixel counts of both
    pooled (the authors' number for paired runs, whose test folder holds both); scored against the true
    labels and against those the authors' published script gives the test images. The per-test-set rows
    against true labels (:func:`scored_rows`) are the cross-dataset matrix.
    """
    cfg = trained.config
    results = {t: evaluate(trained, t, root=root, keep_predictions=keep_predictions, progress=progress) for t in TEST_SETS}
    base = {
        "run_id": cfg.run_id, "backbone": "unet" if cfg.regime == "unet" else cfg.backbone,
        "regime": cfg.regime, "train_set": cfg.train_set, "pairing": cfg.pairing, "balance": cfg.balance,
        "seed": cfg.seed,
    }
    rows = []
    for labels in TEST_LABELS:
        parts = {t: (res.counts[labels], res.n_slices, res.seconds) for t, res in results.items()}
        parts[MIXED_TEST] = (
            sum((res.counts[labels] for res in results.values()), PooledCounts()),
            sum(res.n_slices for res in results.values()),
            sum(res.seconds for res in results.values()),
        )
        for test_set, (counts, n_slices, seconds) in parts.items():
            scores = counts.compute()
            rows.append(
                {
                    **base, "test_set": test_set, "test_labels": labels, "in_domain": _in_domain(cfg.train_set, test_set),
                    "n_test_slices": n_slices,
                    **{k: scores[k] for k in ("iou_fg", "dice_fg", "iou_bg", "miou", "mean_dice")},
                    "fg_fraction_pred": scores["fg_fraction_pred"], "degenerate": is_degenerate(scores),
                    "weights_label": trained.weights_label, "eval_seconds": seconds,
                }
            )
    return pd.DataFrame(rows), results


def scored_rows(
    results: pd.DataFrame, *, test_sets: Sequence[str] = TEST_SETS, test_labels: str = "correct"
) -> pd.DataFrame:
    """The rows of a results table scored on ``test_sets`` against ``test_labels``.

    The default is the cross-dataset matrix: each test set alone, true labels. Tables written before
    the mixed and published rows existed hold only those rows; they are read as such.

    Parameters
    ----------
    results : DataFrame
        Tidy results (:func:`emlib.grid.runner.read_results`, :func:`evaluate_both`).
    test_sets : sequence of str, default=TEST_SETS
        Among :data:`~emlib.config.SCORED_TEST_SETS` (``"mixed"``: both test sets pooled).
    test_labels : {'correct', 'published'}, default='correct'

    Returns
    -------
    DataFrame
        Those rows, index reset.

    Examples
    --------
    >>> table = pd.DataFrame({"test_set": ["lucchi_pp", "mixed", "lucchi_pp"], "test_labels": ["correct", "correct", "published"]})
    >>> scored_rows(table).shape[0], scored_rows(table, test_sets=["mixed"]).shape[0]
    (1, 1)
    """
    check_choice("test_labels", test_labels, TEST_LABELS)
    for test_set in test_sets:
        check_choice("test_sets", test_set, SCORED_TEST_SETS)
    labels = results["test_labels"] if "test_labels" in results else pd.Series("correct", index=results.index)
    keep = results["test_set"].isin(list(test_sets)) & (labels == test_labels)
    return results[keep].reset_index(drop=True)
