"""Launching a grid beyond one process: a plan with its cost, the runs' status, and submitit launchers.

``emlib grid`` runs its selection ``inline`` (one run after the other in this process) or hands
each run to a job of `submitit <https://github.com/facebookincubator/submitit>`_: ``local`` (one
process per run, ``jobs`` at a time) or ``slurm`` (one job array). Every job calls
:func:`~emlib.grid.runner.run_one` for one config and writes that run's folder; the results
table is then gathered from the run folders (:func:`gather`), in the order of the selection, so a
rerun after failed or pre-empted jobs submits only the runs without ``metrics.json``. A pre-empted
SLURM job is requeued and :func:`emlib.train.fit` resumes it from its checkpoint.

:func:`plan` lists the runs still to make with an estimate of their time and peak memory from
``costs.csv`` (measured by ``benchmarks/bench_costs.py``; the machine is named in each row);
:func:`run_status` says which runs are done, running, failed (with the log) or missing.
"""

from __future__ import annotations

import csv
import math
import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emlib.config import RunConfig
from emlib.data.pairing import slice_pairs
from emlib.errors import ConfigError
from emlib.featurestore import EVAL_OVERLAP
from emlib.paths import pin_env_paths
from emlib.grid.runner import METRICS, check_out_dir, merged_table, read_table, run_folder, run_one, saved_rows
from emlib.preflight import check_run
from emlib.runfiles import CHECKPOINT, ERROR_LOG, write_table
from emlib.stitching import window_positions

__all__ = ["LAUNCHERS", "COSTS", "SlurmOptions", "RunJob", "plan", "run_status", "launch", "gather", "read_costs"]

LAUNCHERS = ("inline", "local", "slurm")
COSTS = Path(__file__).with_name("costs.csv")
INSTALL = ('the {} launcher needs submitit; install it with pip install -e ".[cluster]" in the clone of this '
           'repository (the distribution is emlib-vfm)')


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings of the ``slurm`` launcher (None: the cluster's default)."""

    partition: str | None = None
    gpus_per_run: int = 1
    time: int = 24 * 60  # minutes
    mem: str | None = None  # e.g. "64G"
    account: str | None = None
    array_parallelism: int = 256


def _submitit():
    """The submitit module, imported here and only here because it is an optional extra (emlib-vfm[cluster])."""
    try:
        import submitit  # noqa: PLC0415 - optional dependency: the one lazy import of the package
    except ImportError:
        return None
    return submitit


class RunJob:
    """What a submitit job runs: one config into its run folder.

    It is a submitit Checkpointable by protocol (submitit calls ``checkpoint`` when a job is
    pre-empted or times out): ``checkpoint`` requeues the same run, which resumes from its
    ``checkpoint.safetensors``. A run that raises leaves ``error.log`` (the traceback) in its folder.
    """

    def __init__(self, out: str, root: str | None, profile: str) -> None:
        self.out, self.root, self.profile = out, root, profile

    def __call__(self, cfg: RunConfig) -> str:
        run_dir = run_folder(cfg, self.out, root=self.root)
        (run_dir / ERROR_LOG).unlink(missing_ok=True)
        try:
            run_one(cfg, self.out, root=self.root, progress=False, profile=self.profile)
        except Exception:  # not BaseException: a pre-empted job exits (SystemExit) and is requeued, not failed
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_LOG).write_text(traceback.format_exc())
            raise
        return run_dir.name

    def checkpoint(self, cfg: RunConfig):
        return _submitit().helpers.DelayedSubmission(self, cfg)  # requeued: fit resumes from the checkpoint


def _failed(job) -> bool:
    """Wait for a submitit job; whether its run raised (its error.log says why) or the job died."""
    try:
        job.result()
    except Exception:
        return True
    return False


