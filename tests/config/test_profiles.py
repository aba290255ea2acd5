"""emlib.config.profiles: the profiles, grid expansion and selection, the authors schedule."""

from __future__ import annotations


import pytest

from emlib.config import (
    PROFILES,
    REGIMES,
    TRAIN_SETS,
    Profile,
    get_profile,
    grid_configs,
    list_profiles,
)
from emlib.errors import ConfigError


#: The smoke grid's run ids; the hashes pin the digests of every smoke run (results folders rely on them).
#: They changed on purpose twice: the smoke profile moved to the linear head (issue 11, degenerate runs), and
#: device, cache and the weights path left a run's identity (issue 22: the smoke profile runs on device="cpu").
SMOKE_RUN_IDS = [
    "lucchi_pp-frozen-dinov2_vits14-s0-c7343cba",
    "lucchi_pp-lora-dinov2_vits14-s0-cbb7ef15",
    "lucchi_pp-unet-unet-s0-5ddf21ff",
    "vnc-frozen-dinov2_vits14-s0-bbbc617c",
    "vnc-lora-dinov2_vits14-s0-9d6640fa",
    "vnc-unet-unet-s0-79955ea6",
    "paired-frozen-dinov2_vits14-s0-90d61f36",
    "paired-lora-dinov2_vits14-s0-0bae5a04",
    "paired-unet-unet-s0-505efd1e",
]
#: The ids the same runs had before issue 22 (``RunConfig.legacy_run_id``): folders under them are read back.
LEGACY_SMOKE_RUN_IDS = [
    "lucchi_pp-frozen-dinov2_vits14-s0-27daffb8",
    "lucchi_pp-lora-dinov2_vits14-s0-2203cee1",
    "lucchi_pp-unet-unet-s0-98320cb6",
    "vnc-frozen-dinov2_vits14-s0-357b5e90",
    "vnc-lora-dinov2_vits14-s0-88448675",
    "vnc-unet-unet-s0-02ba5d5d",
    "paired-frozen-dinov2_vits14-s0-9efbed72",
    "paired-lora-dinov2_vits14-s0-eb26525f",
    "paired-unet-unet-s0-4b929736",
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


def test_smoke_grid_run_ids_are_pinned() -> None:
    configs = grid_configs("smoke")
    assert [c.run_id for c in configs] == SMOKE_RUN_IDS
    assert len(grid_configs("paper")) == 3 * 2 * 3 * 5
    assert [c.run_id for c in grid_configs(get_profile("smoke"))] == SMOKE_RUN_IDS  # a Profile works as well
    assert [c.legacy_run_id for c in configs] == LEGACY_SMOKE_RUN_IDS


def test_where_a_run_runs_is_not_its_identity() -> None:
    """Issue 22: `emlib grid --device cuda` and a chapter on a GPU find the runs made on a CPU."""
    configs = grid_configs("smoke")
    for where in ({"device": "cuda"}, {"device": "auto"}, {"cache": "disk"}, {"cache": "none"}):
        assert [c.run_id for c in grid_configs("smoke", **where)] == SMOKE_RUN_IDS, where
        assert [c.legacy_run_id for c in grid_configs("smoke", **where)] != LEGACY_SMOKE_RUN_IDS, where
    pretrained = grid_configs("quick", regimes=["frozen"], train_sets=["vnc"])[0]
    assert pretrained.replace(weights="/somewhere/w.safetensors").run_id == pretrained.run_id
    assert configs[0].replace(seed=1).run_id != configs[0].run_id  # what it computes still is
    assert configs[0].replace(amp=False).run_id != configs[0].run_id


def test_grid_configs_selection() -> None:
    lora_paired = grid_configs("smoke", regimes=["lora"], train_sets=["paired"])
    assert [c.run_id for c in lora_paired] == [r for r in SMOKE_RUN_IDS if r.startswith("paired-lora-")]
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


def test_grid_configs_puts_each_backbones_weights_file_on_its_runs() -> None:
    """`run_grid("paper", out, weights={...})` serves the paper's three backbones; one file is refused there
    (before any work, in Python words with the CLI's alongside), and names no run uses are refused."""
    files = {"dinov2_vitl14_reg": "a.pth", "openclip_vitl14": "b.bin"}
    paper = grid_configs("paper", train_sets=["vnc"], seeds=[0], weights=files)
    assert {(c.backbone, c.regime): c.weights for c in paper} == {
        ("dinov2_vitl14_reg", "frozen"): "a.pth", ("dinov2_vitl14_reg", "lora"): "a.pth",
        ("dinov3_vitl16", "frozen"): None, ("dinov3_vitl16", "lora"): None,
        ("openclip_vitl14", "frozen"): "b.bin", ("openclip_vitl14", "lora"): "b.bin"}
    quick = grid_configs("quick", train_sets=["vnc"], weights="w.pth")  # one backbone: one file is enough
    assert [(c.regime, c.weights) for c in quick] == [("frozen", "w.pth"), ("lora", "w.pth"), ("unet", None)]
    with pytest.raises(ConfigError, match=r"weights='w.pth' does not say which backbone .* dinov2_vitl14_reg, "
                                          r"dinov3_vitl16, openclip_vitl14; pass one file per backbone") as info:
        grid_configs("paper", weights="w.pth")
    assert info.value.cli_message.startswith("--weights w.pth does not say which backbone it is for")
    with pytest.raises(ConfigError, match=r"weights names 'openclip_vitb16', a backbone no selected run uses"):
        grid_configs("quick", weights={"openclip_vitb16": "x.bin"})


def test_grid_configs_rejects_unknown_selections() -> None:
    with pytest.raises(ConfigError, match="regime='full' is not allowed"):
        grid_configs("smoke", regimes=["full"])
    with pytest.raises(ConfigError, match="train_set='both' is not allowed"):
        grid_configs("smoke", train_sets=["both"])
    assert grid_configs("paper", regimes=["unet"]) == []  # allowed, but not in the paper's grid


def test_paper_profile_carries_the_authors_schedule() -> None:
    paper = get_profile("paper")
    base = paper.base
    assert (base.epochs, base.patience, base.val_fraction, base.val_seed) == (1000, 20, 0.1, 42)
    assert (base.crop, base.long_edge, base.augment, base.lr, base.loss, base.amp) == (None, 1022, False, 5e-5, "monai_dice", False)  # MONAI Dice: seg_trainer.py
    sizes = {(c.train_set, c.backbone.split("_")[0]): c.batch_size for c in grid_configs(paper)}
    assert sizes[("lucchi_pp", "dinov2")] == sizes[("vnc", "dinov3")] == 1
    assert sizes[("paired", "dinov2")] == sizes[("lucchi_pp", "openclip")] == sizes[("paired", "openclip")] == 2
    assert grid_configs(paper, batch_size=4)[0].batch_size == 4  # an explicit override wins


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_dry_runs_keep_every_code_path_at_a_small_size(name: str) -> None:
    """A dry run shrinks sizes only: regimes, training sets, pretrained weights and switches stay (issue 12)."""
    real, dry = get_profile(name), get_profile(name).dry_run()
    assert dry.name == f"{name}-dry" == get_profile(f"{name}-dry").name == get_profile(name, dry_run=True).name
    assert dry.is_dry_run and dry.dry_run_of == name and not real.is_dry_run and dry.dry_run() is dry
    assert (dry.regimes, dry.train_sets, dry.batch_sizes) == (real.regimes, real.train_sets, real.batch_sizes)
    b, rb = dry.base, real.base
    assert b.pretrained is True and b.weights is None
    for switch in ("pos_interpolation", "val_fraction", "patience", "cache", "augment", "lr", "loss", "head", "amp"):
        assert getattr(b, switch) == getattr(rb, switch), switch
    assert (b.crop is None) == (rb.crop is None)  # whole slices stay whole slices
    assert b.epochs <= 2 and len(dry.seeds) == 1 and b.train_slices <= 3 and b.eval_slices == 1
    def families(names: tuple[str, ...]) -> set[str]:
        return {n.split("_")[0] for n in names}

    assert families(dry.backbones) == families(real.backbones)
    assert families(dry.family_backbones) == families(real.family_backbones)
    assert all(n in ("dinov2_vits14", "dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16") for n in dry.backbones)
    assert dry.summary().startswith(f"dry run of {name}: ") and "local test hub" in dry.summary()
    assert len(grid_configs(dry)) == len(grid_configs(real)) // len(real.seeds) * len(dry.seeds) * (
        len(dry.backbones) // len(real.backbones))


def test_paper_dry_run_is_whole_slices_of_every_family() -> None:
    dry = get_profile("paper-dry")
    assert (dry.base.crop, dry.base.long_edge, dry.base.cache, dry.base.patience) == (None, 112, "disk", 20)
    assert dry.backbones == dry.family_backbones == ("dinov2_vits14_reg", "dinov3_vits16", "openclip_vitb16")
    assert dry.base.backbone == dry.backbones[0]  # the chapters' backbone is small too
    assert {(c.regime, c.train_set, c.backbone) for c in grid_configs(dry)} == {
        (r, t, b) for r in ("frozen", "lora") for t in TRAIN_SETS for b in dry.backbones}


def test_dry_run_names_and_errors() -> None:
    assert list_profiles(dry_runs=True) == ["smoke", "quick", "paper", "quick-dry", "paper-dry"]
    assert "quick-dry" not in PROFILES  # made on demand from the real profile
    with pytest.raises(ConfigError, match="'smoke' profile has no dry run"):
        get_profile("smoke", dry_run=True)
    with pytest.raises(ConfigError, match="unknown profile 'smoke-dry'.*'quick-dry'"):
        get_profile("smoke-dry")


def test_pairings_are_an_axis_of_the_paired_runs_only() -> None:
    plain = grid_configs("smoke")
    both = grid_configs("smoke", pairings=["correct", "published"])
    assert [c for c in both if c.pairing == "correct"] == plain  # the default grid, unchanged
    published = [c for c in both if c.pairing == "published"]
    assert {c.train_set for c in published} == {"paired"} and len(published) == sum(c.train_set == "paired" for c in plain)
    assert grid_configs("smoke", pairings=["published"], train_sets=["paired"]) == published
    with pytest.raises(ConfigError, match=r"select it with pairings=\['published'\]"):
        grid_configs("smoke", pairing="published")


@pytest.mark.parametrize("seed", [2**64, 99999999999999999999999, -1])
def test_a_seed_outside_32_bits_is_one_sentence_before_any_work(seed: int, tmp_path, capsys) -> None:
    """Issue 23, item 10: ``--seed 99999999999999999999999`` / ``seeds=[2**64]`` end in one sentence naming the range,
    not torch's ``ValueError: Overflow``; through the CLI with exit status 2, in seconds, with nothing written."""
    import time

    from emlib.cli import main

    with pytest.raises(ConfigError) as info:
        grid_configs("smoke", seeds=[seed])
    assert str(info.value) == f"seed {seed} is not allowed; seeds are integers in [0, 4294967295] (32-bit), e.g. seeds=[0]"
    out = tmp_path / "runs"
    t0 = time.perf_counter()
    assert main(["grid", "--profile", "smoke", "--out", str(out), "--root", str(tmp_path), "--quiet", "--seed", str(seed)]) == 2
    assert time.perf_counter() - t0 < 10
    err = capsys.readouterr().err
    assert err == (f"emlib: error: --seed {seed} is not allowed; seeds are integers in [0, 4294967295] (32-bit), "
                   "e.g. --seed 0\n")
    assert not out.exists()
    assert [c.seed for c in grid_configs("smoke", seeds=[2**32 - 1], regimes=["unet"], train_sets=["vnc"])] == [2**32 - 1]
