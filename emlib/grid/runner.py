"""The experiment grid: backbone x regime x train set (x seed), and the one runner that writes results tables.

``emlib grid --profile smoke|quick|paper`` trains every run of the profile, tests each model on
both test sets, and writes ``results.csv`` / ``results.json`` in the output folder with the
config, git commit, weights label and fingerprint, data fingerprint, seconds and peak memory of
each run (the tables are rewritten, atomically, as each run finishes). Runs whose folder already
holds ``metrics.json`` are skipped, so an interrupted grid resumes where it stopped.

A run's folder is :func:`run_folder`: its config's ``run_id`` and a digest of the content of the
data and weights it reads (:func:`emlib.preflight.input_fingerprints`), so a run on other data or
weights never reads back another's results. Before any run starts, every config, the output folder,
the data layout and the weights files are checked, and a problem ends in one sentence.

Every results table of the project is written by :func:`run_configs` (the profile grid by
:func:`run_grid`, the remedy table of chapter 8 by :func:`emlib.grid.remedies.run_alignment_grid`,
the chapters' runs by :func:`emlib.chapters.settings.chapter_runs`), so a chapter's run is a grid
run: :func:`grid_command` prints the ``emlib grid`` command that makes it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from emlib.config import DRY_RUN_SUFFIX, Profile, RunConfig, get_profile, grid_configs
from emlib.device import resolve_device
from emlib.errors import ConfigError, DataError
from emlib.evaluation import evaluate_both
from emlib.preflight import check_run, input_fingerprints, inputs_digest
from emlib.runfiles import METRICS, MODEL, RESULTS, read_json, write_json, write_table
from emlib.train import fit, load_trained

__all__ = [
    "run_one", "run_configs", "run_grid", "run_folder", "read_results", "saved_rows", "check_out_dir", "git_commit",
    "grid_command", "METRICS",
]


def git_commit() -> str:
    """Commit of the emlib checkout (``unknown`` outside a git work tree)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def run_folder(
    cfg: RunConfig, out_dir: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None,
    expect_weights: bool = True,
) -> Path:
    """The folder of a run in a grid folder: ``out_dir/<run_id>-<inputs>``.

    ``<inputs>`` is the start of :func:`emlib.preflight.inputs_digest`, which changes with the content
    of the data under ``root`` and of the backbone's weights file. This is the one place run folders
    are named; chapters, notebooks and the remedy tables find runs through it (or the ``run_id``
    column of a results table, which holds the folder name). A run finished under the name emlib gave it
    before where-it-runs settings left its identity (:attr:`emlib.config.RunConfig.legacy_run_id`) is found
    there and read back. Raises DataError/WeightsError when the
    data or the weights are missing; ``expect_weights=False`` (plans and status, which load nothing) names
    hub weights not fetched yet as they will be once fetched.
    """
    inputs = inputs_digest(cfg, root=root, expect_weights=expect_weights)[:8]
    folder = Path(out_dir) / f"{cfg.run_id}-{inputs}"
    legacy = Path(out_dir) / f"{cfg.legacy_run_id}-{inputs}"
    if legacy != folder and not folder.exists() and (legacy / METRICS).is_file():
        return legacy  # finished before device, cache and the weights path left a run's identity: read it back
    return folder


