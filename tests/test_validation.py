"""Field checks (emlib.validation): every wrong type or range of a RunConfig is one sentence with the fix."""

from __future__ import annotations

import pytest

from emlib.config import LoraSettings, RunConfig
from emlib.errors import ConfigError
from emlib.validation import INT_LIMIT, Interval, check_field


@pytest.mark.parametrize(("changes", "message"), [
    ({"seed": "1"}, "seed='1' must be an integer (not a string); write seed=1"),
    ({"seed": -1}, "seed=-1 must be in [0, 4294967295] (seeds are 32-bit integers)"),
    ({"seed": 2**64}, "seed=18446744073709551616 must be in [0, 4294967295] (seeds are 32-bit integers)"),
    ({"lr": 1e6}, "lr=1000000.0 must be in (0, 1] (emlib's profiles use 5e-5 to 3e-3)"),
    ({"lr": 10**400}, "lr=100000000000... (401 digits) must be a finite number"),
    ({"batch_size": 2**63}, "batch_size=9223372036854775808 must be below 2**63 (torch and numpy take it as a 64-bit integer)"),
    ({"weight_decay": float("-inf")}, "weight_decay=-inf must be a finite number"),
    ({"epochs": float("inf")}, "epochs=inf must be an integer"),
    ({"batch_size": 2.0}, "batch_size=2.0 must be an integer; write batch_size=2"),
    ({"batch_size": True}, "batch_size=True must be an integer"),
    ({"epochs": "ten"}, "epochs='ten' must be an integer (not a string)"),
    ({"lr": "1e-3"}, "lr='1e-3' must be a number (not a string); write lr=0.001"),
    ({"lr": float("nan")}, "lr=nan must be a finite number"),
    ({"lr": 0}, "lr=0 must be in (0, 1] (emlib's profiles use 5e-5 to 3e-3)"),
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


def test_bounds_are_written_exactly_and_huge_integers_are_refused() -> None:
    """Issue 23, item 10: a 32-bit bound reads as its digits, and an integer no float or int64 holds is one sentence."""
    assert Interval(0, 2**32 - 1, high_closed=True).describe() == "in [0, 4294967295]"
    assert Interval(0, 0.5).describe() == "in [0, 0.5)" and Interval(0.5).describe() == "at least 0.5"
    check_field("n", INT_LIMIT - 1, "int")
    with pytest.raises(ConfigError, match=r"^n=9223372036854775808 must be below 2\*\*63"):
        check_field("n", INT_LIMIT, "int")
    with pytest.raises(ConfigError, match=r"^x=100000000000\.\.\. \(401 digits\) must be a finite number$"):
        check_field("x", 10**400, "float")
