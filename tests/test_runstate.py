"""A run's state on disk (emlib.runstate): the checkpoint restores model and optimiser bit for bit, or is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emlib.config import RunConfig
from emlib.errors import DataError
from emlib.runfiles import CHECKPOINT, CONFIG
from emlib.runstate import resume, save_checkpoint, trainable_state


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()


def _setup(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model[1].requires_grad_(False)  # a frozen module: its tensors are not part of the trainable state
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1), torch.amp.GradScaler(
        "cuda", enabled=False)


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    cfg = RunConfig(pretrained=False)
    model, optimizer, scaler = _setup()
    _step(model, optimizer)
    save_checkpoint(tmp_path, cfg, 0, model, optimizer, scaler, [{"epoch": 0, "loss": 0.5}])
    _step(model, optimizer)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    again, optimizer2, scaler2 = _setup(seed=1)  # other weights: everything trainable must come from the file
    start, history, best = resume(tmp_path, cfg, again, optimizer2, scaler2)
    assert (start, history, best) == (1, [{"epoch": 0, "loss": 0.5}], None) and (tmp_path / CONFIG).is_file()
    _step(again, optimizer2)
    assert set(trainable_state(again)) == {"0.weight", "0.bias"}
    assert all(torch.equal(expected[k], again.state_dict()[k]) for k in trainable_state(again))


def test_a_checkpoint_of_another_config_is_not_resumed_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    model, optimizer, scaler = _setup()
    save_checkpoint(tmp_path, RunConfig(pretrained=False, seed=1), 3, model, optimizer, scaler, [])
    assert resume(tmp_path, RunConfig(pretrained=False), model, optimizer, scaler)[0] == 0
    (tmp_path / CHECKPOINT).write_bytes(b"PK\x03\x04 a zip, or a pickle, or half a file")
    (tmp_path / CONFIG).unlink()
    with pytest.raises(DataError, match=rf"{CHECKPOINT} cannot be read \(.*\); delete it to train this run again"):
        resume(tmp_path, RunConfig(pretrained=False), model, optimizer, scaler)
    assert not (tmp_path / CONFIG).exists()  # refused before anything was written
