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

import json
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

from emlib.cache import FeatureCache, cache_key
from emlib.config import RunConfig
from emlib.data import IMAGENET_MEAN, IMAGENET_STD, CropDataset, PairedDataset, TileDataset, load_volume
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
    running_stat_names,
    save_adapter,
)
from emlib.plugins import Plugin, cache_parts, forward_kwargs, plugins_for, transform_volume

__all__ = ["TrainedModel", "build_model", "build_train_dataset", "fit", "load_trained", "seed_everything"]

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"


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
        depth = 3
        model: nn.Module = UNet2d(in_ch=3, num_classes=2, base_ch=cfg.unet_channels, depth=depth)
        return model.to(device or "cpu"), 2**depth, IMAGENET_MEAN, IMAGENET_STD
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.weights)
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
    domain: int, plugins: list[Plugin],
) -> torch.utils.data.Dataset:
    vol = load_volume(name, "train", root=root, slices=cfg.train_slices)
    images, masks = transform_volume(plugins, name, vol.images, vol.masks)
    if cfg.augment:
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
    plugins: list[Plugin] | None = None,
) -> torch.utils.data.Dataset:
    """Training items of a run: tiles (or random crops when ``augment``) of one or both datasets."""
    plugins = plugins_for(cfg, root) if plugins is None else plugins
    if cfg.train_set == "paired":
        sources = {
            name: _source_dataset(cfg, name, patch_size, mean, std, root, domain, plugins)
            for domain, name in enumerate(DOMAINS)
        }
        return PairedDataset(sources, balance=cfg.balance, seed=cfg.seed)
    return _source_dataset(cfg, cfg.train_set, patch_size, mean, std, root, domain_index(cfg.train_set), plugins)


