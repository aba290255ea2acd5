"""Configuration (emlib.config): profiles, RunConfig validation and digests, grid expansion and selection."""

from __future__ import annotations

import dataclasses

import pytest

from emlib.config import (
    ALIGNMENT_FIELDS,
    LORA_TARGETS,
    PROFILES,
    REGIMES,
    TRAIN_SETS,
    LoraSettings,
    Profile,
    RunConfig,
    get_profile,
    grid_configs,
    list_profiles,
)
from emlib.errors import ConfigError

#: The smoke grid's run ids; the hashes pin the digests of every smoke run (results folders rely on them).
SMOKE_RUN_IDS = [
    "lucchi_pp-frozen-dinov2_vits14-s0-10e0e50f",
    "lucchi_pp-lora-dinov2_vits14-s0-862bcf81",
    "lucchi_pp-unet-unet-s0-75143525",
    "vnc-frozen-dinov2_vits14-s0-b84c5b7d",
    "vnc-lora-dinov2_vits14-s0-0b03b851",
    "vnc-unet-unet-s0-33a332c3",
    "paired-frozen-dinov2_vits14-s0-0a03134f",
    "paired-lora-dinov2_vits14-s0-dbd475d0",
    "paired-unet-unet-s0-61c0ca5d",
]


def test_profiles() -> None:
    assert list_profiles() == ["smoke", "quick", "paper"] == list(PROFILES)
    for name in list_profiles():
        prof = get_profile(name)
        assert isinstance(prof, Profile) and prof.name == name and prof.description
        assert set(prof.regimes) <= set(REGIMES) and set(prof.train_sets) <= set(TRAIN_SETS)
    smoke, paper = get_profile("smoke"), get_profile("paper")
    assert smoke.base.pretrained is False and smoke.base.device == "cpu" and smoke.cpu_threads == 1
    assert (smoke.view_slices, smoke.token_crop, smoke.token_slices) == (4, 224, 4)
    assert paper.seeds == (0, 1, 2, 3, 4) and paper.base.crop is None and paper.base.long_edge == 1022
    assert paper.token_long_edge == 1022 and len(paper.family_backbones) == 3
    assert get_profile("quick").cpu_threads is None
    with pytest.raises(ConfigError, match="unknown profile 'fast'"):
        get_profile("fast")


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
    with pytest.raises(ConfigError, match="lr=0 must be positive"):
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
        ({"rank": 0}, "rank must be a positive integer"),
        ({"rank": True}, "rank must be a positive integer"),
        ({"alpha": 0}, "alpha must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
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


def test_smoke_grid_run_ids_are_pinned() -> None:
    configs = grid_configs("smoke")
    assert [c.run_id for c in configs] == SMOKE_RUN_IDS
    assert len(grid_configs("paper")) == 3 * 2 * 3 * 5
    assert [c.run_id for c in grid_configs(get_profile("smoke"))] == SMOKE_RUN_IDS  # a Profile works as well


def test_grid_configs_selection() -> None:
    lora_paired = grid_configs("smoke", regimes=["lora"], train_sets=["paired"])
    assert [c.run_id for c in lora_paired] == ["paired-lora-dinov2_vits14-s0-dbd475d0"]
    by_regime = grid_configs("smoke", regimes=["frozen", "unet"])
    assert [c.run_id for c in by_regime] == [r for r in SMOKE_RUN_IDS if "-lora-" not in r]
    by_train_set = grid_configs("smoke", train_sets=["vnc", "lucchi_pp"])  # the profile's order is kept
    assert [c.run_id for c in by_train_set] == SMOKE_RUN_IDS[:6]
    other = grid_configs("smoke", backbone="dinov3_vits16")
    assert [c.backbone for c in other if c.regime != "unet"] == ["dinov3_vits16"] * 6
    assert [c.run_id for c in other if c.regime == "unet"] == [r for r in SMOKE_RUN_IDS if "-unet-" in r]  # U-Net runs stay
    paper = grid_configs("paper", backbone="dinov2_vitl14", regimes=["lora"], train_sets=["vnc"])
    assert [(c.backbone, c.regime, c.train_set, c.seed) for c in paper] == [("dinov2_vitl14", "lora", "vnc", s) for s in range(5)]
    assert grid_configs("smoke", regimes=["unet"], train_sets=["paired"], device="cuda", epochs=None)[0].device == "cuda"
    assert grid_configs("smoke", regimes=["lora"], epochs=None)[0].epochs == 6  # None overrides are dropped


def test_grid_configs_rejects_unknown_selections() -> None:
    with pytest.raises(ConfigError, match="regime='full' is not allowed"):
        grid_configs("smoke", regimes=["full"])
    with pytest.raises(ConfigError, match="train_set='both' is not allowed"):
        grid_configs("smoke", train_sets=["both"])
    assert grid_configs("paper", regimes=["unet"]) == []  # allowed, but not in the paper's grid
