"""A run's training state on disk: its trainable tensors, the checkpoint after every epoch, resuming from it.

:func:`save_checkpoint` writes ``checkpoint.safetensors`` (:mod:`emlib.runfiles`: tensors as
safetensors, everything else as JSON, atomically) after every epoch; :func:`resume` reads it back
when it holds an unfinished run of the same config, so a run stopped at any point continues
bit for bit as if it had never stopped. Nothing is unpickled: a crafted or damaged checkpoint is
refused in one sentence naming it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from emlib.config import RunConfig
from emlib.errors import DataError
from emlib.models import running_stat_names
from emlib.runfiles import CHECKPOINT, CONFIG, load_state, save_state, write_json

__all__ = ["resume", "save_checkpoint", "trainable_state"]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the tensors training changes: trainable parameters, their BatchNorm statistics, per-domain statistics."""
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


def resume(
    run_path: Path, cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> tuple[int, list, dict | None]:
    """Write ``config.json``; load ``checkpoint.safetensors`` when it holds an unfinished run of ``cfg``.

    Returns (start epoch, history, the best validation epoch's trainable tensors or None).

    The checkpoint's digest is read (from its JSON metadata) before any tensor; nothing is unpickled.
    A damaged checkpoint raises DataError naming it.
    """
    ckpt_path = run_path / CHECKPOINT
    fix = "delete it to train this run again from its first epoch"
    ours = ckpt_path.is_file() and load_state(ckpt_path, fix=fix, tensors=False).get("digest") == cfg.digest()
    run_path.mkdir(parents=True, exist_ok=True)
    write_json(run_path / CONFIG, cfg.to_dict())  # after the checkpoint's check: a refused run writes nothing
    if not ours:
        return 0, [], None
    ckpt = load_state(ckpt_path, fix=fix)
    try:
        model.load_state_dict(ckpt["trainable"], strict=False)
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        return int(ckpt["epoch"]) + 1, list(ckpt["history"]), ckpt.get("best_trainable")
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{ckpt_path} does not fit this run ({type(err).__name__}); {fix}") from None


def save_checkpoint(
    run_path: Path, cfg: RunConfig, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, history: list, best: dict | None = None,
) -> None:
    state = {
        "digest": cfg.digest(), "epoch": epoch, "trainable": trainable_state(model),
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "history": history,
    }
    if best is not None:
        state["best_trainable"] = best
    save_state(run_path / CHECKPOINT, state)