def _collate(items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([it["image"] for it in items]), torch.stack([it["mask"] for it in items])


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    keep = running_stat_names(model)  # per-domain feature statistics have no parameters
    return {
        k: v.detach().clone() for k, v in model.state_dict().items()
        if k in names or k in keep or _is_buffer_of_trainable(k, names)
    }


def _is_buffer_of_trainable(key: str, names: set[str]) -> bool:
    # BatchNorm running statistics of trainable modules belong with their weights
    prefix = key.rsplit(".", 1)[0]
    return any(n.startswith(prefix + ".") for n in names) and key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _check_cacheable(cfg: RunConfig) -> None:
    if cfg.regime == "frozen" and cfg.augment and cfg.cache != "none":
        raise ConfigError(
            "augment=True changes the pixels every epoch, so frozen features cannot be cached; "
            "set augment=False or cache='none'"
        )


def _feature_cache(
    cfg: RunConfig, model: nn.Module, n_items: int, mean: tuple, std: tuple, run_dir: str | os.PathLike[str] | None,
    plugins: list[Plugin],
) -> FeatureCache | None:
    """The frozen backbone's feature cache (None for the other regimes or ``cache='none'``)."""
    if cfg.regime != "frozen" or cfg.cache == "none":
        return None
    key = cache_key(
        backbone=cfg.backbone, weights=cfg.weights_label, weights_file=cfg.weights, train_set=cfg.train_set,
        balance=cfg.balance, slices=cfg.train_slices, crop=cfg.crop, long_edge=cfg.long_edge, mean=mean, std=std,
        seed=cfg.seed, n=n_items, **cache_parts(plugins),
    )
    directory = (Path(run_dir).parent / ".feature-cache") if (cfg.cache == "disk" and run_dir) else None
    return FeatureCache(model.backbone.eval(), key, directory=directory)  # type: ignore[union-attr]


def _resume(run_path: Path, cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> tuple[int, list]:
    """Write ``config.json``; load ``checkpoint.pt`` when it holds an unfinished run of ``cfg``: (start epoch, history)."""
    run_path.mkdir(parents=True, exist_ok=True)
    (run_path / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    ckpt_path = run_path / CHECKPOINT
    if not ckpt_path.is_file():
        return 0, []
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if ckpt.get("digest") != cfg.digest():
        return 0, []
    model.load_state_dict(ckpt["trainable"], strict=False)
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    return ckpt["epoch"] + 1, ckpt["history"]


def _save_checkpoint(
    run_path: Path, cfg: RunConfig, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, history: list,
) -> None:
    tmp = run_path / (CHECKPOINT + ".incomplete")
    torch.save(
        {
            "digest": cfg.digest(), "epoch": epoch, "trainable": _trainable_state(model),
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "history": history,
        },
        tmp,
    )
    os.replace(tmp, run_path / CHECKPOINT)


def _logits(
    cfg: RunConfig, model: nn.Module, images: torch.Tensor, batch: list[int], dataset: torch.utils.data.Dataset,
    cache: FeatureCache | None, head_kwargs: dict, device: torch.device,
) -> torch.Tensor:
    """Logits of one batch: the U-Net on the images, else the head on (cached) backbone features."""
    if cfg.regime == "unet":
        return model(images)
    if cache is not None:
        feats = cache.get(batch, lambda missing: _collate([dataset[i] for i in missing])[0], device)
    else:
        feats = model.backbone(images)  # type: ignore[union-attr]
    return model.head(feats, tuple(images.shape[-2:]), **head_kwargs)  # type: ignore[union-attr]


def _loss(plugins: list[Plugin], logits: torch.Tensor, masks: torch.Tensor, domains: torch.Tensor, kind: str) -> torch.Tensor:
    """The segmentation loss (or a plug-in's replacement) plus every plug-in's extra term."""
    replaced = [r for p in plugins if (r := p.loss(logits, masks, domains, kind)) is not None]
    loss = replaced[0] if replaced else segmentation_loss(logits, masks, kind)
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
        images, masks = _collate(items)
        images, masks = images.to(device), masks.to(device)
        domains = torch.tensor([int(it["domain"]) for it in items], device=device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = _logits(cfg, model, images, [int(i) for i in batch], dataset, cache, forward_kwargs(plugins, domains), device)
            loss = _loss(plugins, logits, masks, domains, cfg.loss)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}


def _save_model(run_path: Path, trained: TrainedModel) -> None:
    cfg, model = trained.config, trained.model
    torch.save({"digest": cfg.digest(), "trainable": _trainable_state(model)}, run_path / MODEL)
    if cfg.regime == "lora":
        save_adapter(model.backbone, run_path / "adapter.pt")  # type: ignore[union-attr]
    trained.history.to_csv(run_path / "history.csv", index=False)


def fit(
    cfg: RunConfig,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> TrainedModel:
    """Train one run; resume from ``run_dir/checkpoint.pt`` when it holds an unfinished run of ``cfg``.

    Parameters
    ----------
    cfg : RunConfig
    run_dir : path, default=None
        Folder for ``config.json``, ``checkpoint.pt`` (after every epoch), ``model.pt`` and
        ``history.csv``. None trains in memory only (no resume).
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
    device = resolve_device(cfg.device)
    _check_cacheable(cfg)
    seed_everything(cfg.seed)
    plugins = plugins_for(cfg, root)
    model, patch_size, mean, std = build_model(cfg, device=device, plugins=plugins)
    dataset = build_train_dataset(cfg, patch_size, mean, std, root=root, plugins=plugins)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    cache = _feature_cache(cfg, model, len(dataset), mean, std, run_dir, plugins)
    for plugin in plugins:
        plugin.attach(model)

    run_path = Path(run_dir) if run_dir is not None else None
    start_epoch, history = _resume(run_path, cfg, model, optimizer, scaler) if run_path is not None else (0, [])
    for epoch in range(start_epoch, cfg.epochs):
        history.append(_train_epoch(cfg, epoch, model, dataset, cache, plugins, optimizer, scaler, params, device, progress))
        if cache is not None:
            cache.save()
        if run_path is not None:
            _save_checkpoint(run_path, cfg, epoch, model, optimizer, scaler, history)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1]["loss"])

    for plugin in plugins:
        plugin.detach()
    model.eval()
    trained = TrainedModel(
        model=model, config=cfg, patch_size=patch_size, mean=mean, std=std,
        history=pd.DataFrame(history, columns=["epoch", "loss", "seconds"]), run_dir=run_path,
        parameters=count_parameters(model),
        cache_stats=None if cache is None else {"hits": cache.hits, "misses": cache.misses},
    )
    if run_path is not None:
        _save_model(run_path, trained)
    return trained


def load_trained(run_dir: str | os.PathLike[str], *, device: str = "cpu") -> TrainedModel:
    """Rebuild a finished run from ``run_dir`` (config.json + model.pt) without training."""
    run_path = Path(run_dir)
    if not (run_path / MODEL).is_file():
        raise DataError(f"no finished run in {run_path} (model.pt is missing); train it first with fit() or `emlib grid`")
    cfg = RunConfig.from_dict(json.loads((run_path / "config.json").read_text()))
    model, patch_size, mean, std = build_model(cfg, device=resolve_device(device))
    state = torch.load(run_path / MODEL, map_location="cpu", weights_only=False)
    model.load_state_dict(state["trainable"], strict=False)
    if cfg.regime == "lora" and (run_path / "adapter.pt").is_file():
        load_adapter(model.backbone, run_path / "adapter.pt")  # type: ignore[union-attr]
    history = pd.read_csv(run_path / "history.csv") if (run_path / "history.csv").is_file() else pd.DataFrame()
    return TrainedModel(model.eval(), cfg, patch_size, mean, std, history, run_path, count_parameters(model))
