"""What the paper reports, and how this book's runs compare with it.

Fuster-Barceló & Uhlmann, "Are Vision Foundation Models Foundational for Electron Microscopy Image
Segmentation?" (LMRL @ ICLR 2026, arXiv:2602.08505) gives few numbers in its text: the Fréchet
distance between Lucchi++ and VNC image embeddings of DINOv2-L/14 (79.32 frozen, 45.02 after LoRA)
and a logistic-regression probe that separates the two datasets perfectly (accuracy and AUROC 1.0),
all in the caption of Fig. 1. Its segmentation findings are qualitative here (per-cell IoU values
are not reproduced in this book, because they are not available to it): single-dataset LoRA beats
the frozen backbone in-domain, and training on both datasets together ("paired") loses in-domain
IoU. :data:`PAPER_CLAIMS` lists exactly these; :func:`compare_with_paper` checks each one against a
results table (:func:`emlib.grid.runner.read_results`) and a latent-diagnostics table
(:func:`emlib.latents.latent_report`). :data:`FIG2_BASELINES` holds the literature baselines that
Fig. 2 draws beside the paper's own Lucchi++ values, as the authors' figure script writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emlib.config import PROFILES
from emlib.errors import ConfigError
from emlib.evaluation import scored_rows

__all__ = ["PaperClaim", "PAPER_CLAIMS", "PAPER_BACKBONE", "NOT_ASSESSED_RANDOM", "compare_with_paper",
           "book_vs_paper_numbers", "LiteratureBaseline", "FIG2_BASELINES", "FIG2_SOURCE", "fig2_baselines",
           "fig2_comparison"]

#: The backbone the paper's latent numbers were measured with: DINOv2-L/14, with registers as the authors'
#: backbone factory loads it (``cfusterbarcelo/shift-peft`` ``backbone_dinov2.py``: torch.hub ``dinov2_vitl14_reg``).
PAPER_BACKBONE = "dinov2_vitl14_reg"
#: DINOv2-L/14 either way: the paper names no variant, so runs of the plain model are compared too.
_PAPER_VARIANTS = (PAPER_BACKBONE, "dinov2_vitl14")
#: Regimes built on a foundation model (the U-Net baseline is not part of the claims).
_FM_REGIMES = ("frozen", "lora")
#: The verdict of a claim measured on a backbone with random weights.
NOT_ASSESSED_RANDOM = "not assessed (random weights)"


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
    PaperClaim("probe_accuracy_lora", "With the LoRA adapter the probe still tells the datasets apart: accuracy", 1.0,
               "Fig. 1 caption ('in both')", _LATENTS),
    PaperClaim("probe_auroc_lora", "With the LoRA adapter the probe still tells the datasets apart: AUROC", 1.0,
               "Fig. 1 caption ('in both')", _LATENTS),
    PaperClaim("lora_beats_frozen", "Single-dataset training: LoRA improves in-domain IoU_fg over the frozen backbone",
               None, "abstract", _GRID + " (chapter 04_lora)"),
    PaperClaim("paired_collapses", "Paired training (Lucchi++ + VNC) lowers in-domain IoU_fg against single-dataset "
               "training", None, "abstract", _GRID + " (chapter 05_paired_training)"),
)



@dataclass(frozen=True)
class LiteratureBaseline:
    """One published method the paper's Fig. 2 draws beside its own Lucchi++ IoU_fg.

    Attributes
    ----------
    label : str
        As the figure names it (method, and the paper that reports the number).
    group : {'Supervised', 'Zero-shot'}
    iou_fg : float
        Foreground IoU on Lucchi++, in [0, 1], as the figure script holds it.
    """

    label: str
    group: str
    iou_fg: float


#: The script that draws Fig. 2, where :data:`FIG2_BASELINES` are written (``external_rows``).
FIG2_SOURCE = "uhlmanngroup/MicroscopyFoundationHub scripts/analysis/fancy_plot.py"

#: Fig. 2's literature baselines on Lucchi++, in the order of the figure script.
FIG2_BASELINES: tuple[LiteratureBaseline, ...] = (
    LiteratureBaseline("2D U-Net (Casser 2020)", "Supervised", 0.888),
    LiteratureBaseline("MLP (González-Marfil 2025)", "Supervised", 0.586),
    LiteratureBaseline("2D U-Net (Franco-Barranco 2021)", "Supervised", 0.893),
    LiteratureBaseline("2D Attention U-Net (Franco-Barranco 2021)", "Supervised", 0.893),
    LiteratureBaseline("CLIPSeg-Img (Hinderling 2024)", "Zero-shot", 0.148),
    LiteratureBaseline("CLIPSeg-Txt (Lüddecke 2022)", "Zero-shot", 0.067),
    LiteratureBaseline("ConvPaint (Lüddecke 2022)", "Zero-shot", 0.189),
    LiteratureBaseline("DINOSim 1P, ViT-g (González-Marfil 2025)", "Zero-shot", 0.421),
    LiteratureBaseline("DINOSim 3P, ViT-g (González-Marfil 2025)", "Zero-shot", 0.486),
)


def fig2_baselines() -> pd.DataFrame:
    """:data:`FIG2_BASELINES` as a tidy table: ``label, group, iou_fg, source``, one row per method.

    Examples
    --------
    >>> t = fig2_baselines()
    >>> t.groupby("group")["iou_fg"].max().to_dict()
    {'Supervised': 0.893, 'Zero-shot': 0.486}
    """
    rows = [{"label": b.label, "group": b.group, "iou_fg": b.iou_fg, "source": FIG2_SOURCE} for b in FIG2_BASELINES]
    return pd.DataFrame(rows)


def fig2_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2 as a table: the literature's Lucchi++ IoU_fg beside this build's foundation-model runs.

    Parameters
    ----------
    results : DataFrame
        Tidy results (:func:`emlib.grid.runner.read_results`). Their Lucchi++ rows against true labels
        count (:func:`emlib.evaluation.scored_rows`), of frozen and LoRA runs trained on Lucchi++ or
        paired (correct pairing), averaged over seeds.

    Returns
    -------
    DataFrame
        ``label, group, iou_fg, source, weights_label``: the rows of :func:`fig2_baselines`, then one
        row per (regime, training set) of this build, in the group ``this build``.

    Examples
    --------
    >>> runs = pd.DataFrame({"backbone": ["dinov2_vits14"] * 2, "regime": ["frozen", "lora"], "train_set": "lucchi_pp",
    ...                      "test_set": "lucchi_pp", "iou_fg": [0.5, 0.7], "weights_label": "random weights"})
    >>> fig2_comparison(runs).tail(2)[["label", "group", "iou_fg"]].to_dict("records")
    [{'label': 'dinov2_vits14 frozen, trained on lucchi_pp', 'group': 'this build', 'iou_fg': 0.5}, {'label': 'dinov2_vits14 lora, trained on lucchi_pp', 'group': 'this build', 'iou_fg': 0.7}]
    """
    _check_columns(results, ("backbone", "regime", "train_set", "test_set", "iou_fg", "weights_label"), "results")
    ours = scored_rows(results, test_sets=["lucchi_pp"])
    ours = ours[ours["regime"].isin(_FM_REGIMES) & ours["train_set"].isin(["lucchi_pp", "paired"])]
    if "pairing" in ours:
        ours = ours[ours["pairing"].fillna("correct") == "correct"]
    rows = fig2_baselines().assign(weights_label="as published").to_dict("records")
    for (backbone, regime, train_set), group in ours.groupby(["backbone", "regime", "train_set"], sort=False):
        rows.append({"label": f"{backbone} {regime}, trained on {train_set}", "group": "this build",
                     "iou_fg": float(group["iou_fg"].mean()), "source": "this build's runs",
                     "weights_label": _labels(group["weights_label"])})
    return pd.DataFrame(rows, columns=["label", "group", "iou_fg", "source", "weights_label"])


