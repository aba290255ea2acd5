"""emlib.paper: the claims list and compare_with_paper on small hand-made tables (no models)."""

from __future__ import annotations

import pandas as pd
import pytest

from emlib.errors import ConfigError
from emlib.paper import NOT_ASSESSED_RANDOM, PAPER_CLAIMS, compare_with_paper


def _results(paired_iou: float = 0.3, lora_iou: float = 0.8, frozen_iou: float = 0.6, weights: str = "pretrained",
             seeds=(0,)):
    rows = []
    for regime, single in (("frozen", frozen_iou), ("lora", lora_iou)):
        for train in ("lucchi_pp", "vnc", "paired"):
            for test in ("lucchi_pp", "vnc"):
                for seed in seeds:
                    in_domain = train in (test, "paired")
                    iou = (paired_iou if train == "paired" else single) if in_domain else 0.1
                    rows.append({"backbone": "dinov2_vits14", "regime": regime, "train_set": train, "test_set": test,
                                 "seed": seed, "in_domain": in_domain, "iou_fg": iou, "weights_label": weights})
    rows.append({"backbone": "unet", "regime": "unet", "train_set": "paired", "test_set": "vnc", "seed": 0,
                 "in_domain": True, "iou_fg": 0.99, "weights_label": "trained from scratch"})
    return pd.DataFrame(rows)


def _latents(backbone: str = "dinov2_vitl14", weights: str = "pretrained", fd=(80.0, 44.0), ci=10.0, acc=1.0):
    base = {"backbone": backbone, "weights_label": weights, "n_a": 165, "n_b": 20, "probe_accuracy": acc,
            "probe_auroc": acc, "protocol_accuracy": acc, "protocol_auroc": acc}
    return pd.DataFrame([
        {**base, "adapter": "frozen", "fd": fd[0], "fd_low": fd[0] - ci, "fd_high": fd[0] + ci},
        {**base, "adapter": "LoRA (paired-lora-x)", "fd": fd[1], "fd_low": fd[1] - ci, "fd_high": fd[1] + ci},
    ])


def _by_id(table):
    return table.set_index("claim_id")


def test_claims_only_carry_the_papers_numbers():
    values = {c.claim_id: c.paper_value for c in PAPER_CLAIMS}
    assert values["fd_frozen"] == 79.32 and values["fd_lora"] == 45.02
    assert values["probe_accuracy"] == values["probe_auroc"] == 1.0
    assert values["probe_accuracy_lora"] == values["probe_auroc_lora"] == 1.0  # "accuracy and AUROC = 1.0 in both"
    numeric = ("fd_frozen", "fd_lora", "probe_accuracy", "probe_auroc", "probe_accuracy_lora", "probe_auroc_lora")
    assert {v for k, v in values.items() if k not in numeric} == {None}
    assert {c.source for c in PAPER_CLAIMS} <= {"Fig. 1 caption", "Fig. 1 caption ('in both')", "abstract"}


def test_columns_and_one_row_per_claim():
    t = compare_with_paper(_results(), _latents(), profile="paper")
    assert list(t["claim_id"]) == [c.claim_id for c in PAPER_CLAIMS]
    for col in ("claim", "paper_value", "book_value", "holds", "profile", "weights_label", "reproduce"):
        assert col in t.columns
    assert (t["profile"] == "paper").all()
    assert t["reproduce"].str.contains("--profile paper|-p profile paper").all()


def test_qualitative_claims_hold_when_the_table_says_so():
    t = _by_id(compare_with_paper(_results(), None, profile="quick"))
    assert t.loc["lora_beats_frozen", "holds"] is True
    assert t.loc["lora_beats_frozen", "book_value"] == pytest.approx(0.2)
    assert t.loc["paired_collapses", "holds"] is True
    assert t.loc["paired_collapses", "book_value"] == pytest.approx(0.3 - 0.7)  # mean over frozen and LoRA
    assert t.loc["paired_collapses", "weights_label"] == "pretrained"  # the U-Net row is left out


def test_qualitative_claims_fail_when_the_table_says_so():
    t = _by_id(compare_with_paper(_results(paired_iou=0.9, lora_iou=0.5), None, profile="quick"))
    assert t.loc["lora_beats_frozen", "holds"] is False
    assert t.loc["paired_collapses", "holds"] is False


def test_missing_runs_give_none_not_a_verdict():
    res = _results()
    t = _by_id(compare_with_paper(res[res["train_set"] != "paired"], None, profile="smoke"))
    assert t.loc["paired_collapses", "holds"] is None
    assert pd.isna(t.loc["paired_collapses", "book_value"])
    assert t.loc["fd_frozen", "holds"] is None  # no latents


