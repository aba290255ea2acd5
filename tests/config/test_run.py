"""emlib.config.run: RunConfig and LoraSettings validation, digests and round trips."""

from __future__ import annotations

import dataclasses

import pytest

from emlib.config import (
    ALIGNMENT_FIELDS,
    LORA_TARGETS,
    LoraSettings,
    RunConfig,
    grid_configs,
)
from emlib.errors import ConfigError


def test_run_config_round_trip_and_digest_stability() -> None:
    assert RunConfig().digest() == "5166def52dfa8569e7205f65cdbddcdb9e428dbb5a5e007a0d36b65cd0eb7100"
    cfg = RunConfig(regime="lora", lora=LoraSettings(rank=4, alpha=8, targets=("attn.qkv", "mlp.fc1")), seed=3)
    data = cfg.to_dict()
    assert data["lora"]["targets"] == ["attn.qkv", "mlp.fc1"]  # plain JSON
    again = RunConfig.from_dict(data)
    assert again == cfg and again.digest() == cfg.digest() and again.lora.scale == 2.0
    assert cfg.digest() == RunConfig.from_dict(data).digest()  # stable across calls
    assert cfg.replace(seed=4).digest() != cfg.digest()
    assert not set(ALIGNMENT_FIELDS) & set(RunConfig().to_dict())  # remedies at their defaults are left out
    assert cfg.run_id == f"lucchi_pp-lora-dinov2_vits14-s3-{cfg.digest()[:8]}"
    assert RunConfig(regime="unet").run_id.startswith("lucchi_pp-unet-unet-s0-")
    with pytest.raises(ConfigError, match=r"unknown RunConfig keys \['colour'\]"):
        RunConfig.from_dict({"colour": "red"})


def test_weights_label() -> None:
    assert RunConfig().weights_label == "pretrained"
    assert RunConfig(weights="w.pth").weights_label == "pretrained (w.pth)"
    assert RunConfig(pretrained=False).weights_label == "random weights"
    assert RunConfig(regime="unet").weights_label == "trained from scratch"


def test_bad_configs_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="regime='full'"):
        RunConfig(regime="full")
    with pytest.raises(ConfigError, match="set long_edge"):
        RunConfig(crop=None)
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        grid_configs("fast")


def test_validation_errors() -> None:
    with pytest.raises(ConfigError, match="epochs=0 must be positive"):
        RunConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"lr=0 must be in \(0, 1\]"):
        RunConfig(lr=0)
    with pytest.raises(ConfigError, match="cache='gpu'"):
        RunConfig(cache="gpu")
    with pytest.raises(ConfigError, match="coral_weight=-1"):
        RunConfig(train_set="paired", coral_weight=-1)
    with pytest.raises(ConfigError, match="alignment_reference='paired'"):
        RunConfig(alignment_reference="paired")
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().seed = 1  # type: ignore[misc]


def test_lora_settings_validation() -> None:
    assert LoraSettings().scale == 2.0 and set(LoraSettings().targets) <= set(LORA_TARGETS)
    assert LoraSettings(targets=["mlp.fc2"]).targets == ("mlp.fc2",)  # lists become tuples
    for bad, match in (
        ({"rank": 0}, r"^rank=0 must be in \[1, 4096\] \(and at most the backbone's width, e.g. 384 for a ViT-S\)$"),
        ({"rank": 10**9}, r"^rank=1000000000 must be in \[1, 4096\]"),
        ({"alpha": float("inf")}, "^alpha=inf must be a finite number$"),
        ({"alpha": float("nan")}, "^alpha=nan must be a finite number$"),
        ({"alpha": -2}, "^alpha=-2 must be positive$"),
        ({"rank": True}, "^rank=True must be an integer$"),
        ({"alpha": 0}, "^alpha=0 must be positive$"),
        ({"dropout": 1.0}, r"^dropout=1.0 must be in \[0, 1\)$"),
        ({"targets": ("attn.qkv", "attn.qkv")}, "distinct names"),
        ({"targets": ("head",)}, "distinct names"),
    ):
        with pytest.raises(ConfigError, match=match):
            LoraSettings(**bad)
    from emlib.models import LoraSettings as Reexported

    assert Reexported is LoraSettings