def read_costs(path: str | os.PathLike[str] = COSTS) -> pd.DataFrame:
    """The measured cost table (backbone, regime, batch_size, input_size, device, images_per_s, peak_memory_mb, ...)."""
    with open(path, newline="") as fh:
        return pd.DataFrame(list(csv.DictReader(fh))).astype({"batch_size": int, "images_per_s": float, "peak_memory_mb": float})


def _images(cfg: RunConfig, split: str, root) -> int:
    """Slices a run reads from ``split`` (its training set(s) less the validation share, or both test sets)."""
    names = ("lucchi_pp", "vnc") if split == "test" or cfg.train_set == "paired" else (cfg.train_set,)
    total = 0
    for name in names:
        n = len(slice_pairs(name, split, root))
        if split == "train":
            n = min(n, cfg.train_slices or n)
            n -= round(n * cfg.val_fraction)
        else:
            n = min(n, cfg.eval_slices or n)
        total += n
    return total


#: The slice a cost row's ``input_size`` is compared with when a run reads whole slices: a Lucchi++ slice at
#: the paper's 1022-pixel long side (what ``bench_costs.py`` measures by default).
SLICE_SIZE = (1022, 756)


def _size_pixels(size: str) -> int:
    w, h = (int(v) for v in size.split("x"))
    return w * h


def _windows(length: int, window: int) -> int:
    """Sliding windows along one side of a test slice, as the evaluation places them (:func:`emlib.stitching.window_positions`)."""
    return len(window_positions(length, window, max(1, round(window * (1 - EVAL_OVERLAP)))))


def _input_pixels(cfg: RunConfig) -> tuple[int, int, str]:
    """Pixels of one training input and of one test slice as the run feeds them to its model, and the input in words.

    Training: a crop (``crop``), or a whole slice at ``long_edge``. Testing: the evaluated centre region
    (``eval_region``), else the slice in overlapping windows of ``eval_window`` (counted with their
    overlap), else the whole slice at the training size.
    """
    w, h = SLICE_SIZE
    if cfg.crop:
        train = cfg.crop**2
        what = f"{cfg.crop}px crops" + (f", {cfg.samples_per_epoch}/epoch" if cfg.samples_per_epoch else "")
    else:
        scale = (cfg.long_edge / max(w, h)) ** 2
        train, what = round(w * h * scale), f"slices at {cfg.long_edge}px"
    if cfg.eval_region:
        test = cfg.eval_region**2
    elif cfg.eval_window:
        test = _windows(w, cfg.eval_window) * _windows(h, cfg.eval_window) * cfg.eval_window**2
    else:
        test = train if not cfg.crop else w * h
    return train, test, what


def _test_window(cfg: RunConfig) -> int:
    """Pixels of one input of the test pass (a window, the region, or the slice): which cost row prices it."""
    if cfg.eval_region:
        return cfg.eval_region**2
    if cfg.eval_window:
        return cfg.eval_window**2
    return _input_pixels(cfg)[0] if not cfg.crop else SLICE_SIZE[0] * SLICE_SIZE[1]


def _cost_row(costs: pd.DataFrame, backbone: str, regime: str, batch: int, pixels: int | None = None) -> pd.Series | None:
    """The measurement of this backbone and regime: a GPU row first, then the input size nearest ``pixels``
    (by ratio; a small crop and a whole slice cost differently per pixel, attention being quadratic), then
    the same (else the nearest) batch size."""
    rows = costs[(costs.backbone == backbone) & (costs.regime == regime)]
    if rows.empty:
        return None
    size_gap = [abs(math.log(_size_pixels(s) / pixels)) if pixels else 0.0 for s in rows.input_size]
    rows = rows.assign(_gpu=rows.device != "cpu", _size=size_gap, _gap=(rows.batch_size - batch).abs())
    return rows.sort_values(["_gpu", "_size", "_gap"], ascending=[False, True, True]).iloc[0]