def test_latent_claims_compared_only_for_the_papers_backbone_and_weights():
    t = _by_id(compare_with_paper(_results(), _latents(), profile="paper"))
    assert t.loc["fd_frozen", "book_value"] == 80.0 and t.loc["fd_frozen", "holds"] is True
    assert t.loc["fd_lora", "holds"] is True
    assert t.loc["fd_lora_smaller", "holds"] is True and t.loc["fd_lora_smaller", "book_value"] == pytest.approx(-36.0)
    assert t.loc["probe_accuracy", "holds"] is True and t.loc["probe_auroc", "book_value"] == 1.0
    assert t.loc["probe_auroc_lora", "holds"] is True and "LoRA" in t.loc["probe_auroc_lora", "detail"]
    lora_mixes = _latents().assign(protocol_auroc=[1.0, 0.7])  # the adapter's row alone decides the LoRA claim
    mixed = _by_id(compare_with_paper(_results(), lora_mixes, profile="paper"))
    assert mixed.loc["probe_auroc", "holds"] is True and mixed.loc["probe_auroc_lora", "holds"] is False
    far = _by_id(compare_with_paper(_results(), _latents(fd=(120.0, 44.0), ci=5.0, acc=0.8), profile="paper"))
    assert far.loc["fd_frozen", "holds"] is False and far.loc["probe_accuracy", "holds"] is False
    smoke = _by_id(compare_with_paper(_results(weights="random weights"),
                                      _latents("dinov2_vits14", "random weights"), profile="smoke"))
    assert smoke.loc["fd_frozen", "holds"] == NOT_ASSESSED_RANDOM and "random weights" in smoke.loc["fd_frozen", "detail"]
    assert smoke.loc["fd_frozen", "weights_label"] == "random weights"
    assert smoke.loc["probe_auroc", "holds"] == NOT_ASSESSED_RANDOM
    other = _by_id(compare_with_paper(_results(), _latents("dinov2_vits14"), profile="quick"))
    assert other.loc["fd_lora", "holds"] == (
        "not assessed (backbone dinov2_vits14; the paper's is DINOv2-L/14: dinov2_vitl14_reg or dinov2_vitl14)")
    for variant in ("dinov2_vitl14_reg", "dinov2_vitl14"):  # the paper names no variant: both are compared
        assert _by_id(compare_with_paper(_results(), _latents(variant), profile="paper")).loc["fd_frozen", "holds"] is True


def test_bad_tables_raise_config_error():
    with pytest.raises(ConfigError, match="iou_fg"):
        compare_with_paper(_results().drop(columns="iou_fg"), None, profile="smoke")
    with pytest.raises(ConfigError, match="fd_low"):
        compare_with_paper(_results(), _latents().drop(columns="fd_low"), profile="smoke")


def test_book_vs_paper_numbers_long_form() -> None:
    from emlib.paper import book_vs_paper_numbers

    comparison = pd.DataFrame({
        "claim_id": ["fd_frozen", "fd_lora", "lora_beats_frozen"],
        "paper_value": [79.32, 45.02, None],
        "book_value": [60.0, None, 0.1],
    })
    long = book_vs_paper_numbers(comparison)
    assert long[["claim_id", "source"]].values.tolist() == [
        ["fd_frozen", "paper"], ["fd_frozen", "this build"], ["fd_lora", "paper"]]
    assert long["value"].tolist() == [79.32, 60.0, 45.02]


def test_comparative_verdicts_are_not_assessed_on_random_weights():
    t = _by_id(compare_with_paper(_results(weights="random weights"), _latents("dinov2_vits14", "random weights"),
                                  profile="smoke"))
    for claim in ("lora_beats_frozen", "paired_collapses", "fd_lora_smaller"):
        assert t.loc[claim, "holds"] == "not assessed (random weights)" == NOT_ASSESSED_RANDOM
        assert pd.notna(t.loc[claim, "book_value"])  # the measured difference is still shown
    assert t.loc["fd_lora_smaller", "book_value"] == pytest.approx(-36.0)


