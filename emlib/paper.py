"""What the paper reports, and how this book's runs compare with it.

Fuster-Barceló & Uhlmann, "Are Vision Foundation Models Foundational for Electron Microscopy Image
Segmentation?" (LMRL @ ICLR 2026, arXiv:2602.08505) gives few numbers in its text: the Fréchet
distance between Lucchi++ and VNC image embeddings of DINOv2-L/14 (79.32 frozen, 45.02 after LoRA)
and a logistic-regression probe that separates the two datasets perfectly (accuracy and AUROC 1.0),
all in the caption of Fig. 1. Its segmentation findings are qualitative here (per-cell IoU values
are not reproduced in this book, because they are not available to it): single-dataset LoRA beats
the frozen backbone in-domain, and training on both datasets together ("paired") loses in-domain
IoU. :data:`PAPER_CLAIMS` lists exactly these; :func:`compare_with_paper` checks each one against a
results table (:func:`emlib.experiments.grid.read_results`) and a latent-diagnostics table
(:func:`emlib.latents.latent_report`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emlib.errors import ConfigError

__all__ = ["PaperClaim", "PAPER_CLAIMS", "PAPER_BACKBONE", "compare_with_paper", "book_vs_paper_numbers"]

#: The backbone the paper's latent numbers were measured with.
PAPER_BACKBONE = "dinov2_vitl14"
#: Regimes built on a foundation model (the U-Net baseline is not part of the claims).
_FM_REGIMES = ("frozen", "lora")


@dataclass(frozen=True)
class PaperClaim:
    """One statement of the paper.

    Attributes
    ----------
    claim_id : str
        Short key, e.g. ``fd_frozen``.
    what : str
        The statement in words.
    paper_value : float or None
        The number the paper gives, or None for a qualitative claim.
    source : str
        Where in the paper (``Fig. 1 caption``, ``abstract``).
    reproduce : str
        Command or chapter that recomputes it; ``{profile}`` is filled in.
    """

    claim_id: str
    what: str
    paper_value: float | None
    source: str
    reproduce: str


_LATENTS = "python -m emlib.book build --profile {profile} --only 06_latent_diagnostics"
_GRID = "emlib grid --profile {profile}"

PAPER_CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim("fd_frozen", "Fréchet distance Lucchi++ vs VNC, frozen DINOv2-L/14 image embeddings", 79.32,
               "Fig. 1 caption", _LATENTS),
    PaperClaim("fd_lora", "Fréchet distance Lucchi++ vs VNC, DINOv2-L/14 with the LoRA adapter", 45.02,
               "Fig. 1 caption", _LATENTS),
    PaperClaim("fd_lora_smaller", "LoRA brings the two datasets closer (its Fréchet distance is below the frozen one)",
               None, "Fig. 1 caption", _LATENTS),
    PaperClaim("probe_accuracy", "Logistic-regression probe (80/20 split) tells the datasets apart: accuracy", 1.0,
               "Fig. 1 caption", _LATENTS),
    PaperClaim("probe_auroc", "Logistic-regression probe (80/20 split) tells the datasets apart: AUROC", 1.0,
               "Fig. 1 caption", _LATENTS),
    PaperClaim("lora_beats_frozen", "Single-dataset training: LoRA improves in-domain IoU_fg over the frozen backbone",
               None, "abstract", _GRID + " (chapter 04_lora)"),
    PaperClaim("paired_collapses", "Paired training (Lucchi++ + VNC) lowers in-domain IoU_fg against single-dataset "
               "training", None, "abstract", _GRID + " (chapter 05_paired_training)"),
)

COLUMNS = ["claim_id", "claim", "source", "paper_value", "book_value", "holds", "detail", "profile", "weights_label",
           "reproduce"]


def _labels(values: pd.Series) -> str:
    labels = sorted({str(v) for v in values.dropna()})
    return ", ".join(labels) if labels else "-"


def _check_columns(df: pd.DataFrame, needed: tuple[str, ...], name: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(f"{name} lacks the columns {missing}; pass the table of "
                          f"{'emlib.experiments.grid.read_results' if name == 'results' else 'emlib.latents.latent_report'}")


def _lora_vs_frozen(results: pd.DataFrame) -> tuple[float, bool | None, str, str]:
    single = results[results["in_domain"].astype(bool) & (results["train_set"] != "paired")]
    keys = ["backbone", "train_set", "test_set", "seed"]
    frozen = single[single["regime"] == "frozen"].groupby(keys)["iou_fg"].mean()
    lora = single[single["regime"] == "lora"].groupby(keys)["iou_fg"].mean()
    both = pd.concat({"frozen": frozen, "lora": lora}, axis=1).dropna()
    if both.empty:
        return np.nan, None, "no single-dataset frozen and LoRA runs with the same backbone, train set and seed", "-"
    diff = both["lora"] - both["frozen"]
    detail = (f"mean in-domain IoU_fg LoRA {both['lora'].mean():.3f} vs frozen {both['frozen'].mean():.3f}; "
              f"LoRA higher in {int((diff > 0).sum())} of {len(diff)} matched runs")
    rows = single[single["regime"].isin(_FM_REGIMES)]
    return float(diff.mean()), bool(diff.mean() > 0), detail, _labels(rows["weights_label"])


def _paired_vs_single(results: pd.DataFrame) -> tuple[float, bool | None, str, str]:
    fm = results[results["in_domain"].astype(bool) & results["regime"].isin(_FM_REGIMES)]
    keys = ["backbone", "regime", "test_set", "seed"]
    paired = fm[fm["train_set"] == "paired"].groupby(keys)["iou_fg"].mean()
    single = fm[fm["train_set"] == fm["test_set"]].groupby(keys)["iou_fg"].mean()
    both = pd.concat({"paired": paired, "single": single}, axis=1).dropna()
    if both.empty:
        return np.nan, None, "no paired and single-dataset runs with the same backbone, regime and seed", "-"
    diff = both["paired"] - both["single"]
    detail = (f"mean in-domain IoU_fg paired {both['paired'].mean():.3f} "
              f"vs single-dataset {both['single'].mean():.3f}; paired lower in {int((diff < 0).sum())} of {len(diff)} matched (regime, test set) cells")
    return float(diff.mean()), bool(diff.mean() < 0), detail, _labels(fm["weights_label"])


def _latent_row(latents: pd.DataFrame | None, lora: bool) -> pd.Series | None:
    if latents is None or latents.empty:
        return None
    is_lora = latents["adapter"].astype(str).str.lower().str.startswith("lora")
    rows = latents[is_lora] if lora else latents[latents["adapter"].astype(str) == "frozen"]
    return None if rows.empty else rows.iloc[0]


def _comparable(row: pd.Series) -> tuple[bool, str]:
    if "random" in str(row["weights_label"]).lower():
        return False, "random weights: not comparable with the paper's number"
    if str(row["backbone"]) != PAPER_BACKBONE:
        return False, f"backbone {row['backbone']}, the paper used {PAPER_BACKBONE}: not comparable"
    return True, ""


def _latent_claim(claim: PaperClaim, latents: pd.DataFrame | None) -> tuple[float, bool | None, str, str]:
    if claim.claim_id == "fd_lora_smaller":
        frozen, lora = _latent_row(latents, False), _latent_row(latents, True)
        if frozen is None or lora is None:
            return np.nan, None, "needs a frozen and a LoRA row in the latent diagnostics", "-"
        diff = float(lora["fd"] - frozen["fd"])
        detail = f"FD LoRA {lora['fd']:.2f} vs frozen {frozen['fd']:.2f} ({frozen['backbone']})"
        return diff, bool(diff < 0), detail, _labels(pd.Series([frozen["weights_label"], lora["weights_label"]]))
    row = _latent_row(latents, claim.claim_id == "fd_lora")
    if row is None:
        return np.nan, None, "no matching row in the latent diagnostics", "-"
    ok, why = _comparable(row)
    if claim.claim_id.startswith("fd"):
        value = float(row["fd"])
        detail = f"bootstrap 95% CI [{row['fd_low']:.2f}, {row['fd_high']:.2f}], {row['n_a']} vs {row['n_b']} slices"
        holds = bool(row["fd_low"] <= claim.paper_value <= row["fd_high"]) if ok else None
    else:
        metric = "accuracy" if claim.claim_id == "probe_accuracy" else "auroc"
        value = float(row[f"protocol_{metric}"])
        detail = (f"frozen embeddings, one 80/20 split; cross-validated {metric} "
                  f"{row[f'probe_{metric}']:.3f}")
        holds = bool(value >= 0.99) if ok else None
    if not ok:
        detail = f"{why}; {detail}"
    return value, holds, detail, str(row["weights_label"])


def compare_with_paper(results: pd.DataFrame, latents: pd.DataFrame | None, *, profile: str) -> pd.DataFrame:
    """Check every claim of :data:`PAPER_CLAIMS` against this book's tables.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results (:func:`emlib.experiments.grid.read_results`): ``backbone, regime, train_set, test_set,
        seed, in_domain, iou_fg, weights_label``.
    latents : pandas.DataFrame or None
        Latent diagnostics (:func:`emlib.latents.latent_report`), one row with ``adapter='frozen'``
        and one whose adapter starts with ``LoRA``; None leaves the latent claims unchecked.
    profile : str
        The profile that produced the tables (shown, and filled into the commands).

    Returns
    -------
    pandas.DataFrame
        One row per claim: ``claim_id, claim, source, paper_value, book_value, holds, detail,
        profile, weights_label, reproduce``. ``book_value`` is the measured number for a numeric
        claim and the deciding difference for a qualitative one (LoRA minus frozen, paired minus
        single, FD LoRA minus frozen). ``holds`` is a bool where the check is meaningful and None
        otherwise: numeric latent claims are compared only for pretrained DINOv2-L/14 embeddings
        (FD: the paper's value inside the bootstrap CI; probe: at least 0.99).
    """
    _check_columns(results, ("backbone", "regime", "train_set", "test_set", "seed", "in_domain", "iou_fg",
                             "weights_label"), "results")
    if latents is not None:
        _check_columns(latents, ("backbone", "adapter", "weights_label", "fd", "fd_low", "fd_high", "n_a", "n_b",
                                 "probe_accuracy", "probe_auroc", "protocol_accuracy", "protocol_auroc"), "latents")
    rows = []
    for claim in PAPER_CLAIMS:
        if claim.claim_id == "lora_beats_frozen":
            value, holds, detail, weights = _lora_vs_frozen(results)
        elif claim.claim_id == "paired_collapses":
            value, holds, detail, weights = _paired_vs_single(results)
        else:
            value, holds, detail, weights = _latent_claim(claim, latents)
        rows.append({
            "claim_id": claim.claim_id, "claim": claim.what, "source": claim.source, "paper_value": claim.paper_value,
            "book_value": value, "holds": holds, "detail": detail, "profile": profile, "weights_label": weights,
            "reproduce": claim.reproduce.format(profile=profile),
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["holds"] = table["holds"].astype(object).where(table["holds"].notna(), None)
    return table


def book_vs_paper_numbers(comparison: pd.DataFrame) -> pd.DataFrame:
    """The numeric claims of a :func:`compare_with_paper` table in long form for a bar chart.

    Returns
    -------
    pandas.DataFrame
        Columns ``claim_id, claim, source, value``: one row with ``source='paper'`` and one with
        ``source='this build'`` per numeric claim (the latter only where the build measured it).
    """
    _check_columns(comparison, ("claim_id", "paper_value", "book_value"), "comparison")
    numeric = comparison[comparison["paper_value"].notna()]
    rows = []
    for _, row in numeric.iterrows():
        rows.append({"claim_id": row["claim_id"], "claim": row["claim_id"], "source": "paper", "value": row["paper_value"]})
        if pd.notna(row["book_value"]):
            rows.append({"claim_id": row["claim_id"], "claim": row["claim_id"], "source": "this build",
                         "value": float(row["book_value"])})
    return pd.DataFrame(rows, columns=["claim_id", "claim", "source", "value"])