def check_out_dir(out: Path) -> None:
    """One sentence, before any work, when ``out`` is not (and cannot become) a writable folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the output folder {out} is an existing file; choose a folder path for --out (out_dir)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"the output folder {out} cannot be created because {parent} is a file; choose another --out (out_dir)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"the folder {parent} is not writable, so {out} cannot hold results; choose another --out (out_dir)")


def saved_rows(run_dir: Path) -> pd.DataFrame:
    """The test rows a finished run saved in ``metrics.json``; a damaged file raises DataError naming it."""
    fix = "delete it and run the same command again to test the run again (its trained model is kept)"
    saved = read_json(run_dir / METRICS, fix=fix)
    if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list) or not saved["rows"]:
        raise DataError(f"{run_dir / METRICS} holds no test rows; {fix}")
    return pd.DataFrame(saved["rows"])


def run_one(
    cfg: RunConfig, out_dir: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, progress: bool = True,
    profile: str = "custom",
) -> pd.DataFrame:
    """Train and test one run in :func:`run_folder` (or read its saved rows).

    One row per test set and test labels (:func:`~emlib.evaluation.evaluate_both`). A run finished by
    an older emlib, whose rows lack the mixed and published-label rows, is tested again from its saved
    model (not trained again), keeping how it trained.
    """
    out = Path(out_dir)
    check_run(cfg)
    run_dir = run_folder(cfg, out, root=root)
    if (run_dir / METRICS).is_file():
        saved = saved_rows(run_dir)
        if "test_labels" in saved or not (run_dir / MODEL).is_file():  # current rows, or no model to test again
            return saved
        return _retest(cfg, run_dir, saved, root=root, progress=progress)
    check_out_dir(out)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    trained = fit(cfg, run_dir, root=root, progress=progress)
    train_seconds = time.perf_counter() - t0
    table, _ = evaluate_both(trained, root=root, progress=progress)
    params = trained.parameters or {}
    inputs = input_fingerprints(cfg, root=root)
    table = table.assign(
        run_id=run_dir.name, profile=profile, train_seconds=train_seconds, peak_memory_mb=_peak_memory_mb(device),
        device=device.type, trainable_params=params.get("trainable"), total_params=params.get("total"),
        git_commit=git_commit(), config_digest=cfg.digest(),
        final_loss=float(trained.history["loss"].iloc[-1]) if len(trained.history) else None,
        epochs_trained=len(trained.history), best_epoch=trained.best_epoch,
        data_fingerprint=inputs["data"], weights_fingerprint=inputs["weights"],
    )
    write_table(run_dir / RESULTS, table)
    write_json(run_dir / METRICS, {"config": cfg.to_dict(), "rows": table.to_dict(orient="records")})  # marks it done
    return table


#: Columns of a results row that belong to one test (the rest describe the run and are kept when it is tested again).
_TEST_COLUMNS = ("test_set", "test_labels", "in_domain", "n_test_slices", "iou_fg", "dice_fg", "iou_bg", "miou", "mean_dice",
                 "fg_fraction_pred", "degenerate", "eval_seconds")


def _retest(
    cfg: RunConfig, run_dir: Path, saved: pd.DataFrame, *, root: str | os.PathLike[str] | None, progress: bool
) -> pd.DataFrame:
    """Test a run finished by an older emlib again (its rows lack the mixed and published-label rows), keeping how it trained."""
    trained = load_trained(run_dir, device=cfg.device)
    table, _ = evaluate_both(trained, root=root, progress=progress)
    run_columns = {k: v for k, v in saved.iloc[0].items() if k not in _TEST_COLUMNS and k not in table}
    table = table.assign(run_id=run_dir.name, **run_columns)
    write_table(run_dir / RESULTS, table)
    write_json(run_dir / METRICS, {"config": cfg.to_dict(), "rows": table.to_dict(orient="records")})
    return table


def run_configs(
    configs: Sequence[RunConfig],
    out_dir: str | os.PathLike[str],
    *,
    labels: dict[str, Sequence[str]] | None = None,
    table: str | None = None,
    json_table: bool = False,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    profile: str = "custom",
) -> pd.DataFrame:
    """Run (or read back) every config in its :func:`run_folder`; the tidy results table, one row per run, test set and test labels.

    Every config, the output folder, the data and the weights files are checked before the first run
    starts; the table is written (atomically) after each run.

    Parameters
    ----------
    configs : sequence of RunConfig
    out_dir : path
        The grid folder; each run writes its own folder in it.
    labels : dict of str to sequence of str, default=None
        Extra columns, one value per config (e.g. ``{"remedy": [...]}``).
    table : str, default=None
        Also write the table as ``out_dir/<table>.csv`` (and ``.json`` with ``json_table``).
    progress : bool, default=True
        tqdm bars.
    profile : str, default='custom'
        Written into every row.
    """
    labels = labels or {}
    if not configs:
        raise ConfigError("no runs to make: configs is empty; pass at least one RunConfig")
    for column, values in labels.items():
        if len(values) != len(configs):
            raise ConfigError(f"labels[{column!r}] has {len(values)} values for {len(configs)} configs; give one per config")
    out = Path(out_dir)
    check_out_dir(out)
    for cfg in configs:  # everything is checked before the first run starts
        check_run(cfg)
    for cfg in configs:  # the data's layout and the weights files; a run to make needs its device here
        if not (run_folder(cfg, out, root=root) / METRICS).is_file():
            resolve_device(cfg.device)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for i, cfg in enumerate(tqdm(configs, desc=f"grid {profile}", disable=not progress)):
        rows = run_one(cfg, out, root=root, progress=progress, profile=profile)
        tables.append(rows.assign(**{column: values[i] for column, values in labels.items()}))
        if table is not None:  # as each run finishes, so an interrupted grid leaves a table of what it did
            results = pd.concat(tables, ignore_index=True)
            write_table(out / f"{table}.csv", results)
            if json_table:
                write_table(out / f"{table}.json", results, records_json=True)
    return pd.concat(tables, ignore_index=True)


def run_grid(
    profile: Profile | str,
    out_dir: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    backbone: str | None = None,
    regimes: Sequence[str] | None = None,
    train_sets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    pairings: Sequence[str] | None = None,
    **overrides: object,
) -> pd.DataFrame:
    """Run (or resume) every run of ``profile``; returns and writes the tidy results table (``results.csv/json``).

    ``backbone``, ``regimes``, ``train_sets``, ``seeds`` and ``pairings`` select runs as :func:`emlib.config.grid_configs`
    does; ``overrides`` apply to every run, e.g. ``pretrained=False`` to size a profile without
    weights (every row then says ``random weights``) or ``device='cuda'``, except ``weights``: a
    ``{backbone: file}`` dict (or one file for a one-backbone grid) put on each backbone's runs.
    This is what ``emlib grid`` runs.
    """
    prof = get_profile(profile)
    configs = grid_configs(prof, backbone=backbone, regimes=regimes, train_sets=train_sets, seeds=seeds,
                           pairings=pairings, **overrides)
    return run_configs(configs, out_dir, table="results", json_table=True, root=root, progress=progress, profile=prof.name)


def read_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The results table of a grid folder (rows of every finished run, even if the grid stopped)."""
    rows = []
    for metrics in sorted(Path(out_dir).glob(f"*/{METRICS}")):
        rows.extend(saved_rows(metrics.parent).to_dict(orient="records"))
    if not rows:
        raise DataError(f"no finished runs in {out_dir}; run `emlib grid --profile smoke --out {out_dir}` first")
    return pd.DataFrame(rows)