def test_comparative_verdicts_use_every_seed_of_the_profile():
    one = _by_id(compare_with_paper(_results(), None, profile="paper"))
    assert one.loc["lora_beats_frozen", "holds"] == "not assessed (no matched runs for seeds [1, 2, 3, 4] of profile 'paper')"
    assert one.loc["paired_collapses", "holds"].startswith("not assessed (no matched runs for seeds [1, 2, 3, 4]")
    full = _by_id(compare_with_paper(_results(seeds=(0, 1, 2, 3, 4)), None, profile="paper"))
    assert full.loc["lora_beats_frozen", "holds"] is True and full.loc["paired_collapses", "holds"] is True
    assert "LoRA higher in 10 of 10 matched runs (seeds 0, 1, 2, 3, 4 of the profile's 5)" in full.loc[
        "lora_beats_frozen", "detail"]
    custom = _by_id(compare_with_paper(_results(seeds=(3,)), None, profile="my-grid"))  # no profile: no seeds required
    assert custom.loc["lora_beats_frozen", "holds"] is True


def test_fd_rows_report_estimate_interval_relative_difference_slices_and_adapter():
    lat = _latents(fd=(90.0, 44.0), ci=5.0).assign(
        fd_interval="95% half-sample subsampling (normal, FD at these sample sizes)",
        slices="lucchi_pp test: 165 slices; vnc all: 20 slices (long side 1022)")
    t = _by_id(compare_with_paper(_results(), lat, profile="paper"))
    row = t.loc["fd_frozen"]
    assert row["book_value"] == 90.0 and (row["ci_low"], row["ci_high"]) == (85.0, 95.0)
    assert row["rel_diff"] == pytest.approx(90.0 / 79.32 - 1.0)
    assert row["holds"] is False  # 79.32 lies below the interval
    for text in ("+13.5%", "half-sample subsampling", "[85.00, 95.00]", "adapter: frozen", "vnc all: 20 slices"):
        assert text in row["detail"], text
    assert "adapter: LoRA (paired-lora-x)" in t.loc["fd_lora", "detail"] and t.loc["fd_lora", "holds"] is True
    assert pd.isna(t.loc["lora_beats_frozen", "ci_low"]) and pd.isna(t.loc["lora_beats_frozen", "rel_diff"])


def test_fig2_baselines_are_the_figure_scripts_numbers() -> None:
    from emlib.paper import FIG2_BASELINES, FIG2_SOURCE, fig2_baselines

    t = fig2_baselines()
    assert len(t) == len(FIG2_BASELINES) == 9 and set(t["group"]) == {"Supervised", "Zero-shot"}
    assert t["iou_fg"].between(0, 1).all() and (t["source"] == FIG2_SOURCE).all()
    values = dict(zip(t["label"], t["iou_fg"]))
    assert values["2D U-Net (Casser 2020)"] == 0.888 and values["CLIPSeg-Txt (Lüddecke 2022)"] == 0.067
    assert values["DINOSim 3P, ViT-g (González-Marfil 2025)"] == 0.486


def test_fig2_puts_this_builds_lucchi_runs_beside_the_literature():
    from emlib.paper import FIG2_BASELINES, fig2_comparison

    base = {"backbone": "dinov2_vitl14_reg", "weights_label": "pretrained", "test_labels": "correct", "pairing": "correct"}
    runs = pd.DataFrame([
        {**base, "regime": "frozen", "train_set": "lucchi_pp", "test_set": "lucchi_pp", "iou_fg": 0.6, "seed": 0},
        {**base, "regime": "frozen", "train_set": "lucchi_pp", "test_set": "lucchi_pp", "iou_fg": 0.8, "seed": 1},
        {**base, "regime": "frozen", "train_set": "lucchi_pp", "test_set": "vnc", "iou_fg": 0.1, "seed": 0},
        {**base, "regime": "frozen", "train_set": "lucchi_pp", "test_set": "mixed", "iou_fg": 0.3, "seed": 0},
        {**base, "regime": "lora", "train_set": "paired", "test_set": "lucchi_pp", "iou_fg": 0.05, "seed": 0,
         "pairing": "published"},  # chapter 5b's runs are not Fig. 2's
        {**base, "regime": "lora", "train_set": "paired", "test_set": "lucchi_pp", "iou_fg": 0.2, "seed": 0,
         "test_labels": "published"},
        {**base, "regime": "unet", "train_set": "lucchi_pp", "test_set": "lucchi_pp", "iou_fg": 0.9, "seed": 0},
    ])
    table = fig2_comparison(runs)
    assert len(table) == len(FIG2_BASELINES) + 1
    ours = table[table.group == "this build"].iloc[0]
    assert ours["label"] == "dinov2_vitl14_reg frozen, trained on lucchi_pp" and ours["iou_fg"] == pytest.approx(0.7)
    assert set(table[table.group != "this build"].weights_label) == {"as published"}
