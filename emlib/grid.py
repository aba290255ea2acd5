"""The experiment grid: backbone x regime x train set (x seed), one tidy results table.

``emlib grid --profile smoke|quick|paper`` trains every run of the profile, tests each model on
both test sets, and writes ``results.csv`` / ``results.json`` in the output folder with the
config, git commit, weights label, seconds and peak memory of each run. Runs whose folder already
holds ``metrics.json`` are skipped, so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from emlib.config import RunConfig, get_profile, grid_configs, list_profiles

__all__ = ["run_one", "run_grid", "read_results", "git_commit", "add_grid_command"]

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
    from emlib.evaluate import evaluate_both
    from emlib.train import fit, resolve_device

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


def run_grid(
    profile: str,
    out_dir: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **overrides: object,
) -> pd.DataFrame:
    """Run (or resume) every run of ``profile``; returns and writes the tidy results table.

    ``overrides`` apply to every run, e.g. ``pretrained=False`` to size a profile without
    weights (every row then says ``random weights``) or ``device='cuda'``.
    """
    from tqdm.auto import tqdm

    configs = grid_configs(profile, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = [
        run_one(cfg, out, root=root, progress=progress, profile=profile)
        for cfg in tqdm(configs, desc=f"grid {profile}", disable=not progress)
    ]
    results = pd.concat(tables, ignore_index=True)
    results.to_csv(out / "results.csv", index=False)
    results.to_json(out / "results.json", orient="records", indent=2)
    return results


def read_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The results table of a grid folder (rows of every finished run, even if the grid stopped)."""
    from emlib.errors import DataError

    rows = []
    for metrics in sorted(Path(out_dir).glob(f"*/{METRICS}")):
        rows.extend(json.loads(metrics.read_text())["rows"])
    if not rows:
        raise DataError(f"no finished runs in {out_dir}; run `emlib grid --profile smoke --out {out_dir}` first")
    return pd.DataFrame(rows)


def _grid_main(args: argparse.Namespace) -> int:
    overrides = {"device": args.device, "pretrained": False if args.random_weights else None, "weights": args.weights}
    results = run_grid(args.profile, args.out or f"runs/{args.profile}", root=args.root, progress=not args.quiet, **overrides)
    cols = ["train_set", "regime", "backbone", "test_set", "iou_fg", "weights_label"]
    summary = results[cols].copy()
    summary["iou_fg"] = summary["iou_fg"].map("{:.3f}".format)
    print(summary.to_string(index=False), file=sys.stdout)
    return 0


def add_grid_command(sub: argparse._SubParsersAction) -> None:
    """Register ``emlib grid`` on the CLI's sub-parsers."""
    grid = sub.add_parser("grid", help="train and test every run of a profile; writes results.csv/json")
    grid.add_argument("--profile", choices=list_profiles(), default="smoke")
    grid.add_argument("--out", default=None, help="output folder (default: runs/<profile>)")
    grid.add_argument("--root", default=None, help="data root (default: $EMLIB_DATA or the download cache)")
    grid.add_argument("--device", default=None, help="auto, cpu or cuda (default: the profile's)")
    grid.add_argument("--weights", default=None, help="local backbone weights file (else $EMLIB_WEIGHTS or the hub)")
    grid.add_argument("--random-weights", action="store_true", help="random-init backbones (timing only; labelled)")
    grid.add_argument("--quiet", action="store_true", help="no progress bars")
    grid.set_defaults(func=_grid_main)
    _ = get_profile  # profiles are validated by argparse choices