def grid_command(
    profile: Profile | str, out_dir: str | os.PathLike[str] | None = None, *, backbone: str | None = None,
    regimes: Sequence[str] | None = None, train_sets: Sequence[str] | None = None, remedies: bool = False,
    seeds: Sequence[int] | None = None, pairings: Sequence[str] | None = None,
) -> str:
    """The ``emlib grid`` command that makes (or reads back) the same runs.

    Examples
    --------
    >>> grid_command("smoke", "runs/smoke", regimes=["lora"], train_sets=["paired"])
    'emlib grid --profile smoke --out runs/smoke --regime lora --train-set paired'
    >>> grid_command("paper-dry", "runs/paper-dry")
    'emlib grid --profile paper --dry-run --out runs/paper-dry'
    """
    profile = profile.name if isinstance(profile, Profile) else profile
    dry = profile.endswith(DRY_RUN_SUFFIX)  # a dry run is asked for as --profile quick --dry-run
    parts = ["emlib grid", f"--profile {profile[: -len(DRY_RUN_SUFFIX)] if dry else profile}", *(["--dry-run"] * dry)]
    if out_dir is not None:
        parts.append(f"--out {out_dir}")
    if backbone is not None:
        parts.append(f"--backbone {backbone}")
    parts += [f"--regime {r}" for r in regimes or ()]
    parts += [f"--train-set {t}" for t in train_sets or ()]
    parts += [f"--seed {s}" for s in seeds or ()]
    parts += [f"--pairing {p}" for p in pairings or ()]
    if remedies:
        parts.append("--remedies")
    return " ".join(parts)
