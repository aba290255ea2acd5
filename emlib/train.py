"""Training: one :class:`~emlib.config.RunConfig`, one :func:`fit`.

Three regimes share one loop:

* ``frozen`` — backbone frozen, only the head learns. Its items are the fixed tiles of the training
  slices (:class:`~emlib.data.TileDataset`; an epoch draws ``samples_per_epoch`` of them, seeded by
  ``(seed, epoch)``), whose tokens come from the feature store (:mod:`emlib.featurestore`): computed
  the first time any run of the backbone draws a tile, read back by every later epoch and run.
* ``lora`` — LoRA adapters on every block's qkv and attention projection, plus the head.
* ``unet`` — a small U-Net trained from scratch on the same tiles (the supervised context).

Seeded and deterministic on CPU (the batch order of epoch ``e`` comes from ``(seed, e)``), AdamW,
the protocol's loss, gradient clipping, tqdm progress, a checkpoint after every epoch and resume
from it after an interruption, mixed precision on CUDA.

:func:`fit` is the paper's loop in named steps (build the model, the data, the optimiser and the
feature cache; resume; train epoch by epoch; save). The remedies of "beyond the paper" are
plug-ins (:mod:`emlib.plugins`) that the config names and the loop calls at fixed points; the
loop itself never names a remedy.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from emlib.cache import FeatureCache
from emlib.config import RunConfig
from emlib.data import (
    IMAGENET_MEAN, IMAGENET_STD, CropDataset, PairedDataset, TileDataset, load_volume, pad_collate, validation_split,
)
from emlib.device import resolve_device
from emlib.errors import ConfigError, DataError
from emlib.featurestore import stored_features, training_stores
from emlib.losses import segmentation_loss
from emlib.models import (
    DOMAINS, SegmentationModel, UNet2d, apply_lora, count_parameters, create_backbone, create_head, domain_index,
    load_adapter, save_adapter,
)
from emlib.plugins import Plugin, forward_kwargs, plugin_loss, plugins_for, transform_volume
from emlib.preflight import UNET_DEPTH, check_run
from emlib.runfiles import (
    ADAPTER, CONFIG, ERROR_LOG, HISTORY, LEGACY_PICKLES, MODEL, load_state, read_history, read_run_config, save_state,
    write_atomic, write_table,
)
from emlib.runstate import resume as _resume
from emlib.runstate import save_checkpoint as _save_checkpoint
from emlib.runstate import trainable_state as _trainable_state
from emlib.stopping import TrainingDiverged, best_epoch, check_loss, should_stop

__all__ = ["BuiltModel", "TrainedModel", "build_model", "build_train_dataset", "epoch_order", "fit", "load_trained", "seed_everything"]


@dataclass(frozen=True)
class BuiltModel:
    """A run's model as :func:`build_model` puts it together, and what its inputs must be.

    Attributes
    ----------
    model : nn.Module
        Maps normalised images (B, 3, H, W) to logits (B, 2, H, W).
    patch_size : int
        The multiple input sides must have (the backbone's patch, or ``2**depth`` for the U-Net).
    mean, std : tuple of float
        Input normalisation.
    """

    model: nn.Module
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass
class TrainedModel:
    """A trained model and what describes it.

    Attributes
    ----------
    model : nn.Module
        Maps normalised images (B, 3, H, W) to logits (B, 2, H, W).
    config : RunConfig
    patch_size : int
        Input sides must be multiples of it (8 for the U-Net: its pooling depth).
    mean, std : tuple of float
        Input normalisation.
    history : DataFrame
        One row per epoch: ``epoch, loss, seconds``.
    run_dir : Path or None
    """

    model: nn.Module
    config: RunConfig
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    history: pd.DataFrame
    run_dir: Path | None = None
    parameters: dict[str, int] | None = None
    cache_stats: dict[str, int] | None = None
    best_epoch: int | None = None

    @property
    def weights_label(self) -> str:
        """Where the backbone weights came from (``random weights`` for random init)."""
        backbone = getattr(self.model, "backbone", None)
        return getattr(backbone, "weights_label", self.config.weights_label)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch; deterministic algorithms where torch offers them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(
    cfg: RunConfig, *, device: torch.device | None = None, plugins: list[Plugin] | None = None
) -> BuiltModel:
    """The model of a run, with the patch size and normalisation of its inputs (torch seeded by ``cfg.seed``).

    ``frozen``: backbone parameters have ``requires_grad=False`` and stay in eval mode.
    ``lora``: only LoRA matrices and the head train. ``unet``: everything trains. A plug-in may put
    the backbone and head(s) together differently (``build_model`` hook).

    Parameters
    ----------
    cfg : RunConfig
    device : torch.device, default=None
        Where the model goes (None: the CPU).
    plugins : list of Plugin, default=None
        The run's plug-ins (None: :func:`~emlib.plugins.plugins_for` of ``cfg``).

    Returns
    -------
    BuiltModel

    Examples
    --------
    >>> build_model(RunConfig(regime="unet", unet_channels=4)).patch_size
    8
    """
    torch.manual_seed(cfg.seed)
    if cfg.regime == "unet":
        depth = UNET_DEPTH
        model: nn.Module = UNet2d(in_ch=3, num_classes=2, base_ch=cfg.unet_channels, depth=depth)
        return BuiltModel(model.to(device or "cpu"), 2**depth, IMAGENET_MEAN, IMAGENET_STD)
    backbone = create_backbone(
        cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights, pos_interpolation=cfg.pos_interpolation
    )
    if cfg.regime == "lora":
        apply_lora(backbone, cfg.lora)
    else:
        backbone.requires_grad_(False)
    head_kwargs = {"base_ch": cfg.head_channels} if cfg.head == "deconv" else {}

    def make_head() -> nn.Module:
        return create_head(cfg.head, backbone.embed_dim, **head_kwargs)

    plugins = plugins_for(cfg) if plugins is None else plugins
    assembled = [m for p in plugins if (m := p.build_model(backbone, make_head)) is not None]
    model = assembled[0] if assembled else SegmentationModel(backbone, make_head())
    return BuiltModel(model.to(device or "cpu"), backbone.patch_size, tuple(backbone.mean), tuple(backbone.std))


def _source_dataset(
    cfg: RunConfig, name: str, domain: int, *, patch_size: int, mean: tuple, std: tuple,
    root: str | os.PathLike[str] | None, plugins: list[Plugin], part: str,
) -> torch.utils.data.Dataset:
    """The items of one dataset (``domain``: its index), after the plug-ins' ``transform_volume``."""
    vol = load_volume(name, "train", root=root, slices=cfg.train_slices, pairing=cfg.pairing)
    images, masks = transform_volume(plugins, name, vol.images, vol.masks)
    if cfg.val_fraction > 0:  # slices held out for validation (seeded; the same for every run of a dataset)
        keep = validation_split(len(images), cfg.val_fraction, cfg.val_seed)[part == "val"]
        images, masks = images[keep], masks[keep]
    if cfg.augment and part == "train":
        if cfg.crop is None:
            raise ConfigError("augment=True needs a crop size; whole resized slices are used without augmentation")
        return CropDataset(
            images, masks, crop=cfg.crop, patch_size=patch_size, mean=mean, std=std,
            samples_per_epoch=cfg.samples_per_epoch, seed=cfg.seed, domain=domain,
        )
    return TileDataset(
        images, masks, tile=cfg.crop, patch_size=patch_size, mean=mean, std=std,
        long_edge=cfg.long_edge, domain=domain,
    )


def build_train_dataset(
    cfg: RunConfig, *, patch_size: int, mean: tuple, std: tuple, root: str | os.PathLike[str] | None = None,
    plugins: list[Plugin] | None = None, part: str = "train",
) -> torch.utils.data.Dataset:
    """Training items of a run: tiles (or random crops when ``augment``) of one or both datasets.

    The tiles are a fixed grid of each training slice (:class:`~emlib.data.TileDataset`: non-overlapping,
    the last row and column flush with the border; whole resized slices for ``crop=None``), and an epoch
    draws ``samples_per_epoch`` of them (:func:`epoch_order`). That is the crop scheme of frozen runs
    because the feature store can serve it: a tile is the same pixels in every epoch and every run, so
    its tokens are computed once per backbone, weights, data and input transform
    (:mod:`emlib.featurestore`). Random crops (``augment=True``) would give new pixels at every draw;
    frozen runs keep the grid. On the smoke profile the store left IoU_fg as it was (24 scores of
    frozen runs, 4 seeds: largest change 0.0002, from float16 test tokens; ``benchmarks/results/store_iou.csv``).

    With ``val_fraction > 0`` each dataset's training slices are split
    (:func:`~emlib.data.validation_split`, seeded by ``val_seed``); ``part='val'`` gives the held-out
    slices (never augmented).

    Parameters
    ----------
    cfg : RunConfig
    patch_size, mean, std
        Those of the run's :class:`BuiltModel`: the multiple item sides must have, the input normalisation.
    root : path, default=None
        Data root (None: ``$EMLIB_DATA`` or the download cache).
    plugins : list of Plugin, default=None
        The run's plug-ins (None: those of ``cfg``, :func:`~emlib.plugins.plugins_for`).
    part : {'train', 'val'}, default='train'

    Returns
    -------
    torch.utils.data.Dataset
        A :class:`~emlib.data.PairedDataset` of both datasets for ``train_set='paired'``.
    """
    if part not in ("train", "val"):
        raise ConfigError(f"part={part!r} is not allowed; choose 'train' or 'val'")
    plugins = plugins_for(cfg, root) if plugins is None else plugins
    inputs = {"patch_size": patch_size, "mean": mean, "std": std, "root": root, "plugins": plugins, "part": part}
    if cfg.train_set == "paired":
        sources = {name: _source_dataset(cfg, name, domain, **inputs) for domain, name in enumerate(DOMAINS)}
        return PairedDataset(sources, balance=cfg.balance and part == "train", seed=cfg.seed)
    return _source_dataset(cfg, cfg.train_set, domain_index(cfg.train_set), **inputs)


def _param_groups(cfg: RunConfig, model: nn.Module) -> list[dict]:
    """The optimiser's parameter groups: one at ``lr``, or the backbone's trainable weights at ``lora_lr``.

    Adam moves every weight by about the learning rate per step whatever the gradient's size, so
    LoRA matrices with vanishing gradients (a random-weight backbone) would random-walk at the
    head's learning rate; ``lora_lr`` keeps them at their own.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.lora_lr is None or cfg.regime != "lora":
        return [{"params": [p for _, p in trainable]}]
    backbone = [p for n, p in trainable if n.startswith("backbone.")]
    rest = [p for n, p in trainable if not n.startswith("backbone.")]
    return [{"params": rest}, {"params": backbone, "lr": cfg.lora_lr}]


def _check_cacheable(cfg: RunConfig) -> None:
    if cfg.regime == "frozen" and cfg.augment and cfg.cache != "none":
        raise ConfigError("augment=True changes the pixels every epoch, so frozen features cannot be cached; "
                          "set augment=False or cache='none'")


class _Loop:
    """What every epoch of :func:`fit` works with, made in an order that fixes the random draws."""

    def __init__(self, cfg: RunConfig, built: BuiltModel, plugins: list[Plugin], device: torch.device, *,
                 run_dir: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None) -> None:
        self.cfg, self.model, self.plugins, self.device = cfg, built.model, plugins, device
        inputs = {"patch_size": built.patch_size, "mean": built.mean, "std": built.std}
        self.dataset = build_train_dataset(cfg, **inputs, root=root, plugins=plugins)
        self.params = [p for p in self.model.parameters() if p.requires_grad]  # clipped together
        self.optimizer = torch.optim.AdamW(_param_groups(cfg, self.model), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
        stores = {"run_dir": run_dir, "plugins": plugins, "root": root}
        stores.update(mean=built.mean, std=built.std, patch_size=built.patch_size)
        backbone = getattr(self.model, "backbone", None)
        self.cache = training_stores(cfg, backbone, self.dataset, part="train", **stores)
        self.val_set = build_train_dataset(cfg, **inputs, root=root, plugins=plugins, part="val") if cfg.val_fraction else None
        self.val_cache = None if self.val_set is None else training_stores(cfg, backbone, self.val_set, part="val", **stores)
        self.counted = {"hits": self.count("hits"), "misses": self.count("misses")}  # the stores may be warm

    def count(self, what: str) -> int:
        return sum(getattr(store, what) for store in (self.cache or []) + (self.val_cache or []))

    def cache_stats(self) -> dict[str, int] | None:
        """Training and validation items this run read from its stores (hits) and computed (misses)."""
        return None if self.cache is None else {k: self.count(k) - v for k, v in self.counted.items()}

    def save_stores(self) -> None:
        for store in (self.cache or []) + (self.val_cache or []):
            store.save()


def _forward(
    cfg: RunConfig, model: nn.Module, dataset: torch.utils.data.Dataset, batch: list[int], *,
    cache: list[FeatureCache] | None, plugins: list[Plugin], device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The items ``batch`` of ``dataset`` through the model: (logits, masks, valid pixels or None, domain ids).

    The U-Net sees the padded images, the head the backbone's tokens (from the stores ``cache`` when given:
    :func:`~emlib.featurestore.stored_features`).
    """
    items = [dataset[i] for i in batch]
    images, masks, valid = pad_collate(items)
    domains = torch.tensor([int(it["domain"]) for it in items], device=device)
    images, masks, valid = images.to(device), masks.to(device), None if valid is None else valid.to(device)
    if cfg.regime == "unet":
        return model(images), masks, valid, domains

    if cache is not None:
        feats = stored_features(cache, dataset, batch, model.backbone, device)  # type: ignore[arg-type]
    else:
        feats = model.backbone(images)  # type: ignore[union-attr]
    logits = model.head(feats, tuple(images.shape[-2:]), **forward_kwargs(plugins, domains))  # type: ignore[union-attr]
    return logits, masks, valid, domains


def epoch_order(cfg: RunConfig, n_items: int, epoch: int) -> np.ndarray:
    """The training items of one epoch, in the order :func:`fit` visits them.

    Without augmentation an epoch takes ``samples_per_epoch`` of the ``n_items`` items (all of them
    when None), a permutation seeded by ``(seed, epoch)``; with augmentation every item is new, so
    all are taken.

    Examples
    --------
    >>> len(epoch_order(RunConfig(samples_per_epoch=4, augment=False), 10, 0))
    4
    """
    per_epoch = min(cfg.samples_per_epoch or n_items, n_items) if not cfg.augment else n_items
    return np.random.default_rng((cfg.seed, epoch)).permutation(n_items)[:per_epoch]


def _train_epoch(loop: _Loop, epoch: int, *, progress: bool) -> dict:
    """One epoch: batches in the order of ``(seed, epoch)``; returns the history row."""
    t0 = time.perf_counter()
    cfg, dataset, device = loop.cfg, loop.dataset, loop.device
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_order(cfg, len(dataset), epoch)
    loop.model.train()
    if cfg.regime == "frozen":
        loop.model.backbone.eval()  # type: ignore[union-attr]
    use_amp = cfg.amp and device.type == "cuda"
    losses, computed = [], loop.count("misses")
    batches = [[int(i) for i in order[i : i + cfg.batch_size]] for i in range(0, len(order), cfg.batch_size)]
    bar = tqdm(batches, desc=f"{cfg.run_id} epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
    for batch in bar:
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits, masks, valid, domains = _forward(
                cfg, loop.model, dataset, batch, cache=loop.cache, plugins=loop.plugins, device=device
            )
            loss = plugin_loss(loop.plugins, logits, masks, domains, cfg.loss, valid)
        losses.append(float(loss.detach()))  # a loss that is not finite ends the run before it changes the model
        check_loss(losses[-1], run=cfg.run_id, epoch=epoch, step=len(losses) - 1, lr=cfg.lr)
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        loop.scaler.unscale_(loop.optimizer)
        torch.nn.utils.clip_grad_norm_(loop.params, cfg.grad_clip)
        loop.scaler.step(loop.optimizer)
        loop.scaler.update()
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    row = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}
    if cfg.regime == "frozen":  # the training items the backbone computed (the others came from the store)
        row["backbone_passes"] = loop.count("misses") - computed if loop.cache is not None else len(order)
    return row


def _val_loss(
    cfg: RunConfig, model: nn.Module, val_set: torch.utils.data.Dataset, *, cache: list[FeatureCache] | None,
    plugins: list[Plugin], device: torch.device,
) -> float:
    """Mean loss over the held-out slices (model in eval mode, no gradients), batches as in training."""
    model.eval()
    losses, sizes = [], []
    with torch.no_grad():
        for start in range(0, len(val_set), cfg.batch_size):
            batch = list(range(start, min(start + cfg.batch_size, len(val_set))))
            logits, masks, valid, _ = _forward(cfg, model, val_set, batch, cache=cache, plugins=plugins, device=device)
            losses.append(float(segmentation_loss(logits, masks, cfg.loss, valid=valid)))
            sizes.append(len(batch))
    return float(np.average(losses, weights=sizes))


def _run_epochs(
    loop: _Loop, run_path: Path | None, *, progress: bool, on_epoch_end: Callable[[int, float], None] | None
) -> list[dict]:
    """Attach the plug-ins, resume, train until the last epoch or early stopping (validation loss, checkpoint and
    ``on_epoch_end`` after each), detach; the model keeps the best validation epoch's weights. Returns the history."""
    cfg = loop.cfg
    for plugin in loop.plugins:
        plugin.attach(loop.model)
    start_epoch, history, best = _resume(run_path, cfg, loop.model, loop.optimizer, loop.scaler) if run_path else (0, [], None)
    for epoch in range(start_epoch, cfg.epochs):
        if should_stop(history, cfg.patience):
            break
        history.append(_train_epoch(loop, epoch, progress=progress))
        if loop.val_set is not None:
            history[-1]["val_loss"] = _val_loss(
                cfg, loop.model, loop.val_set, cache=loop.val_cache, plugins=loop.plugins, device=loop.device
            )
            if best_epoch(history) == len(history) - 1:
                best = _trainable_state(loop.model)
        loop.save_stores()
        if run_path is not None:
            _save_checkpoint(run_path, cfg, epoch, loop.model, loop.optimizer, loop.scaler, history, best)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1]["loss"])
    for plugin in loop.plugins:
        plugin.detach()
    if best is not None:
        loop.model.load_state_dict(best, strict=False)
    return history


