"""Training: one :class:`~emlib.config.RunConfig`, one :func:`fit`.

Three regimes share one loop:

* ``frozen`` — backbone frozen, only the head learns; backbone features are cached
  (:class:`~emlib.cache.FeatureCache`) so every epoch after the first skips the backbone.
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
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from emlib.cache import FeatureCache, cache_key
from emlib.config import RunConfig
from emlib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropDataset,
    PairedDataset,
    TileDataset,
    load_volume,
    pad_collate,
    validation_split,
)
from emlib.device import resolve_device
from emlib.errors import ConfigError, DataError
from emlib.losses import segmentation_loss
from emlib.models import (
    DOMAINS,
    SegmentationModel,
    UNet2d,
    apply_lora,
    count_parameters,
    create_backbone,
    create_head,
    domain_index,
    load_adapter,
    save_adapter,
)
from emlib.plugins import (
    Plugin,
    cache_parts,
    forward_kwargs,
    plugins_for,
    transform_volume,
)
from emlib.preflight import UNET_DEPTH, check_run, input_fingerprints
from emlib.runfiles import (
    ADAPTER,
    CONFIG,
    HISTORY,
    LEGACY_PICKLES,
    MODEL,
    load_state,
    read_history,
    read_run_config,
    save_state,
    write_atomic,
    write_table,
)
from emlib.runstate import resume as _resume
from emlib.runstate import save_checkpoint as _save_checkpoint
from emlib.runstate import trainable_state as _trainable_state
from emlib.stopping import best_epoch, should_stop

__all__ = ["TrainedModel", "build_model", "build_train_dataset", "fit", "load_trained", "seed_everything"]


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
) -> tuple[nn.Module, int, tuple, tuple]:
    """The model of a run: (model, patch_size, mean, std).

    ``frozen``: backbone parameters have ``requires_grad=False`` and stay in eval mode.
    ``lora``: only LoRA matrices and the head train. ``unet``: everything trains. A plug-in may put
    the backbone and head(s) together differently (``build_model`` hook).
    """
    torch.manual_seed(cfg.seed)
    if cfg.regime == "unet":
        depth = UNET_DEPTH
        model: nn.Module = UNet2d(in_ch=3, num_classes=2, base_ch=cfg.unet_channels, depth=depth)
        return model.to(device or "cpu"), 2**depth, IMAGENET_MEAN, IMAGENET_STD
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

    built = [m for p in (plugins_for(cfg) if plugins is None else plugins) if (m := p.build_model(backbone, make_head)) is not None]
    model = built[0] if built else SegmentationModel(backbone, make_head())
    return model.to(device or "cpu"), backbone.patch_size, tuple(backbone.mean), tuple(backbone.std)


def _source_dataset(
    cfg: RunConfig, name: str, patch_size: int, mean: tuple, std: tuple, root: str | os.PathLike[str] | None,
    domain: int, plugins: list[Plugin], part: str,
) -> torch.utils.data.Dataset:
    vol = load_volume(name, "train", root=root, slices=cfg.train_slices)
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
    cfg: RunConfig, patch_size: int, mean: tuple, std: tuple, *, root: str | os.PathLike[str] | None = None,
    plugins: list[Plugin] | None = None, part: str = "train",
) -> torch.utils.data.Dataset:
    """Training items of a run: tiles (or random crops when ``augment``) of one or both datasets.

    With ``val_fraction > 0`` each dataset's training slices are split
    (:func:`~emlib.data.validation_split`, seeded by ``val_seed``); ``part='val'`` gives the held-out
    slices (never augmented).
    """
    if part not in ("train", "val"):
        raise ConfigError(f"part={part!r} is not allowed; choose 'train' or 'val'")
    plugins = plugins_for(cfg, root) if plugins is None else plugins
    if cfg.train_set == "paired":
        sources = {
            name: _source_dataset(cfg, name, patch_size, mean, std, root, domain, plugins, part)
            for domain, name in enumerate(DOMAINS)
        }
        return PairedDataset(sources, balance=cfg.balance and part == "train", seed=cfg.seed)
    return _source_dataset(cfg, cfg.train_set, patch_size, mean, std, root, domain_index(cfg.train_set), plugins, part)




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
        raise ConfigError(
            "augment=True changes the pixels every epoch, so frozen features cannot be cached; "
            "set augment=False or cache='none'"
        )


def _feature_cache(
    cfg: RunConfig, model: nn.Module, n_items: int, mean: tuple, std: tuple, run_dir: str | os.PathLike[str] | None,
    plugins: list[Plugin], *, root: str | os.PathLike[str] | None = None,
) -> FeatureCache | None:
    """The frozen backbone's feature cache (None for the other regimes or ``cache='none'``).

    The disk copy's key holds the content of the weights and of the data (:func:`emlib.preflight.input_fingerprints`),
    so another weights file, ``EMLIB_WEIGHTS`` or data copy never gets the features of the old one.
    """
    if cfg.regime != "frozen" or cfg.cache == "none":
        return None
    directory = (Path(run_dir).parent / ".feature-cache") if (cfg.cache == "disk" and run_dir) else None
    key = cache_key(
        backbone=cfg.backbone, weights=cfg.weights_label, weights_file=cfg.weights, train_set=cfg.train_set,
        balance=cfg.balance, slices=cfg.train_slices, crop=cfg.crop, long_edge=cfg.long_edge, mean=mean, std=std,
        seed=cfg.seed, n=n_items, **cache_parts(plugins),
        **({"pos_interpolation": cfg.pos_interpolation} if cfg.pos_interpolation != "timm" else {}),
        **({"validation": [cfg.val_fraction, cfg.val_seed]} if cfg.val_fraction else {}),
        **({"inputs": input_fingerprints(cfg, root=root)} if directory is not None else {}),
    )
    return FeatureCache(model.backbone.eval(), key, directory=directory)  # type: ignore[union-attr]


def _batch(items: list[dict], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Items as a padded batch on ``device``: (images, masks, valid pixels or None, domain ids)."""
    images, masks, valid = pad_collate(items)
    domains = torch.tensor([int(it["domain"]) for it in items], device=device)
    return images.to(device), masks.to(device), None if valid is None else valid.to(device), domains