def test_new_options_leave_old_digests_alone_and_check_combinations() -> None:
    assert RunConfig().digest() == "5166def52dfa8569e7205f65cdbddcdb9e428dbb5a5e007a0d36b65cd0eb7100"
    cfg = RunConfig(train_set="paired", film=True, input_alignment="clahe")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg and cfg.digest() != RunConfig(train_set="paired").digest()
    with pytest.raises(ConfigError, match="input_alignment='gamma'"):
        RunConfig(input_alignment="gamma")
    with pytest.raises(ConfigError, match="set train_set='paired'"):
        RunConfig(heads_per_domain=True)
    with pytest.raises(ConfigError, match="unet regime"):
        RunConfig(regime="unet", train_set="paired", feature_norm=True)
    with pytest.raises(ConfigError, match="cannot be combined"):
        RunConfig(train_set="paired", coral_weight=1.0, heads_per_domain=True)


def test_the_published_pairing_is_a_paired_option_in_the_id_and_leaves_old_digests_alone() -> None:
    paired = RunConfig(train_set="paired")
    published = paired.replace(pairing="published")
    assert "pairing" not in paired.to_dict() and paired.replace(pairing="correct").digest() == paired.digest()
    assert published.to_dict()["pairing"] == "published" and RunConfig.from_dict(published.to_dict()) == published
    assert published.run_id.startswith("paired_published-frozen-") and paired.run_id.startswith("paired-frozen-")
    with pytest.raises(ConfigError, match=r"needs train_set='paired' \(got 'vnc'\); set train_set='paired' or pairing='correct'"):
        RunConfig(train_set="vnc", pairing="published")
    with pytest.raises(ConfigError, match=r"pairing='sorted' is not allowed; choose one of \['correct', 'published'\]"):
        RunConfig(train_set="paired", pairing="sorted")


def test_schedule_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        RunConfig(val_fraction=1.0)
    with pytest.raises(ConfigError, match="needs a validation split"):
        RunConfig(patience=5)
    with pytest.raises(ConfigError, match="lora_lr"):
        RunConfig(lora_lr=0.0)
    assert "patience" not in RunConfig().to_dict() and RunConfig(val_fraction=0.1, patience=3).to_dict()["patience"] == 3


def test_constraints_are_declared_next_to_the_fields() -> None:
    """Issue 22: each number and choice of a config declares what it accepts in its field, checked in one place."""
    from emlib.validation import CONSTRAINT

    for cls in (RunConfig, LoraSettings):
        for f in dataclasses.fields(cls):
            if str(f.type).split(" |")[0] in ("int", "float") or f.name in ("regime", "train_set", "loss", "cache", "head"):
                assert CONSTRAINT in f.metadata, f"{cls.__name__}.{f.name} declares no constraint"
    with pytest.raises(ConfigError) as info:
        RunConfig(batch_size=0)
    assert str(info.value) == "batch_size=0 must be positive"
    with pytest.raises(ConfigError) as info:
        RunConfig(patience=0, val_fraction=0.1)
    assert str(info.value) == "patience=0 must be positive or None"


def test_seeds_and_learning_rates_are_checked_against_their_range() -> None:
    """Issue 23, item 10: a seed past 32 bits or an absurd learning rate is one sentence at construction, not a
    ValueError from torch's seeding or a NaN loss after training."""
    for changes, message in (
        ({"seed": 2**64}, "seed=18446744073709551616 must be in [0, 4294967295] (seeds are 32-bit integers)"),
        ({"seed": 99999999999999999999999}, "seed=99999999999999999999999 must be in [0, 4294967295]"),
        ({"val_seed": 2**32}, "val_seed=4294967296 must be in [0, 4294967295]"),
        ({"lr": 1e6}, "lr=1000000.0 must be in (0, 1] (emlib's profiles use 5e-5 to 3e-3)"),
        ({"lora_lr": 2.0}, "lora_lr=2.0 must be in (0, 1] or None"),
        ({"weight_decay": float("inf")}, "weight_decay=inf must be a finite number"),
        ({"epochs": 10**400}, "epochs=100000000000... (401 digits) must be below 2**63"),
    ):
        with pytest.raises(ConfigError) as info:
            RunConfig(**changes)
        assert str(info.value).startswith(message)
    edge = RunConfig(seed=2**32 - 1, val_seed=0, lr=1, lora=LoraSettings(rank=4096))
    assert edge.seed == 2**32 - 1 and edge.lr == 1