def _save_model(run_path: Path, trained: TrainedModel) -> None:
    """Adapter, history, then ``model.safetensors`` (its presence marks a finished run); each written atomically."""
    cfg, model = trained.config, trained.model
    if cfg.regime == "lora":
        write_atomic(run_path / ADAPTER, lambda tmp: save_adapter(model.backbone, tmp))  # type: ignore[union-attr]
    write_table(run_path / HISTORY, trained.history)
    save_state(run_path / MODEL, {"digest": cfg.digest(), "trainable": _trainable_state(model)})


def _history_columns(cfg: RunConfig, validated: bool) -> list[str]:
    return ["epoch", "loss", "seconds"] + (["backbone_passes"] if cfg.regime == "frozen" else []) + (["val_loss"] if validated else [])


def fit(
    cfg: RunConfig,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train one run; resume from ``run_dir/checkpoint.safetensors`` when it holds an unfinished run of ``cfg``.

    Parameters
    ----------
    cfg : RunConfig
    run_dir : path, default=None
        Folder for ``config.json``, ``checkpoint.safetensors`` (after every epoch), ``model.safetensors``,
        ``adapter.safetensors`` (LoRA) and ``history.csv`` (:mod:`emlib.runfiles`; nothing is pickled).
        None trains in memory only (no resume).
    root : path, default=None
        Data root (None: ``$EMLIB_DATA`` or the download cache).
    progress : bool, default=True
        tqdm bars.
    on_epoch_end : callable, default=None
        Called as ``on_epoch_end(epoch, mean_loss)`` after each checkpoint (tests use it to
        simulate an interruption).

    Returns
    -------
    TrainedModel
    """
    check_run(cfg)
    device = resolve_device(cfg.device)
    _check_cacheable(cfg)
    seed_everything(cfg.seed)
    plugins = plugins_for(cfg, root)
    built = build_model(cfg, device=device, plugins=plugins)
    loop = _Loop(cfg, built, plugins, device, run_dir=run_dir, root=root)
    run_path = Path(run_dir) if run_dir is not None else None
    try:
        history = _run_epochs(loop, run_path, progress=progress, on_epoch_end=on_epoch_end)
    except TrainingDiverged as err:  # marked failed (`emlib grid --status` names the log), never done: no model is saved
        if run_path is not None:
            write_atomic(run_path / ERROR_LOG, lambda tmp: tmp.write_text(f"{err}\n"))
        raise
    model, kept = built.model.eval(), best_epoch(history)
    trained = TrainedModel(
        model=model, config=cfg, patch_size=built.patch_size, mean=built.mean, std=built.std,
        history=pd.DataFrame(history, columns=_history_columns(cfg, loop.val_set is not None)),
        run_dir=run_path, parameters=count_parameters(model),
        cache_stats=loop.cache_stats(),
        best_epoch=None if kept is None else int(history[kept]["epoch"]),
    )
    if run_path is not None:
        _save_model(run_path, trained)
    return trained


def load_trained(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> TrainedModel:
    """Rebuild a finished run from ``run_dir`` (config.json, model.safetensors, adapter.safetensors) without training.

    Nothing is unpickled. A missing, damaged or mismatched file raises DataError (WeightsError for
    the adapter) naming it, before any model is built where the file can be checked first.
    """
    run_path = Path(run_dir)
    fix = f"delete {run_path} and train the run again with `emlib grid` or fit()"
    if not (run_path / MODEL).is_file():
        legacy = [name for name in LEGACY_PICKLES if (run_path / name).is_file()]
        if legacy:
            raise DataError(
                f"{run_path} holds {legacy[0]} from an older emlib, which is never read because unpickling it could run "
                f"code; {fix}"
            )
        raise DataError(f"no finished run in {run_path} ({MODEL} is missing); train it first with fit() or `emlib grid`")
    cfg = read_run_config(run_path, fix=fix)
    if load_state(run_path / MODEL, fix=fix, tensors=False).get("digest") != cfg.digest():
        raise DataError(f"{run_path / MODEL} belongs to another configuration than {run_path / CONFIG}; {fix}")
    history = read_history(run_path / HISTORY, fix=fix)
    built = build_model(cfg, device=resolve_device(device))
    model = built.model
    try:
        model.load_state_dict(load_state(run_path / MODEL, fix=fix)["trainable"], strict=False)
    except (KeyError, TypeError, RuntimeError) as err:
        raise DataError(f"{run_path / MODEL} does not fit the model of {run_path / CONFIG} ({type(err).__name__}); {fix}") from None
    if cfg.regime == "lora":
        load_adapter(model.backbone, run_path / ADAPTER)  # type: ignore[union-attr]
    return TrainedModel(model.eval(), cfg, built.patch_size, built.mean, built.std, history, run_path, count_parameters(model))