def plan(configs: Sequence[RunConfig], out: str | os.PathLike[str] | None, *, root=None,
         costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The runs of ``configs`` not yet finished in ``out`` (None: every run), with an estimate of their seconds and peak memory.

    The estimate is epochs x training images / images_per_s of the regime (one pass for frozen runs,
    whose features are cached; + the test images at the frozen rate), from the row of ``costs.csv`` for the run's backbone, regime and nearest batch size,
    scaled by the pixels of the run's inputs over those of the measured input (crops per epoch, or
    whole slices at another long side; ``input`` says which, :func:`_input_scale`):
    an upper bound for early-stopped runs, on the machine the row names (``measured_on``). Runs
    without a row say ``no measurement``.
    """
    costs = read_costs() if costs is None else costs
    rows = []
    for cfg in configs:
        run_dir = run_folder(cfg, "." if out is None else out, root=root, expect_weights=False)  # loads nothing
        if out is not None and (run_dir / METRICS).is_file():
            continue
        row = {"run": run_dir.name, "epochs": cfg.epochs, "train_images": _images(cfg, "train", root), "input": "",
               "seconds": float("nan"), "peak_memory_mb": float("nan"), "measured_on": "no measurement"}
        train_px, test_px, row["input"] = _input_pixels(cfg)
        cost = _cost_row(costs, cfg.backbone, cfg.regime, cfg.batch_size, train_px)
        # the test pass: a frozen run's head on the backbone (a LoRA run's backbone costs the same forward)
        tester = _cost_row(costs, cfg.backbone, "frozen", cfg.batch_size, _test_window(cfg))
        if cost is not None and tester is not None:
            test = _images(cfg, "test", root) * test_px / _size_pixels(tester.input_size) / tester.images_per_s
            if cfg.regime == "frozen" and cfg.cache != "none":
                # its backbone runs once over the training tiles (the store); the head's epochs on stored
                # features are not in the table and are small next to it
                slice_px = SLICE_SIZE[0] * SLICE_SIZE[1]
                train = row["train_images"] * (slice_px if cfg.crop else train_px)
            else:
                per_epoch = cfg.samples_per_epoch if cfg.crop and cfg.samples_per_epoch else row["train_images"] * (
                    SLICE_SIZE[0] * SLICE_SIZE[1] // train_px if cfg.crop else 1)
                train = cfg.epochs * per_epoch * train_px
            row.update(seconds=train / _size_pixels(cost.input_size) / cost.images_per_s + test,
                       peak_memory_mb=cost.peak_memory_mb, measured_on=f"{cost.measured_on} ({cost.device}, {cost.input_size})")
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "epochs", "train_images", "input", "seconds", "peak_memory_mb", "measured_on"])


def run_status(configs: Sequence[RunConfig], out: str | os.PathLike[str], *, root=None) -> pd.DataFrame:
    """One row per run of ``configs``: ``done`` (metrics.json), ``failed`` (error.log, its path in ``log``),
    ``running`` (a checkpoint, no metrics.json: running or stopped) or ``missing``."""
    rows = []
    for cfg in configs:
        run_dir = run_folder(cfg, out, root=root, expect_weights=False)  # loads nothing
        log = ""
        if (run_dir / METRICS).is_file():
            state = "done"
        elif (run_dir / ERROR_LOG).is_file():
            state, log = "failed", str(run_dir / ERROR_LOG)
        elif (run_dir / CHECKPOINT).is_file():
            state = "running"
        else:
            state = "missing"
        rows.append({"run": run_dir.name, "state": state, "log": log})
    return pd.DataFrame(rows, columns=["run", "state", "log"])


def gather(configs: Sequence[RunConfig], out: str | os.PathLike[str], *, root=None, table: str | None = "results") -> pd.DataFrame:
    """The results table of the finished runs of ``configs``, in their order (written as ``table``.csv/.json).

    Each run's rows are checked to be its own (:func:`~emlib.grid.runner.saved_rows`); the written table
    keeps the rows of the other finished runs it listed (:func:`~emlib.grid.runner.merged_table`).
    """
    out = Path(out)
    folders = [(c, run_folder(c, out, root=root)) for c in configs]
    frames = [saved_rows(d, c, root=root) for c, d in folders if (d / METRICS).is_file()]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table is not None and frames:
        merged = merged_table(read_table(out / f"{table}.csv"), results, out)
        write_table(out / f"{table}.csv", merged)
        write_table(out / f"{table}.json", merged, records_json=True)
    return results


def _executor(launcher: str, folder: Path, jobs: int, slurm: SlurmOptions | None):
    submitit = _submitit()
    if submitit is None:
        raise ConfigError(INSTALL.format(launcher))
    pin_env_paths()  # the jobs start elsewhere (a node, submitit's folder): $EMLIB_DATA etc. reach them absolute
    if launcher == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=(slurm or SlurmOptions()).time)
        return executor, max(1, jobs)
    s = slurm or SlurmOptions()
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:  # submitit finds no srun
        raise ConfigError(f"no SLURM on this machine ({err}); run the command on the cluster's login node, "
                          "or use --launcher local") from None
    extra = {k: v for k, v in {"slurm_account": s.account, "slurm_mem": s.mem, "slurm_partition": s.partition}.items() if v}
    executor.update_parameters(timeout_min=s.time, gpus_per_node=s.gpus_per_run, tasks_per_node=1, nodes=1,
                               slurm_array_parallelism=s.array_parallelism, name="emlib-grid", **extra)
    return executor, s.array_parallelism


def launch(
    configs: Sequence[RunConfig], out: str | os.PathLike[str], *, launcher: str = "inline", root=None,
    profile: str = "custom", jobs: int = 1, slurm: SlurmOptions | None = None, wait: bool = True, executor=None,
) -> pd.DataFrame:
    """Make the runs of ``configs`` not yet finished, with ``launcher``; the gathered results table.

    ``local`` runs ``jobs`` processes at a time; ``slurm`` submits one job array (``slurm`` holds
    its sbatch settings) and, with ``wait=False``, returns the rows finished so far (watch with
    ``emlib grid --status``, gather with the same command once the array is done). ``executor``
    replaces the submitit executor (tests: ``submitit.DebugExecutor``).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of {list(LAUNCHERS)}")
    out = Path(out)
    check_out_dir(out)
    for cfg in configs:
        check_run(cfg)
    todo = []
    for cfg in configs:  # finished runs that are not this run's, and a damaged table, are refused before any job
        run_dir = run_folder(cfg, out, root=root)
        if (run_dir / METRICS).is_file():
            saved_rows(run_dir, cfg, root=root)
        else:
            todo.append(cfg)
    read_table(out / "results.csv")
    out.mkdir(parents=True, exist_ok=True)
    job = RunJob(str(out), None if root is None else str(root), profile)
    if launcher == "inline" or not todo:
        for cfg in todo:
            job(cfg)
        return gather(configs, out, root=root)
    if executor is None:
        executor, at_once = _executor(launcher, out / "logs", jobs, slurm)
    else:
        at_once = max(1, jobs)
    if launcher == "local":  # the local executor starts a whole array at once: submit waves of `jobs` runs
        submitted = []
        for start in range(0, len(todo), at_once):
            submitted += executor.map_array(job, todo[start:start + at_once])
            for j in submitted[start:]:
                _failed(j)  # wait for this wave before the next
    else:
        submitted = executor.map_array(job, todo)
        if not wait:
            return gather(configs, out, root=root)
    failed = [j for j in submitted if _failed(j)]  # waits for every job
    results = gather(configs, out, root=root)
    if failed:
        raise ConfigError(f"{len(failed)} of {len(submitted)} runs failed; `emlib grid --status` names their logs, and the "
                          "same command again runs only the runs without results")
    return results
