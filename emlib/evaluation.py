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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import torch

from tqdm.auto import tqdm

from emlib.config import TEST_SETS, RunConfig
from emlib.data import (
    Volume, center_region, data_root, load_volume, normalize, protocol_size, resize_slice, select_test_slices,
)
from emlib.device import resolve_device
from emlib.metrics import PooledCounts
from emlib.models import domain_index
from emlib.plugins import Plugin, forward_kwargs, plugins_for, transform_volume
from emlib.stitching import sliding_window_predict
from emlib.train import TrainedModel

__all__ = ["EvalResult", "evaluate", "evaluate_both", "is_degenerate"]


@dataclass
class EvalResult:
    """Scores of one model on one test set.

    Attributes
    ----------
    test_set : str
    scores : dict
        ``iou_fg, iou_bg, miou, dice_fg, dice_bg, mean_dice`` and the pooled counts.
    n_slices : int
    seconds : float
    images, masks, predictions : ndarray of shape (Z, H, W) or None
        The evaluated slices (after region crop / protocol resize), kept when asked for.
    """

    test_set: str
    scores: dict[str, float]
    n_slices: int
    seconds: float
    slice_ids: tuple[str, ...] = ()
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    predictions: np.ndarray | None = None


@lru_cache(maxsize=8)
def _n_test_slices(test_set: str, root: str) -> int:
    # counted once per process: the volume cache holds only a few stacks, and re-reading all 165
    # Lucchi++ test slices just to count them cost seconds per run in a grid
    return len(load_volume(test_set, "test", root=root, slices=None).slice_ids)


def _test_volume(trained: TrainedModel, test_set: str, root: str | os.PathLike[str] | None) -> Volume:
    cfg = trained.config
    n_total = _n_test_slices(test_set, str(data_root(root))) if cfg.eval_slices else 0
    keep = select_test_slices(n_total, cfg.eval_slices) if cfg.eval_slices else None
    return load_volume(test_set, "test", root=root, slices=keep)


def _test_slices(
    trained: TrainedModel, test_set: str, plugins: list[Plugin], root: str | os.PathLike[str] | None
) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The selected test slices as the model sees them (plug-ins, ``eval_region``, protocol resize): (volume, images, masks)."""
    cfg = trained.config
    vol = _test_volume(trained, test_set, root)
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
    batch_size: int,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits (K, H, W) on the CPU of one normalised slice (C, H, W): in one pass (``window=None``) or window by window."""
    cfg = trained.config
    model = trained.model.eval().to(device)
    use_amp = cfg.amp and device.type == "cuda"
    domain = forward_kwargs(plugins, domain_index(test_set))

    def predict_fn(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            return model(x, **domain).float()

    def predict(x: torch.Tensor) -> torch.Tensor:
        if window is None:
            with torch.no_grad():
                return predict_fn(x[None].to(device))[0].cpu()
        return sliding_window_predict(
            predict_fn, x, window=window, overlap=0.25, multiple=trained.patch_size, batch_size=batch_size, device=device
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
    training crop) and 25 % overlap. In the protocol mode (``crop=None``) each slice is resized to
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
    window = _window(cfg, trained.patch_size, *images.shape[1:])
    predict = _slice_predictor(trained, test_set, plugins, device, window=window, batch_size=batch_size)
    pooled = PooledCounts()
    preds = np.zeros(images.shape, bool) if keep_predictions else None
    t0 = time.perf_counter()
    for z in tqdm(range(len(images)), desc=f"test {test_set}", disable=not progress, leave=False):
        pred = predict(normalize(images[z], trained.mean, trained.std)[0]).argmax(0).numpy().astype(bool)
        pooled.update(pred, masks[z])
        if preds is not None:
            preds[z] = pred
    return EvalResult(
        test_set=test_set,
        scores=pooled.compute(),
        n_slices=len(images),
        seconds=time.perf_counter() - t0,
        slice_ids=vol.slice_ids,
        images=images if keep_predictions else None,
        masks=masks if keep_predictions else None,
        predictions=preds,
    )


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


def evaluate_both(
    trained: TrainedModel, *, root: str | os.PathLike[str] | None = None, keep_predictions: bool = False, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, EvalResult]]:
    """Test one model on Lucchi++ and on VNC: a tidy table (one row per test set) and the raw results."""
    cfg = trained.config
    results = {t: evaluate(trained, t, root=root, keep_predictions=keep_predictions, progress=progress) for t in TEST_SETS}
    rows = []
    for test_set, res in results.items():
        in_domain = cfg.train_set in (test_set, "paired")
        rows.append(
            {
                "run_id": cfg.run_id, "backbone": "unet" if cfg.regime == "unet" else cfg.backbone,
                "regime": cfg.regime, "train_set": cfg.train_set, "pairing": cfg.pairing, "balance": cfg.balance,
                "seed": cfg.seed,
                "test_set": test_set, "in_domain": in_domain, "n_test_slices": res.n_slices,
                **{k: res.scores[k] for k in ("iou_fg", "dice_fg", "iou_bg", "miou", "mean_dice")},
                "fg_fraction_pred": res.scores["fg_fraction_pred"], "degenerate": is_degenerate(res.scores),
                "weights_label": trained.weights_label, "eval_seconds": res.seconds,
            }
        )
    return pd.DataFrame(rows), results
