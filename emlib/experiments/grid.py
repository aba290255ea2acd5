"""The experiment grid: backbone x regime x train set (x seed), and the one runner that writes results tables.

``emlib grid --profile smoke|quick|paper`` trains every run of the profile, tests each model on
both test sets, and writes ``results.csv`` / ``results.json`` in the output folder with the
config, git commit, weights label, seconds and peak memory of each run. Runs whose folder already
holds ``metrics.json`` are skipped, so an interrupted grid resumes where it stopped.

Every results table of the project is written by :func:`run_configs` (the profile grid by
:func:`run_grid`, the remedy table of chapter 8 by :func:`emlib.experiments.remedies.run_alignment_grid`,
the chapters' runs by :func:`emlib.experiments.chapters.chapter_runs`), so a chapter's run is a grid
run: :func:`grid_command` prints the ``emlib grid`` command that makes it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from emlib.config import RunConfig, grid_configs
from emlib.device import resolve_device
from emlib.errors import ConfigError, DataError
from emlib.evaluate import evaluate_both
from emlib.train import fit

__all__ = ["run_one", "run_configs", "run_grid", "read_results", "git_commit", "grid_command", "METRICS"]

METRICS = "metrics.json"


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


def _json_default(value: object) -> object:
    """numpy scalars -> Python scalars (full float precision), anything else -> str."""
    return value.item() if hasattr(value, "item") else str(value)


def run_one(
    cfg: RunConfig, out_dir: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, progress: bool = True,
    profile: str = "custom",
) -> pd.DataFrame:
    """Train and test one run in ``out_dir/<run_id>`` (or read its saved rows); one row per test set."""
    run_dir = Path(out_dir) / cfg.run_id
    if (run_dir / METRICS).is_file():
        return pd.DataFrame(json.loads((run_dir / METRICS).read_text())["rows"])
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    trained = fit(cfg, run_dir, root=root, progress=progress)
    train_seconds = time.perf_counter() - t0
    table, _ = evaluate_both(trained, root=root, progress=progress)
    params = trained.parameters or {}
    table = table.assign(
        profile=profile, train_seconds=train_seconds, peak_memory_mb=_peak_memory_mb(device), device=device.type,
        trainable_params=params.get("trainable"), total_params=params.get("total"), git_commit=git_commit(),
        config_digest=cfg.digest(), final_loss=float(trained.history["loss"].iloc[-1]) if len(trained.history) else None,
    )
    payload = {"config": cfg.to_dict(), "rows": table.to_dict(orient="records")}
    tmp = run_dir / (METRICS + ".incomplete")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default))
    os.replace(tmp, run_dir / METRICS)
    table.to_csv(run_dir / "results.csv", index=False)
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
    """Run (or read back) every config in ``out_dir/<run_id>``; the tidy results table, one row per run and test set.

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
    for column, values in labels.items():
        if len(values) != len(configs):
            raise ConfigError(f"labels[{column!r}] has {len(values)} values for {len(configs)} configs; give one per config")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for i, cfg in enumerate(tqdm(configs, desc=f"grid {profile}", disable=not progress)):
        rows = run_one(cfg, out, root=root, progress=progress, profile=profile)
        tables.append(rows.assign(**{column: values[i] for column, values in labels.items()}))
    results = pd.concat(tables, ignore_index=True)
    if table is not None:
        results.to_csv(out / f"{table}.csv", index=False)
        if json_table:
            results.to_json(out / f"{table}.json", orient="records", indent=2)
    return results


def run_grid(
    profile: str,
    out_dir: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    backbone: str | None = None,
    regimes: Sequence[str] | None = None,
    train_sets: Sequence[str] | None = None,
    **overrides: object,
) -> pd.DataFrame:
    """Run (or resume) every run of ``profile``; returns and writes the tidy results table.

    ``backbone``, ``regimes`` and ``train_sets`` select runs as :func:`emlib.config.grid_configs`
    does; ``overrides`` apply to every run, e.g. ``pretrained=False`` to size a profile without
    weights (every row then says ``random weights``) or ``device='cuda'``.
    """
    configs = grid_configs(profile, backbone=backbone, regimes=regimes, train_sets=train_sets, **overrides)
    return run_configs(configs, out_dir, table="results", json_table=True, root=root, progress=progress, profile=profile)


def read_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The results table of a grid folder (rows of every finished run, even if the grid stopped)."""
    rows = []
    for metrics in sorted(Path(out_dir).glob(f"*/{METRICS}")):
        rows.extend(json.loads(metrics.read_text())["rows"])
    if not rows:
        raise DataError(f"no finished runs in {out_dir}; run `emlib grid --profile smoke --out {out_dir}` first")
    return pd.DataFrame(rows)


def grid_command(
    profile: str, out_dir: str | os.PathLike[str] | None = None, *, backbone: str | None = None,
    regimes: Sequence[str] | None = None, train_sets: Sequence[str] | None = None, remedies: bool = False,
) -> str:
    """The ``emlib grid`` command that makes (or reads back) the same runs.

    Examples
    --------
    >>> grid_command("smoke", "runs/smoke", regimes=["lora"], train_sets=["paired"])
    'emlib grid --profile smoke --out runs/smoke --regime lora --train-set paired'
    """
    parts = ["emlib grid", f"--profile {profile}"]
    if out_dir is not None:
        parts.append(f"--out {out_dir}")
    if backbone is not None:
        parts.append(f"--backbone {backbone}")
    parts += [f"--regime {r}" for r in regimes or ()]
    parts += [f"--train-set {t}" for t in train_sets or ()]
    if remedies:
        parts.append("--remedies")
    return " ".join(parts)