def _logits(
    cfg: RunConfig, model: nn.Module, images: torch.Tensor, batch: list[int], dataset: torch.utils.data.Dataset,
    cache: FeatureCache | None, head_kwargs: dict, device: torch.device, padded: bool = False,
) -> torch.Tensor:
    """Logits of one batch: the U-Net on the images, else the head on (cached) backbone features.

    In a padded batch (slices of different sizes), cached features are computed item by item at each
    item's own size (so they do not depend on the batch) and zero-padded to the batch's token grid.
    """
    if cfg.regime == "unet":
        return model(images)

    def inputs(missing: list[int]) -> torch.Tensor:
        return pad_collate([dataset[j] for j in missing])[0]

    if cache is not None and not padded:
        feats = cache.get(batch, inputs, device)
    elif cache is not None:
        parts = [cache.get([i], inputs, device) for i in batch]
        h, w = max(f.shape[-2] for f in parts), max(f.shape[-1] for f in parts)
        feats = torch.cat([F.pad(f, (0, w - f.shape[-1], 0, h - f.shape[-2])) for f in parts])
    else:
        feats = model.backbone(images)  # type: ignore[union-attr]
    return model.head(feats, tuple(images.shape[-2:]), **head_kwargs)  # type: ignore[union-attr]


def _loss(
    plugins: list[Plugin], logits: torch.Tensor, masks: torch.Tensor, domains: torch.Tensor, kind: str,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The segmentation loss (or a plug-in's replacement) plus every plug-in's extra term; padding left out."""
    replaced = [r for p in plugins if (r := p.loss(logits, masks, domains, kind, valid)) is not None]
    loss = replaced[0] if replaced else segmentation_loss(logits, masks, kind, valid=valid)
    for plugin in plugins:
        extra = plugin.extra_loss(domains)
        if extra is not None:
            loss = loss + extra
    return loss


def _train_epoch(
    cfg: RunConfig, epoch: int, model: nn.Module, dataset: torch.utils.data.Dataset, cache: FeatureCache | None,
    plugins: list[Plugin], optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: list,
    device: torch.device, progress: bool,
) -> dict:
    """One epoch: batches in the order of ``(seed, epoch)``; returns the history row."""
    t0 = time.perf_counter()
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    n_items = len(dataset)
    per_epoch = min(cfg.samples_per_epoch or n_items, n_items) if not cfg.augment else n_items
    order = np.random.default_rng((cfg.seed, epoch)).permutation(n_items)[:per_epoch]
    model.train()
    if cfg.regime == "frozen":
        model.backbone.eval()  # type: ignore[union-attr]
    use_amp = cfg.amp and device.type == "cuda"
    losses = []
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    bar = tqdm(batches, desc=f"{cfg.run_id} epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
    for batch in bar:
        items = [dataset[int(i)] for i in batch]
        images, masks, valid, domains = _batch(items, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = _logits(
                cfg, model, images, [int(i) for i in batch], dataset, cache, forward_kwargs(plugins, domains), device,
                padded=valid is not None,
            )
            loss = _loss(plugins, logits, masks, domains, cfg.loss, valid)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}


def _val_loss(
    cfg: RunConfig, model: nn.Module, val_set: torch.utils.data.Dataset, cache: FeatureCache | None,
    plugins: list[Plugin], device: torch.device,
) -> float:
    """Mean loss over the held-out slices (model in eval mode, no gradients), batches as in training."""
    model.eval()
    losses, sizes = [], []
    with torch.no_grad():
        for start in range(0, len(val_set), cfg.batch_size):
            batch = list(range(start, min(start + cfg.batch_size, len(val_set))))
            items = [val_set[i] for i in batch]
            images, masks, valid, domains = _batch(items, device)
            logits = _logits(
                cfg, model, images, batch, val_set, cache, forward_kwargs(plugins, domains), device, padded=valid is not None
            )
            losses.append(float(segmentation_loss(logits, masks, cfg.loss, valid=valid)))
            sizes.append(len(batch))
    return float(np.average(losses, weights=sizes))


def _save_model(run_path: Path, trained: TrainedModel) -> None:
    """Adapter, history, then ``model.safetensors`` (its presence marks a finished run); each written atomically."""
    cfg, model = trained.config, trained.model
    if cfg.regime == "lora":
        write_atomic(run_path / ADAPTER, lambda tmp: save_adapter(model.backbone, tmp))  # type: ignore[union-attr]
    write_table(run_path / HISTORY, trained.history)
    save_state(run_path / MODEL, {"digest": cfg.digest(), "trainable": _trainable_state(model)})


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
    model, patch_size, mean, std = build_model(cfg, device=device, plugins=plugins)
    dataset = build_train_dataset(cfg, patch_size, mean, std, root=root, plugins=plugins)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(_param_groups(cfg, model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    cache = _feature_cache(cfg, model, len(dataset), mean, std, run_dir, plugins, root=root)
    val_set = build_train_dataset(cfg, patch_size, mean, std, root=root, plugins=plugins, part="val") if cfg.val_fraction else None
    val_cache = None if cache is None or val_set is None else FeatureCache(model.backbone.eval(), "validation")  # type: ignore[union-attr]
    for plugin in plugins:
        plugin.attach(model)

    run_path = Path(run_dir) if run_dir is not None else None
    start_epoch, history, best = _resume(run_path, cfg, model, optimizer, scaler) if run_path is not None else (0, [], None)
    for epoch in range(start_epoch, cfg.epochs):
        if should_stop(history, cfg.patience):
            break
        history.append(_train_epoch(cfg, epoch, model, dataset, cache, plugins, optimizer, scaler, params, device, progress))
        if val_set is not None:
            history[-1]["val_loss"] = _val_loss(cfg, model, val_set, val_cache, plugins, device)
            if best_epoch(history) == len(history) - 1:
                best = _trainable_state(model)
        if cache is not None:
            cache.save()
        if run_path is not None:
            _save_checkpoint(run_path, cfg, epoch, model, optimizer, scaler, history, best)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1]["loss"])

    for plugin in plugins:
        plugin.detach()
    if best is not None:
        model.load_state_dict(best, strict=False)  # the best validation epoch's weights, as the authors keep
    model.eval()
    kept = best_epoch(history)
    trained = TrainedModel(
        model=model, config=cfg, patch_size=patch_size, mean=mean, std=std,
        history=pd.DataFrame(history, columns=["epoch", "loss", "seconds"] + (["val_loss"] if val_set is not None else [])),
        run_dir=run_path, parameters=count_parameters(model),
        cache_stats=None if cache is None else {"hits": cache.hits, "misses": cache.misses},
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
    model, patch_size, mean, std = build_model(cfg, device=resolve_device(device))
    try:
        model.load_state_dict(load_state(run_path / MODEL, fix=fix)["trainable"], strict=False)
    except (KeyError, TypeError, RuntimeError) as err:
        raise DataError(f"{run_path / MODEL} does not fit the model of {run_path / CONFIG} ({type(err).__name__}); {fix}") from None
    if cfg.regime == "lora":
        load_adapter(model.backbone, run_path / ADAPTER)  # type: ignore[union-attr]
    return TrainedModel(model.eval(), cfg, patch_size, mean, std, history, run_path, count_parameters(model))