COLUMNS = ["claim_id", "claim", "source", "paper_value", "book_value", "ci_low", "ci_high", "rel_diff", "holds", "detail",
           "profile", "weights_label", "reproduce"]


def _labels(values: pd.Series) -> str:
    labels = sorted({str(v) for v in values.dropna()})
    return ", ".join(labels) if labels else "-"


def _check_columns(df: pd.DataFrame, needed: tuple[str, ...], name: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(f"{name} lacks the columns {missing}; pass the table of "
                          f"{'emlib.grid.runner.read_results' if name == 'results' else 'emlib.latents.latent_report'}")


def _random(labels: pd.Series) -> bool:
    """True when any of the weights labels is a random initialisation."""
    return any("random" in str(v).lower() for v in labels.dropna())


def _seed_verdict(holds: bool, seeds: set, labels: pd.Series, profile: str) -> tuple[bool | str, str]:
    """The verdict of a comparison over runs: not assessed on random weights or with seeds of the profile missing."""
    wanted = set(PROFILES[profile].seeds) if profile in PROFILES else set()
    missing = sorted(wanted - seeds)
    used = f"seeds {', '.join(str(s) for s in sorted(seeds))}" + (f" of the profile's {len(wanted)}" if wanted else "")
    if _random(labels):
        return NOT_ASSESSED_RANDOM, used
    if missing:
        return f"not assessed (no matched runs for seeds {missing} of profile {profile!r})", used
    return holds, used


def _lora_vs_frozen(results: pd.DataFrame, profile: str) -> dict:
    single = results[results["in_domain"].astype(bool) & (results["train_set"] != "paired")]
    keys = ["backbone", "train_set", "test_set", "seed"]
    frozen = single[single["regime"] == "frozen"].groupby(keys)["iou_fg"].mean()
    lora = single[single["regime"] == "lora"].groupby(keys)["iou_fg"].mean()
    both = pd.concat({"frozen": frozen, "lora": lora}, axis=1).dropna()
    if both.empty:
        return {"value": np.nan, "holds": None, "weights": "-",
                "detail": "no single-dataset frozen and LoRA runs with the same backbone, train set and seed"}
    diff = both["lora"] - both["frozen"]
    rows = single[single["regime"].isin(_FM_REGIMES)]
    holds, used = _seed_verdict(bool(diff.mean() > 0), set(both.index.get_level_values("seed")), rows["weights_label"],
                                profile)
    detail = (f"mean in-domain IoU_fg LoRA {both['lora'].mean():.3f} vs frozen {both['frozen'].mean():.3f}; "
              f"LoRA higher in {int((diff > 0).sum())} of {len(diff)} matched runs ({used})")
    return {"value": float(diff.mean()), "holds": holds, "detail": detail, "weights": _labels(rows["weights_label"])}


def _paired_vs_single(results: pd.DataFrame, profile: str) -> dict:
    fm = results[results["in_domain"].astype(bool) & results["regime"].isin(_FM_REGIMES)]
    keys = ["backbone", "regime", "test_set", "seed"]
    paired = fm[fm["train_set"] == "paired"].groupby(keys)["iou_fg"].mean()
    single = fm[fm["train_set"] == fm["test_set"]].groupby(keys)["iou_fg"].mean()
    both = pd.concat({"paired": paired, "single": single}, axis=1).dropna()
    if both.empty:
        return {"value": np.nan, "holds": None, "weights": "-",
                "detail": "no paired and single-dataset runs with the same backbone, regime and seed"}
    diff = both["paired"] - both["single"]
    holds, used = _seed_verdict(bool(diff.mean() < 0), set(both.index.get_level_values("seed")), fm["weights_label"],
                                profile)
    detail = (f"mean in-domain IoU_fg paired {both['paired'].mean():.3f} "
              f"vs single-dataset {both['single'].mean():.3f}; paired lower in {int((diff < 0).sum())} of {len(diff)} "
              f"matched (regime, test set) cells ({used})")
    return {"value": float(diff.mean()), "holds": holds, "detail": detail, "weights": _labels(fm["weights_label"])}


def _latent_rows(latents: pd.DataFrame | None, lora: bool) -> pd.DataFrame:
    if latents is None or latents.empty:
        return pd.DataFrame()
    is_lora = latents["adapter"].astype(str).str.lower().str.startswith("lora")
    return latents[is_lora] if lora else latents[latents["adapter"].astype(str) == "frozen"]


def _not_comparable(row: pd.Series) -> str:
    """Why the paper's number cannot be compared with ``row`` ('' when it can)."""
    if _random(pd.Series([row["weights_label"]])):
        return NOT_ASSESSED_RANDOM
    if str(row["backbone"]) not in _PAPER_VARIANTS:
        return f"not assessed (backbone {row['backbone']}; the paper's is DINOv2-L/14: {' or '.join(_PAPER_VARIANTS)})"
    return ""


def _fd_smaller(latents: pd.DataFrame | None) -> dict:
    frozen, lora = _latent_rows(latents, False), _latent_rows(latents, True)
    if frozen.empty or lora.empty:
        return {"value": np.nan, "holds": None, "detail": "needs a frozen and a LoRA row in the latent diagnostics",
                "weights": "-"}
    base = frozen.iloc[0]
    diff = float(lora["fd"].mean() - base["fd"])
    labels = pd.concat([frozen["weights_label"], lora["weights_label"]])
    detail = (f"FD LoRA {lora['fd'].mean():.2f} (mean over {len(lora)} adapter(s): {', '.join(map(str, lora['adapter']))}) "
              f"vs frozen {base['fd']:.2f} ({base['backbone']})")
    holds = NOT_ASSESSED_RANDOM if _random(labels) else bool(diff < 0)
    return {"value": diff, "holds": holds, "detail": detail, "weights": _labels(labels)}


def _latent_claim(claim: PaperClaim, latents: pd.DataFrame | None) -> dict:
    if claim.claim_id == "fd_lora_smaller":
        return _fd_smaller(latents)
    rows = _latent_rows(latents, claim.claim_id.endswith("_lora"))
    if rows.empty:
        return {"value": np.nan, "holds": None, "detail": "no matching row in the latent diagnostics", "weights": "-"}
    row = rows.iloc[0]
    why = _not_comparable(row)
    out: dict = {"weights": str(row["weights_label"])}
    if claim.claim_id.startswith("fd"):
        value, low, high = float(row["fd"]), float(row["fd_low"]), float(row["fd_high"])
        rel = value / claim.paper_value - 1.0
        method = row.get("fd_interval", "interval")
        slices = row.get("slices", f"{row['n_a']} vs {row['n_b']} slices")
        out.update(value=value, ci_low=low, ci_high=high, rel_diff=rel, holds=bool(low <= claim.paper_value <= high),
                   detail=(f"FD {value:.2f} ({rel:+.1%} against the paper's {claim.paper_value}), {method} "
                           f"[{low:.2f}, {high:.2f}]; adapter: {row['adapter']}; slices: {slices}. The interval is "
                           "for the FD at these numbers of slices: the paper's value is comparable if it used as many"))
    else:
        metric = "accuracy" if claim.claim_id.startswith("probe_accuracy") else "auroc"
        value = float(row[f"protocol_{metric}"])
        out.update(value=value, holds=bool(value >= 0.99), rel_diff=value / claim.paper_value - 1.0,
                   detail=(f"adapter: {row['adapter']}, one 80/20 split; cross-validated {metric} "
                           f"{row[f'probe_{metric}']:.3f}"))
    if why:
        out.update(holds=why, detail=f"{why}; {out['detail']}")
    return out


def compare_with_paper(results: pd.DataFrame, latents: pd.DataFrame | None, *, profile: str) -> pd.DataFrame:
    """Check every claim of :data:`PAPER_CLAIMS` against this book's tables.

    Parameters
    ----------
    results : pandas.DataFrame
        Tidy results (:func:`emlib.grid.runner.read_results`): ``backbone, regime, train_set, test_set,
        seed, in_domain, iou_fg, weights_label``. Only the rows of each test set alone against true
        labels (:func:`emlib.evaluation.scored_rows`) and paired runs on the correct pairing are compared.
    latents : pandas.DataFrame or None
        Latent diagnostics (:func:`emlib.latents.latent_report`), one row with ``adapter='frozen'``
        and one whose adapter starts with ``LoRA``; None leaves the latent claims unchecked.
    profile : str
        The profile that produced the tables (shown, filled into the commands, and giving the seeds a
        comparison must cover; a name outside :data:`emlib.config.PROFILES` requires none).

    Returns
    -------
    pandas.DataFrame
        One row per claim: ``claim_id, claim, source, paper_value, book_value, ci_low, ci_high,
        rel_diff, holds, detail, profile, weights_label, reproduce``. ``book_value`` is the measured
        number for a numeric claim and the deciding difference for a qualitative one (LoRA minus
        frozen, paired minus single, mean FD of the LoRA rows minus frozen). ``ci_low, ci_high``: the
        FD's confidence interval (``fd_low, fd_high`` of the latents, the half-sample subsampling
        interval of the FD at the embedded numbers of slices); ``rel_diff``: book / paper - 1 for a
        numeric claim. ``detail`` says which slices and adapter an FD comes from, and which seeds a
        comparison used.

        ``holds`` is True or False where the check is meaningful; None where the tables hold nothing
        to check; otherwise a string ``"not assessed (<why>)"``: :data:`NOT_ASSESSED_RANDOM` whenever
        the rows come from a backbone with random weights (every claim, the comparative ones
        included), another backbone than DINOv2-L/14 for the paper's numbers, or runs missing for
        some seed of the profile (the comparisons of runs match backbone, sets and seed, and use
        every seed of the profile). FD: the paper's value inside the interval; probe: at least 0.99.
    """
    _check_columns(results, ("backbone", "regime", "train_set", "test_set", "seed", "in_domain", "iou_fg",
                             "weights_label"), "results")
    results = scored_rows(results)  # each test set alone, true labels: the cross-dataset matrix
    if "pairing" in results:  # paired runs on the authors' published pairing are chapter 5b's question
        results = results[(results["train_set"] != "paired") | (results["pairing"] == "correct")]
    if latents is not None:
        _check_columns(latents, ("backbone", "adapter", "weights_label", "fd", "fd_low", "fd_high", "n_a", "n_b",
                                 "probe_accuracy", "probe_auroc", "protocol_accuracy", "protocol_auroc"), "latents")
    rows = []
    for claim in PAPER_CLAIMS:
        if claim.claim_id == "lora_beats_frozen":
            found = _lora_vs_frozen(results, profile)
        elif claim.claim_id == "paired_collapses":
            found = _paired_vs_single(results, profile)
        else:
            found = _latent_claim(claim, latents)
        rows.append({
            "claim_id": claim.claim_id, "claim": claim.what, "source": claim.source, "paper_value": claim.paper_value,
            "book_value": found["value"], "ci_low": found.get("ci_low", np.nan), "ci_high": found.get("ci_high", np.nan),
            "rel_diff": found.get("rel_diff", np.nan), "holds": found["holds"], "detail": found["detail"],
            "profile": profile, "weights_label": found["weights"], "reproduce": claim.reproduce.format(profile=profile),
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
