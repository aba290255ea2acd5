"""Remedies for paired training as grid runs (emlib.grid.remedies): configs, the remedy table, latents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emlib.config import get_profile
from emlib.errors import ConfigError
from emlib.grid.remedies import (
    REMEDIES,
    alignment_configs,
    alignment_summary,
    frozen_only_remedies,
    left_out_note,
    remedy_config,
    remedy_latent_space,
    remedy_latents,
    run_alignment_grid,
)

TINY_GRID = dict(
    train_slices=2, samples_per_epoch=4, epochs=1, batch_size=2, crop=28, eval_window=28, eval_region=56,
    eval_slices=1, head_channels=8, unet_channels=4,
)


def test_alignment_configs_and_summary() -> None:
    pairs = alignment_configs("smoke", regimes=("frozen",), remedies=["CORAL", "fg reweighting"])
    assert [name for name, _ in pairs] == ["paired baseline", "CORAL", "fg reweighting", "lucchi_pp only", "vnc only"]
    assert pairs[1][1].coral_weight > 0 and pairs[3][1].train_set == "lucchi_pp"
    with pytest.raises(ConfigError, match="unknown remedies"):
        alignment_configs("smoke", remedies=["magic"])
    rows = []
    for remedy, train_set, scores in [
        ("paired baseline", "paired", (0.2, 0.1)),
        ("CORAL", "paired", (0.5, 0.4)),
        ("lucchi_pp only", "lucchi_pp", (0.8, 0.3)),
        ("vnc only", "vnc", (0.2, 0.6)),
    ]:
        for test_set, iou in zip(("lucchi_pp", "vnc"), scores):
            rows.append({"remedy": remedy, "regime": "frozen", "train_set": train_set, "test_set": test_set,
                         "in_domain": train_set in (test_set, "paired"), "iou_fg": iou, "weights_label": "random weights"})
    table = alignment_summary(pd.DataFrame(rows)).set_index("remedy")
    assert table.loc["CORAL", "in_domain_iou_fg"] == pytest.approx(0.45)
    assert np.isnan(table.loc["CORAL", "cross_domain_iou_fg"])
    assert table.loc["lucchi_pp only", "cross_domain_iou_fg"] == pytest.approx(0.3)
    assert table.loc["CORAL", "gap_closed"] == pytest.approx((0.45 - 0.15) / (0.7 - 0.15))
    assert table.loc["paired baseline", "gap_closed"] == pytest.approx(0.0)
    assert table.kind.tolist() == ["baseline", "remedy", "reference", "reference"]


def test_alignment_configs_backbone_overrides_and_regime_check() -> None:
    pairs = alignment_configs("smoke", regimes=("lora",), remedies=[], references=False, backbone="dinov3_vits16",
                              device=None, epochs=1)
    assert [name for name, _ in pairs] == ["paired baseline"]
    cfg = pairs[0][1]
    assert (cfg.backbone, cfg.regime, cfg.train_set, cfg.epochs, cfg.device) == ("dinov3_vits16", "lora", "paired", 1, "cpu")
    default = alignment_configs("smoke", regimes=("frozen",), remedies=["FiLM per domain"], references=False)
    assert default[0][1].backbone == "dinov2_vits14" and default[1][1].film
    assert default[1][1] == default[0][1].replace(**REMEDIES["FiLM per domain"])
    with pytest.raises(ConfigError, match="choose 'frozen' or 'lora'"):
        alignment_configs("smoke", regimes=("unet",))


def test_remedy_latent_space_names_what_is_measured() -> None:
    from emlib.config import RunConfig

    assert remedy_latent_space(RunConfig(regime="lora")) == "LoRA backbone embeddings"
    assert remedy_latent_space(RunConfig(input_alignment="clahe")) == "frozen backbone embeddings of clahe-aligned inputs"
    both = remedy_latent_space(RunConfig(train_set="paired", feature_norm=True, film=True))
    assert "feature norm + FiLM act after the backbone: not measured" in both


def test_remedy_latents_add_fd_probe_and_latent_space(shared_data: Path, tmp_path: Path) -> None:
    remedies = ["histmatch to Lucchi++", "FiLM per domain"]
    results = run_alignment_grid("smoke", tmp_path, regimes=("frozen", "lora"), remedies=remedies,
                                 references=False, root=shared_data, progress=False, **TINY_GRID)
    assert (tmp_path / "alignment_results.csv").is_file()
    assert list(dict.fromkeys(results.remedy)) == ["paired baseline", *remedies]
    latents = remedy_latents(results, tmp_path, profile="smoke", root=shared_data)
    assert len(latents) == 6 and (tmp_path / "alignment_latents.csv").is_file()
    assert any((tmp_path / "embeddings").glob("emb-*.npz"))
    summary = alignment_summary(results, latents=latents)
    assert {"fd", "probe_auroc", "latent_space", "weights_label", "gap_closed"} <= set(summary.columns)
    seen = summary.remedy != "FiLM per domain"
    assert np.isfinite(summary.fd[seen]).all() and summary.probe_auroc[seen].between(0, 1).all()
    assert (summary.weights_label == "random weights").all()
    table = summary.set_index(["regime", "remedy"])
    # input alignment changes what the frozen backbone sees, so the distance moves
    assert table.loc[("frozen", "histmatch to Lucchi++"), "fd"] != pytest.approx(table.loc[("frozen", "paired baseline"), "fd"])
    assert "histmatch-aligned" in table.loc[("frozen", "histmatch to Lucchi++"), "latent_space"]
    # FiLM acts after a frozen backbone: the embeddings and distance are the baseline's, so the summary shows none
    raw = latents.set_index(["regime", "remedy"])
    assert raw.loc[("frozen", "FiLM per domain"), "fd"] == pytest.approx(raw.loc[("frozen", "paired baseline"), "fd"])
    assert not raw.loc[("frozen", "FiLM per domain"), "measured"] and raw.loc[("lora", "FiLM per domain"), "measured"]
    assert np.isnan(table.loc[("frozen", "FiLM per domain"), ["fd", "probe_auroc"]].astype(float)).all()
    assert np.isfinite(table.loc[("lora", "FiLM per domain"), "fd"])
    assert "not measured" in table.loc[("frozen", "FiLM per domain"), "latent_space"]
    assert table.loc[("lora", "paired baseline"), "latent_space"].startswith("LoRA backbone")
    again = remedy_latents(results, tmp_path, profile="smoke", root=shared_data)  # from the cache
    assert np.allclose(again.fd, latents.fd) and np.allclose(again.probe_auroc, latents.probe_auroc)


def test_summary_rejects_latents_without_the_columns() -> None:
    rows = pd.DataFrame([{"remedy": "paired baseline", "regime": "frozen", "train_set": "paired", "test_set": t,
                          "in_domain": True, "iou_fg": 0.1} for t in ("lucchi_pp", "vnc")])
    with pytest.raises(ConfigError, match="remedy_latents"):
        alignment_summary(rows, latents=pd.DataFrame({"regime": ["frozen"], "remedy": ["paired baseline"]}))
    lat = pd.DataFrame({"regime": ["frozen"] * 2, "remedy": ["paired baseline"] * 2, "fd": [1.0, 3.0],
                        "probe_auroc": [0.5, 0.7], "latent_space": ["frozen backbone embeddings"] * 2})
    table = alignment_summary(rows, latents=lat)  # seeds are averaged
    assert table.fd.tolist() == [2.0] and table.probe_auroc.tolist() == [pytest.approx(0.6)]


@pytest.mark.parametrize("profile", ["smoke", "paper", "paper-dry"])
def test_remedy_baselines_are_the_grids_runs(profile: str) -> None:
    """Issue 22: the paired baseline and the references of chapter 8 are runs the grid makes (on paper: batch 2)."""
    from emlib.config import grid_configs

    pairs = dict(alignment_configs(profile, regimes=("lora",), remedies=["balanced sampling"]))
    grid = {c.train_set: c for c in grid_configs(profile, regimes=["lora"], seeds=[0])
            if c.backbone == pairs["paired baseline"].backbone}
    assert pairs["paired baseline"] == grid["paired"]
    assert (pairs["lucchi_pp only"], pairs["vnc only"]) == (grid["lucchi_pp"], grid["vnc"])
    assert pairs["balanced sampling"] == grid["paired"].replace(balance=True)
    if profile.startswith("paper"):
        assert pairs["paired baseline"].batch_size == 2 and pairs["vnc only"].batch_size == 1
    assert remedy_config(profile, "balanced sampling", regime="lora") == pairs["balanced sampling"]
    assert remedy_config(profile, "vnc only", regime="lora") == pairs["vnc only"]
    with pytest.raises(ConfigError, match="unknown remedy 'magic'"):
        remedy_config(profile, "magic")


def test_a_profile_can_run_remedies_frozen_only_and_the_page_says_which() -> None:
    """The quick profile trains the input-level remedies frozen only; the LoRA rows keep the others, and the
    page's note names the runs left out. An explicit remedy list (or remedy_config) still makes any run."""
    quick = get_profile("quick")
    assert set(quick.lora_remedies) < set(REMEDIES)
    skipped = frozen_only_remedies(quick)
    assert skipped and not set(skipped) & set(quick.lora_remedies)
    pairs = alignment_configs(quick)
    lora = {name for name, cfg in pairs if cfg.regime == "lora"}
    frozen = {name for name, cfg in pairs if cfg.regime == "frozen"}
    assert not lora & set(skipped) and set(skipped) <= frozen and set(quick.lora_remedies) <= lora
    assert all(name in left_out_note(quick) for name in skipped) and left_out_note(quick, ["frozen"]) == ""
    explicit = alignment_configs(quick, regimes=["lora"], remedies=[skipped[0]], references=False)
    assert [name for name, _ in explicit] == ["paired baseline", skipped[0]]
    assert remedy_config(quick, skipped[0], regime="lora").input_alignment is not None
    assert frozen_only_remedies("smoke") == [] and left_out_note("smoke") == ""
    bad = replace(quick, lora_remedies=("no such remedy",))
    with pytest.raises(ConfigError, match="unknown remedies .*no such remedy.* choose from"):
        frozen_only_remedies(bad)
