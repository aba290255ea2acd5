"""Beyond the paper: remedies for paired training as grid runs, their latent diagnostics, one table.

Training one model on both datasets at once collapses in the paper. Each remedy is a
:class:`~emlib.config.RunConfig` override (:data:`REMEDIES`) whose work is done by a plug-in of the
training loop (:mod:`emlib.plugins`) at one of three levels:

* **input level** (``input_alignment``) -- the pixels, before any model sees them
  (:mod:`emlib.data.alignment`: standardisation, histogram matching, CLAHE, resampling);
* **feature level** -- the backbone's patch features before the head (:mod:`emlib.models.domain`:
  per-domain feature norm, FiLM; :func:`emlib.losses.coral_loss`);
* **training level** -- balanced sampling (``balance``), one head per dataset
  (``heads_per_domain``), loss reweighting by foreground fraction (``fg_reweight``).

:func:`run_alignment_grid` trains and tests them with the grid's runner next to the paired
baselines and the single-dataset references, :func:`remedy_latents` measures the latent
diagnostics of each finished run (Fréchet distance and linear probe between the two datasets'
image embeddings, as in chapter 6) and :func:`alignment_summary` turns both into one table
(remedy x IoU_fg, FD, probe AUROC).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from emlib.config import Profile, RunConfig, get_profile, grid_configs
from emlib.data.alignment import clahe_available
from emlib.diagnostics import frechet_distance, linear_probe
from emlib.errors import ConfigError, DataError
from emlib.evaluation import scored_rows
from emlib.grid.runner import run_configs
from emlib.runfiles import read_run_config, write_table
from emlib.latents import load_backbone_for_latents, run_embeddings
from emlib.models import DOMAINS

__all__ = [
    "REMEDIES",
    "alignment_configs",
    "frozen_only_remedies",
    "left_out_note",
    "remedy_config",
    "run_alignment_grid",
    "alignment_summary",
    "remedy_latent_space",
    "remedy_measured",
    "remedy_latents",
]

#: Remedy name -> RunConfig overrides, applied to the paired run of each regime.
#: ``coral_weight=1.0`` is a starting point, not a tuned value.
REMEDIES: dict[str, dict[str, Any]] = {
    "balanced sampling": {"balance": True},
    "standardise": {"input_alignment": "standardise"},
    "histmatch to Lucchi++": {"input_alignment": "histmatch"},
    "histmatch to VNC": {"input_alignment": "histmatch", "alignment_reference": "vnc"},
    "clahe": {"input_alignment": "clahe"},
    "resample to 5 nm": {"input_alignment": "resample"},
    "feature norm (AdaBN)": {"feature_norm": True},
    "FiLM per domain": {"film": True},
    "CORAL": {"coral_weight": 1.0},
    "heads per domain": {"heads_per_domain": True},
    "fg reweighting": {"fg_reweight": True},
}


def alignment_configs(
    profile: Profile | str = "smoke",
    *,
    regimes: Sequence[str] = ("frozen", "lora"),
    remedies: Sequence[str] | None = None,
    references: bool = True,
    backbone: str | None = None,
    seed: int | None = None,
    weights: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]] | None = None,
    **overrides: Any,
) -> list[tuple[str, RunConfig]]:
    """(remedy, config) pairs: per regime the paired baseline, each remedy, and the single-dataset references.

    The baselines and references are the profile's grid runs (:func:`emlib.config.grid_configs`, with
    its per-run settings such as the authors' batch sizes and its weights routing), so the remedy
    table compares with runs the grid made; each remedy is its paired baseline with the remedy's
    overrides on top.

    Parameters
    ----------
    profile : Profile or str, default='smoke'
        Base settings (backbone, sizes, epochs, batch sizes) come from this profile.
    regimes : sequence of {'frozen', 'lora'}, default=('frozen', 'lora')
    remedies : sequence of str, default=None
        Names from :data:`REMEDIES`; None takes all, less those the profile runs frozen only with LoRA
        (:attr:`~emlib.config.Profile.lora_remedies`, :func:`frozen_only_remedies`). CLAHE is dropped
        without scikit-image.
    references : bool, default=True
        Also train on each dataset alone (rows ``lucchi_pp only``, ``vnc only``): the in-domain
        scores paired training should reach.
    backbone : str, default=None
        The backbone of every run (None: the profile's first).
    seed : int, default=None
        The seed of every run (None: the profile's first).
    weights : path or dict of str to path, default=None
        Local weights files, as :func:`emlib.config.grid_configs` takes them; of a dict (a grid's files,
        one per backbone) only the file of ``backbone`` is used.
    **overrides
        Applied to every run (e.g. ``pretrained=False``, ``device='cpu'``); None values are dropped.

    Examples
    --------
    >>> [(name, c.batch_size) for name, c in alignment_configs("paper", regimes=["lora"], remedies=[])]
    [('paired baseline', 2), ('lucchi_pp only', 1), ('vnc only', 1)]
    """
    names = list(REMEDIES) if remedies is None else list(remedies)
    unknown = [n for n in names if n not in REMEDIES]
    if unknown:
        raise ConfigError(f"unknown remedies {unknown}; choose from {list(REMEDIES)}")
    if remedies is None and not clahe_available():
        names = [n for n in names if REMEDIES[n].get("input_alignment") != "clahe"]
    bad = [r for r in regimes if r not in ("frozen", "lora")]
    if bad:
        raise ConfigError(f"regimes {bad} are not allowed; remedies act on backbone features, choose 'frozen' or 'lora'")
    prof = get_profile(profile)
    backbone = backbone or prof.backbones[0]
    seeds = [prof.seeds[0] if seed is None else seed]
    if isinstance(weights, Mapping):  # a grid's files, one per backbone: the remedy runs use one of them
        weights = {name: path for name, path in weights.items() if name == backbone} or None
    train_sets = ["paired", *(DOMAINS if references else ())]
    runs = {(c.regime, c.train_set): c for c in grid_configs(
        prof, backbone=backbone, regimes=list(regimes), train_sets=train_sets, seeds=seeds, weights=weights, **overrides)}
    skip = set(frozen_only_remedies(prof)) if remedies is None else set()
    out: list[tuple[str, RunConfig]] = []
    for regime in regimes:
        paired = runs[regime, "paired"]
        out.append(("paired baseline", paired))
        out.extend((name, paired.replace(**REMEDIES[name])) for name in names if not (regime == "lora" and name in skip))
        if references:
            out.extend((f"{ds} only", runs[regime, ds]) for ds in DOMAINS)
    return out


def frozen_only_remedies(profile: Profile | str) -> list[str]:
    """The remedies the profile trains frozen only, not with LoRA (:attr:`~emlib.config.Profile.lora_remedies`).

    Raises
    ------
    ConfigError
        When the profile names a remedy that :data:`REMEDIES` does not hold.

    Examples
    --------
    >>> frozen_only_remedies("smoke")
    []
    >>> frozen_only_remedies("quick")[:2]
    ['standardise', 'histmatch to Lucchi++']
    """
    prof = get_profile(profile)
    if prof.lora_remedies is None:
        return []
    unknown = [n for n in prof.lora_remedies if n not in REMEDIES]
    if unknown:
        raise ConfigError(f"profile {prof.name!r} names unknown remedies {unknown} in lora_remedies; "
                          f"choose from {list(REMEDIES)}")
    return [n for n in REMEDIES if n not in prof.lora_remedies]


def left_out_note(profile: Profile | str, regimes: Sequence[str] = ("frozen", "lora")) -> str:
    """The sentence a page prints when the profile leaves runs of the remedy table out ('' when none is).

    Examples
    --------
    >>> left_out_note("smoke")
    ''
    >>> left_out_note("quick", regimes=["frozen"])
    ''
    >>> left_out_note("quick").split(":")[0]
    'Runs left out by the quick profile'
    """
    prof = get_profile(profile)
    skipped = frozen_only_remedies(prof) if "lora" in regimes else []
    if not skipped:
        return ""
    return (f"Runs left out by the {prof.name} profile: the LoRA runs of {', '.join(skipped)} ({len(skipped)} runs; "
            "these remedies run frozen only, to keep the book's build short on a CPU). "
            "The paper profile trains them, and `remedy_config(profile, name, regime='lora')` makes any of them.")


def remedy_config(
    profile: Profile | str, remedy: str, *, regime: str = "frozen", backbone: str | None = None, **overrides: Any,
) -> RunConfig:
    """The config of one remedy run of :func:`alignment_configs` (``"paired baseline"`` and ``"<dataset> only"`` too).

    Examples
    --------
    >>> cfg = remedy_config("smoke", "fg reweighting")
    >>> cfg.train_set, cfg.regime, cfg.fg_reweight
    ('paired', 'frozen', True)
    """
    pairs = alignment_configs(profile, regimes=(regime,), remedies=[remedy] if remedy in REMEDIES else [],
                              references=remedy.endswith(" only"), backbone=backbone, **overrides)
    chosen = [cfg for name, cfg in pairs if name == remedy]
    if not chosen:
        raise ConfigError(f"unknown remedy {remedy!r}; choose 'paired baseline', "
                          f"{', '.join(repr(f'{d} only') for d in DOMAINS)} or one of {list(REMEDIES)}")
    return chosen[0]


def run_alignment_grid(
    profile: Profile | str,
    out_dir: str | os.PathLike[str],
    *,
    regimes: Sequence[str] = ("frozen", "lora"),
    remedies: Sequence[str] | None = None,
    references: bool = True,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    backbone: str | None = None,
    **overrides: Any,
) -> pd.DataFrame:
    """Train and test every run of :func:`alignment_configs` with :func:`~emlib.grid.runner.run_configs`.

    Finished runs (``metrics.json`` in their folder) are read back, not retrained; ``overrides``
    (``seed``, ``weights`` and RunConfig fields) go to :func:`alignment_configs`.

    Returns
    -------
    DataFrame
        The tidy rows of :func:`emlib.evaluation.evaluate_both` (one per run, test set and test labels) with a
        ``remedy`` column; pass it to :func:`alignment_summary`.
    """
    prof = get_profile(profile)
    pairs = alignment_configs(prof, regimes=regimes, remedies=remedies, references=references, backbone=backbone, **overrides)
    return run_configs(
        [cfg for _, cfg in pairs], out_dir, labels={"remedy": [name for name, _ in pairs]}, table="alignment_results",
        root=root, progress=progress, profile=prof.name,
    )


def alignment_summary(results: pd.DataFrame, *, value: str = "iou_fg", latents: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (regime, remedy): IoU on each test set, in-domain and cross-domain means, gap closed.

    Columns: ``regime, remedy, train_set, kind`` (``baseline``, ``remedy`` or ``reference``),
    ``<value>_<test set>`` per test set, ``in_domain_<value>`` (mean over the test sets the run
    trained on: both for paired runs), ``cross_domain_<value>`` (mean over the others: empty for
    paired runs), ``gap_closed`` (for paired runs: ``(m - m_base) / (m_ref - m_base)`` with ``m`` the
    mean over both test sets and ``m_ref`` the mean of the two single-dataset in-domain scores;
    empty when the gap is under 0.01) and ``weights_label``. Seeds are averaged.

    With ``latents`` (the table of :func:`remedy_latents`) three more columns follow: ``fd`` (Fréchet
    distance between the two datasets' image embeddings), ``probe_auroc`` (cross-validated linear
    probe) and ``latent_space`` (which embeddings were measured); seeds are averaged, rows without a
    measurement stay empty, and so do rows whose remedy the embeddings cannot show (``measured`` False:
    a feature-level remedy on a frozen backbone, whose embeddings are the baseline's).
    """
    need = {"remedy", "regime", "train_set", "test_set", "in_domain", value}
    missing = sorted(need - set(results.columns))
    if missing:
        raise ConfigError(f"results lack the columns {missing}; pass the table of run_alignment_grid")
    results = scored_rows(results)  # each test set alone, true labels
    rows = []
    for (regime, remedy), group in results.groupby(["regime", "remedy"], sort=False):
        per_test = group.groupby("test_set", sort=False)[value].mean()
        train_set = group["train_set"].iloc[0]
        inside = group[group["in_domain"].astype(bool)][value]
        outside = group[~group["in_domain"].astype(bool)][value]
        kind = "baseline" if remedy == "paired baseline" else ("reference" if train_set != "paired" else "remedy")
        row: dict[str, Any] = {"regime": regime, "remedy": remedy, "train_set": train_set, "kind": kind}
        row.update({f"{value}_{t}": float(per_test.get(t, np.nan)) for t in DOMAINS})
        row[f"in_domain_{value}"] = float(inside.mean()) if len(inside) else np.nan
        row[f"cross_domain_{value}"] = float(outside.mean()) if len(outside) else np.nan
        if "degenerate" in group:  # a run that predicted one class everywhere on some test set
            row["degenerate"] = bool(group["degenerate"].astype(bool).any())
        if "weights_label" in group:
            row["weights_label"] = group["weights_label"].iloc[0]
        rows.append(row)
    table = pd.DataFrame(rows)
    table["gap_closed"] = np.nan
    for regime, group in table.groupby("regime", sort=False):
        base = group[group.kind == "baseline"]
        refs = group[group.kind == "reference"].set_index("train_set")
        if base.empty or not set(DOMAINS) <= set(refs.index):
            continue
        m_base = float(base[[f"{value}_{t}" for t in DOMAINS]].mean(axis=1).iloc[0])
        m_ref = float(np.mean([refs.loc[t, f"{value}_{t}"] for t in DOMAINS]))
        if abs(m_ref - m_base) < 0.01:
            continue
        sel = (table.regime == regime) & (table.train_set == "paired")
        means = table.loc[sel, [f"{value}_{t}" for t in DOMAINS]].mean(axis=1)
        table.loc[sel, "gap_closed"] = (means - m_base) / (m_ref - m_base)
    if latents is not None:
        need = {"regime", "remedy", "fd", "probe_auroc", "latent_space"}
        missing = sorted(need - set(latents.columns))
        if missing:
            raise ConfigError(f"latents lack the columns {missing}; pass the table of remedy_latents")
        per = latents.groupby(["regime", "remedy"], sort=False).agg(
            fd=("fd", "mean"), probe_auroc=("probe_auroc", "mean"), latent_space=("latent_space", "first")
        )
        if "measured" in latents:  # a remedy the embeddings cannot show gets no number, not the baseline's
            unseen = ~latents.groupby(["regime", "remedy"], sort=False)["measured"].all().astype(bool)
            per.loc[unseen, ["fd", "probe_auroc"]] = np.nan
        table = table.merge(per.reset_index(), on=["regime", "remedy"], how="left")
    return table


def remedy_latent_space(cfg: RunConfig) -> str:
    """Which embeddings :func:`remedy_latents` measures for a run, in words.

    The image embeddings of the backbone (frozen, or with the run's LoRA adapter), of the inputs after
    the run's input alignment. Feature-level remedies act after the backbone, on the head's input,
    so the measured space does not include them; the text says so instead of pretending the
    distance changed.

    Examples
    --------
    >>> remedy_latent_space(RunConfig(regime="frozen", input_alignment="histmatch"))
    'frozen backbone embeddings of histmatch-aligned inputs (reference lucchi_pp)'
    >>> remedy_latent_space(RunConfig(regime="frozen", train_set="paired", film=True))
    'frozen backbone embeddings (FiLM acts after the backbone: not measured)'
    """
    text = f"{'LoRA' if cfg.regime == 'lora' else 'frozen'} backbone embeddings"
    if cfg.input_alignment is not None:
        text += f" of {cfg.input_alignment}-aligned inputs"
        if cfg.input_alignment != "clahe":
            text += f" (reference {cfg.alignment_reference})"
    after = _after_backbone(cfg)
    if after:
        verb = "act" if len(after) > 1 else "acts"
        text += f" ({' + '.join(after)} {verb} after the backbone: not measured"
        text += "; the adapter was trained with it)" if cfg.regime == "lora" else ")"
    return text


def _after_backbone(cfg: RunConfig) -> list[str]:
    """The run's remedies that act after the backbone (on the head's input), by name."""
    flags = (("feature norm", cfg.feature_norm), ("FiLM", cfg.film), ("CORAL", cfg.coral_weight > 0),
             ("one head per domain", cfg.heads_per_domain))
    return [name for name, on in flags if on]


def remedy_measured(cfg: RunConfig) -> bool:
    """Whether the backbone embeddings of a run can show its remedy (False: a frozen run whose remedies act after it).

    Examples
    --------
    >>> remedy_measured(RunConfig(regime="frozen", train_set="paired", film=True))
    False
    >>> remedy_measured(RunConfig(regime="lora", train_set="paired", film=True))
    True
    """
    return cfg.regime == "lora" or not _after_backbone(cfg)


def remedy_latents(
    results: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    profile: Profile | str | None = None,
    root: str | os.PathLike[str] | None = None,
    slices: int | None = None,
    long_edge: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    n_splits: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Latent diagnostics of every finished run of a remedy grid: FD and linear probe, Lucchi++ vs VNC.

    For each run (folder ``out_dir/<run_id>``, the ``run_id`` column being the folder's name) the two datasets' image embeddings are taken as
    chapter 6 takes them (:func:`emlib.latents.dataset_embeddings`), from what the run's head sees
    as far as the backbone goes: the frozen backbone for frozen runs, the backbone with the run's
    LoRA adapter for LoRA runs, fed with the slices after the run's input alignment
    (:func:`emlib.latents.run_embeddings`). Feature-level remedies act after the backbone and are not measured;
    ``latent_space`` (:func:`remedy_latent_space`) says which space each row measured.

    Parameters
    ----------
    results : DataFrame
        The table of :func:`run_alignment_grid` (columns ``run_id, regime, remedy``).
    out_dir : path
        The grid folder the runs were trained in.
    profile : Profile or str, default=None
        Takes ``slices`` and ``long_edge`` from the profile's ``embedding_slices`` and
        ``embedding_long_edge`` where those are None.
    cache_dir : path, default=None
        Embedding cache; None uses ``out_dir/embeddings`` (shared with chapter 6).
    n_splits : int, default=5
        Folds of the linear probe (fewer when a dataset has fewer slices).
    seed : int, default=0
        Seed of the probe, and of the random weights when a run has no pretrained backbone (so the
        frozen backbone is the same for every run of a call).

    Returns
    -------
    DataFrame
        One row per run: ``regime, remedy, run_id, fd`` (raw embeddings, rank-deficient covariances
        allowed as the authors did), ``probe_auroc`` (mean over the folds of
        :func:`emlib.diagnostics.linear_probe`, no permutation control), ``latent_space``, ``measured``
        (:func:`remedy_measured`: False where the embeddings are the baseline's, as for FiLM on a frozen backbone),
        ``adapter, n_lucchi_pp, n_vnc, weights_label``; also written to
        ``out_dir/alignment_latents.csv``. Pass it to :func:`alignment_summary` (``latents=``).
    """
    need = {"run_id", "regime", "remedy"}
    missing = sorted(need - set(results.columns))
    if missing:
        raise ConfigError(f"results lack the columns {missing}; pass the table of run_alignment_grid")
    if profile is not None:
        prof = get_profile(profile)
        slices = prof.embedding_slices if slices is None else slices
        long_edge = prof.embedding_long_edge if long_edge is None else long_edge
    out_dir = Path(out_dir)
    cache_dir = out_dir / "embeddings" if cache_dir is None else Path(cache_dir)
    frozen: dict[tuple, Any] = {}
    rows = []
    runs = results.drop_duplicates("run_id")[["run_id", "regime", "remedy"]]
    for run_id, regime, remedy in runs.itertuples(index=False):
        run_dir = out_dir / str(run_id)
        cfg = _finished_config(run_dir, out_dir)
        if cfg.regime not in ("frozen", "lora"):
            continue
        net, adapter = _latent_backbone(cfg, run_dir, frozen, seed=seed)
        net = net.to(device)
        emb = run_embeddings(
            net, cfg, adapter=adapter, root=root, slices=slices, long_edge=long_edge, device=device,
            cache_dir=cache_dir, progress=progress,
        ).embeddings
        rows.append({"regime": regime, "remedy": remedy, "run_id": run_id, **_separation(emb, n_splits=n_splits, seed=seed),
                     "latent_space": remedy_latent_space(cfg), "measured": remedy_measured(cfg), "adapter": adapter, "n_lucchi_pp": len(emb["lucchi_pp"]),
                     "n_vnc": len(emb["vnc"]), "weights_label": net.weights_label})
    table = pd.DataFrame(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(out_dir / "alignment_latents.csv", table)
    return table


def _finished_config(run_dir: Path, out_dir: Path) -> RunConfig:
    """The config of a finished run of the remedy grid; one sentence when the folder holds none."""
    if not (run_dir / "config.json").is_file():
        raise DataError(f"no finished run in {run_dir} (config.json missing); run run_alignment_grid with out_dir={str(out_dir)!r}")
    return read_run_config(run_dir, fix=f"delete {run_dir} and run run_alignment_grid again")


def _latent_backbone(cfg: RunConfig, run_dir: Path, frozen: dict[tuple, Any], *, seed: int) -> tuple[Any, Any]:
    """The backbone a run's head sits on, seeded: frozen (one per weights, shared in ``frozen``) or with its adapter."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        options = {"pretrained": cfg.pretrained, "weights": cfg.weights, "pos_interpolation": cfg.pos_interpolation}
        if cfg.regime == "lora":
            return load_backbone_for_latents(cfg.backbone, adapter_run=run_dir, **options)
        key = (cfg.backbone, cfg.pretrained, cfg.weights, cfg.pos_interpolation)
        if key not in frozen:
            frozen[key] = load_backbone_for_latents(cfg.backbone, **options)
        return frozen[key]


def _separation(emb: dict[str, np.ndarray], *, n_splits: int, seed: int) -> dict[str, float]:
    """Fréchet distance and cross-validated linear-probe AUROC between the Lucchi++ and VNC embeddings."""
    a, b = emb["lucchi_pp"], emb["vnc"]
    labels = np.array(["lucchi_pp"] * len(a) + ["vnc"] * len(b))
    probe = linear_probe(np.vstack([a, b]), labels, n_splits=min(n_splits, len(a), len(b)), seed=seed, n_permutations=0)
    return {"fd": frechet_distance(a, b, allow_singular=True, seed=seed), "probe_auroc": probe["auroc"]}
