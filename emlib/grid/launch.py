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
import os
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emlib.config import RunConfig
from emlib.data.pairing import slice_pairs
from emlib.errors import ConfigError
from emlib.paths import pin_env_paths
from emlib.grid.runner import METRICS, check_out_dir, merged_table, read_table, run_folder, run_one, saved_rows
from emlib.preflight import check_run
from emlib.runfiles import CHECKPOINT, ERROR_LOG, write_table

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


def _input_scale(cfg: RunConfig, train_images: int, measured: str) -> tuple[float, float, float, str]:
    """What a run's inputs weigh next to the measured input size (``costs.csv``'s ``input_size``, e.g. ``1022x756``).

    Rates are measured on whole slices at the paper's size; work grows about with the pixels fed
    to the backbone. A cropped run (quick) trains on ``samples_per_epoch`` crops per epoch (or all
    tiles of its slices); a whole-slice run at another ``long_edge`` (a dry run) on smaller slices.

    Returns
    -------
    (per epoch, one pass over all, per test slice, input) : (float, float, float, str)
        Measured-size image equivalents of one training epoch, of one pass over every training
        tile (a frozen run's feature cache) and of one test slice, and the input in words.
    """
    w, h = (int(v) for v in measured.split("x"))
    if cfg.crop:
        tiles = train_images * w * h / cfg.crop**2  # the tiles of the training slices (about)
        per_epoch = min(cfg.samples_per_epoch or tiles, tiles) * cfg.crop**2 / (w * h)
        test = (cfg.eval_region**2 / (w * h)) if cfg.eval_region else 1.0
        what = f"{cfg.crop}px crops" + (f", {cfg.samples_per_epoch}/epoch" if cfg.samples_per_epoch else "")
        return per_epoch, float(train_images), test, what
    scale = (cfg.long_edge / max(w, h)) ** 2
    return train_images * scale, train_images * scale, scale, f"slices at {cfg.long_edge}px"


def _cost_row(costs: pd.DataFrame, backbone: str, regime: str, batch: int) -> pd.Series | None:
    """The measurement of this backbone and regime, preferring a GPU row and the same (else the nearest) batch size."""
    rows = costs[(costs.backbone == backbone) & (costs.regime == regime)]
    if rows.empty:
        return None
    rows = rows.assign(_gpu=rows.device != "cpu", _gap=(rows.batch_size - batch).abs())
    return rows.sort_values(["_gpu", "_gap"], ascending=[False, True]).iloc[0]


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
        cost = _cost_row(costs, cfg.backbone, cfg.regime, cfg.batch_size)
        frozen = _cost_row(costs, cfg.backbone, "frozen", cfg.batch_size)
        if cost is not None and frozen is not None:
            per_epoch, one_pass, per_test, row["input"] = _input_scale(cfg, row["train_images"], cost.input_size)
            test = _images(cfg, "test", root) * per_test / frozen.images_per_s
            # a frozen run with a feature cache runs its backbone once over its training tiles (the
            # head's epochs on cached features are not in the table and are small next to it)
            train = one_pass if cfg.regime == "frozen" and cfg.cache != "none" else cfg.epochs * per_epoch
            row.update(seconds=train / cost.images_per_s + test,
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
