"""Field checks (emlib.validation): every wrong type or range of a RunConfig is one sentence with the fix."""

from __future__ import annotations

import pytest

from emlib.config import LoraSettings, RunConfig
from emlib.errors import ConfigError
from emlib.validation import check_field


@pytest.mark.parametrize(("changes", "message"), [
    ({"seed": "1"}, "seed='1' must be an integer (not a string); write seed=1"),
    ({"seed": -1}, "seed=-1 must be at least 0"),
    ({"batch_size": 2.0}, "batch_size=2.0 must be an integer; write batch_size=2"),
    ({"batch_size": True}, "batch_size=True must be an integer"),
    ({"epochs": "ten"}, "epochs='ten' must be an integer (not a string)"),
    ({"lr": "1e-3"}, "lr='1e-3' must be a number (not a string); write lr=0.001"),
    ({"lr": float("nan")}, "lr=nan must be a finite number"),
    ({"lr": 0}, "lr=0 must be positive"),
    ({"weight_decay": -0.1}, "weight_decay=-0.1 must be at least 0"),
    ({"samples_per_epoch": -4}, "samples_per_epoch=-4 must be positive or None"),
    ({"train_slices": 0}, "train_slices=0 must be positive or None"),
    ({"crop": 56.0}, "crop=56.0 must be an integer; write crop=56"),
    ({"pretrained": "yes"}, "pretrained='yes' must be True or False"),
    ({"backbone": 14}, "backbone=14 must be a string"),
    ({"lora": {"rank": 4}}, "lora={'rank': 4} must be a LoraSettings, e.g. LoraSettings()"),
    ({"device": "gpu"}, "device='gpu' is not allowed; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ({"pretrained": False, "weights": "w.pth"}, "weights='w.pth' was given with pretrained=False; drop weights or set pretrained=True"),
])
def test_bad_run_config_is_one_sentence(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**changes)
    assert str(info.value) == message


def test_numbers_of_the_right_kind_pass() -> None:
    cfg = RunConfig(lr=1, seed=0, crop=None, long_edge=1022, samples_per_epoch=None, device="cuda:1")
    assert cfg.lr == 1 and RunConfig(lora=LoraSettings(alpha=8)).lora.scale == 0.5
    with pytest.raises(ConfigError, match=r"alpha='32' must be a number \(not a string\); write alpha=32.0"):
        LoraSettings(alpha="32")
    with pytest.raises(ConfigError, match=r"unknown RunConfig keys \['batchsize'\]"):
        RunConfig().replace(batchsize=2)
    with pytest.raises(ConfigError, match=r"unknown LoRA settings \['r'\]"):
        RunConfig.from_dict({"lora": {"r": 4}})
    check_field("x", None, "int | None")
