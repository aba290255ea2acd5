"""The experiment grid: backbone x regime x train set (x seed), and the one runner that writes results tables.

``emlib grid --profile smoke|quick|paper`` trains every run of the profile, tests each model on
both test sets, and writes ``results.csv`` / ``results.json`` in the output folder with the
config, git commit, weights label and fingerprint, data fingerprint, seconds and peak memory of
each run (the tables are rewritten, atomically, as each run finishes, and keep the rows of the
other finished runs they listed, so a selection rerun never shrinks them). Runs whose folder already
holds ``metrics.json`` are skipped, so an interrupted grid resumes where it stopped; their rows are
reused only when the recorded config, data and weights fingerprints and run name are this run's
(:func:`saved_rows`). One process makes a run at a time (:func:`emlib.runfiles.run_lock`): a
second ``emlib grid`` on the same folder says so, goes on with the other runs and then waits for it.

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

import math
import os
import resource
import subprocess
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from emlib.config import DRY_RUN_SUFFIX, Profile, RunConfig, get_profile, grid_configs
from emlib.device import describe_device, resolve_device
from emlib.errors import ConfigError, DataError
from emlib.evaluation import evaluate_both
from emlib.preflight import check_run, input_fingerprints, inputs_digest
from emlib.runfiles import METRICS, MODEL, RESULTS, read_json, read_run_config, run_lock, write_json, write_table
from emlib.train import fit, load_trained

__all__ = [
    "run_one", "run_configs", "run_grid", "run_folder", "read_results", "saved_rows", "check_out_dir", "git_commit",
    "grid_command", "merged_table", "read_table", "METRICS",
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


#: Columns every saved test row has: what reads it back (and checks whose it is) needs them.
ROW_COLUMNS = ("run_id", "test_set", "iou_fg", "data_fingerprint", "weights_fingerprint")
#: Score columns of a test row: numbers (NaN where undefined), never strings.
SCORE_COLUMNS = ("iou_fg", "dice_fg", "iou_bg", "miou", "mean_dice", "fg_fraction_pred")


def saved_rows(
    run_dir: Path, cfg: RunConfig | None = None, *, root: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """The test rows a finished run saved in ``metrics.json``, checked to be this run's.

    Parameters
    ----------
    run_dir : Path
    cfg : RunConfig, default=None
        The run meant to be in ``run_dir``: its recorded config, data and weights fingerprints must
        be this config's and those of the current inputs under ``root`` (None checks the rows only).

    Raises
    ------
    DataError
        A damaged file, rows without the columns of a test row (:data:`ROW_COLUMNS`), a score that
        is not a number, rows of another folder's run (a copied ``metrics.json``), or a run made
        with another config, data or weights (a copied folder): one sentence naming it and the fix.
    """
    path = run_dir / METRICS
    fix = "delete it and run the same command again to test the run again (its trained model is kept)"
    saved = read_json(path, fix=fix)
    if not isinstance(saved, dict) or not isinstance(saved.get("rows"), list) or not saved["rows"]:
        raise DataError(f"{path} holds no test rows; {fix}")
    rows = saved["rows"]
    if not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{path} holds test rows that are not records of named values; {fix}")
    missing = [c for c in ROW_COLUMNS if any(c not in row for row in rows)]
    if missing:
        what = "none" if len(missing) == len(ROW_COLUMNS) else "not all"
        raise DataError(f"{path} holds rows with {what} of the columns of a test row (missing {', '.join(missing)}); {fix}")
    for row in rows:
        for column in SCORE_COLUMNS:
            value = row.get(column)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DataError(f"{path} holds {column}={str(value)[:40]!r} in its {row['test_set']} row, which is not a "
                                f"number; {fix}")
    if cfg is not None:
        _check_whose(run_dir, saved, cfg, root=root)
    others = sorted({str(row["run_id"]) for row in rows} - {run_dir.name})
    if others:
        raise DataError(f"{path} holds the rows of run {others[0]}, not of this folder's run {run_dir.name} (it was "
                        f"copied from another run's folder); {fix}")
    return pd.DataFrame(rows)


def _check_whose(run_dir: Path, saved: dict, cfg: RunConfig, *, root: str | os.PathLike[str] | None) -> None:
    """Refuse a finished run folder that was made with another config, data or weights than ``cfg`` reads now."""
    fix = (f"move {run_dir} out of {run_dir.parent} (nothing in it is this run's) and run the same command again, "
           "which trains this run")
    try:
        recorded = RunConfig.from_dict(saved.get("config"))
    except ConfigError as err:
        raise DataError(f"{run_dir / METRICS} records no valid run configuration ({err}); {fix}") from None
    if recorded.digest() != cfg.digest():
        if _own_config(run_dir, cfg):  # only metrics.json came from elsewhere: the folder's model is this run's
            raise DataError(f"{run_dir / METRICS} holds the rows of run {saved['rows'][0]['run_id']}, not of this folder's "
                            f"run {run_dir.name} (it was copied from another run's folder); delete it and run the same command "
                            "again to test the run again (its trained model is kept)")
        raise DataError(f"{run_dir} holds the run {recorded.run_id}, not {cfg.run_id} (its config differs); {fix}")
    inputs = input_fingerprints(cfg, root=root)
    row = saved["rows"][0]
    for name, what in (("data", "other data"), ("weights", "other weights")):
        if str(row[f"{name}_fingerprint"]) != inputs[name]:
            raise DataError(f"{run_dir} holds a run made on {what} (recorded {name} fingerprint "
                            f"{str(row[f'{name}_fingerprint'])[:16]}, now {inputs[name][:16]}), so it is not reused; {fix}")


def _own_config(run_dir: Path, cfg: RunConfig) -> bool:
    try:
        return read_run_config(run_dir, fix="-").digest() == cfg.digest()
    except DataError:
        return False


def run_one(
    cfg: RunConfig, out_dir: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, progress: bool = True,
    profile: str = "custom", wait: bool = True,
) -> pd.DataFrame | None:
    """Train and test one run in :func:`run_folder` (or read its saved rows).

    One row per test set and test labels (:func:`~emlib.evaluation.evaluate_both`). A run finished by
    an older emlib, whose rows lack the mixed and published-label rows, is tested again from its saved
    model (not trained again), keeping how it trained. Saved rows are read back only when they are
    this run's (:func:`saved_rows`).

    A run is made by one process at a time (:func:`emlib.runfiles.run_lock`). When another process
    is making it, a warning says so and ``wait=True`` waits for it (then reads back its rows, or
    trains the run if that process stopped first); ``wait=False`` returns None at once.
    """
    out = Path(out_dir)
    check_run(cfg)
    run_dir = run_folder(cfg, out, root=root)
    if (run_dir / METRICS).is_file():
        saved = saved_rows(run_dir, cfg, root=root)
        if _current(saved, run_dir):
            return saved
    check_out_dir(out)

    def busy(holder: str) -> None:
        then = "waits for it" if wait else "goes on with the other runs and comes back to it"
        warnings.warn(f"run {run_dir.name} in {out} is being made by another process ({holder}); this one {then}",
                      RuntimeWarning, stacklevel=4)

    with run_lock(run_dir, wait=wait, on_busy=busy) as held:
        if not held:
            return None
        if (run_dir / METRICS).is_file():  # finished by the process this one waited for, or tested again
            saved = saved_rows(run_dir, cfg, root=root)
            return saved if _current(saved, run_dir) else _retest(cfg, run_dir, saved, root=root, progress=progress)
        return _train_and_test(cfg, run_dir, root=root, progress=progress, profile=profile)


def _current(saved: pd.DataFrame, run_dir: Path) -> bool:
    """Whether saved rows are final: current rows, or rows of an older emlib without a model to test again."""
    return "test_labels" in saved or not (run_dir / MODEL).is_file()


def _train_and_test(
    cfg: RunConfig, run_dir: Path, *, root: str | os.PathLike[str] | None, progress: bool, profile: str,
) -> pd.DataFrame:
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
        device=device.type, machine=describe_device(device), trainable_params=params.get("trainable"), total_params=params.get("total"),
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
        Also write the table as ``out_dir/<table>.csv`` (and ``.json`` with ``json_table``), keeping the rows of the
        other finished runs it already listed (:func:`merged_table`).
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
    for cfg in configs:  # the data's layout, the weights files, finished runs that are not this run's; a run to make needs its device here
        run_dir = run_folder(cfg, out, root=root)
        if (run_dir / METRICS).is_file():
            saved_rows(run_dir, cfg, root=root)
        else:
            resolve_device(cfg.device)
    if table is not None:
        read_table(out / f"{table}.csv")  # a damaged table is refused now, not after the first run
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[int, pd.DataFrame] = {}

    def finished(i: int, rows: pd.DataFrame) -> None:
        tables[i] = rows.assign(**{column: values[i] for column, values in labels.items()})
        if table is not None:  # as each run finishes, so an interrupted grid leaves a table of what it did
            ours = pd.concat([tables[k] for k in sorted(tables)], ignore_index=True)
            results = merged_table(read_table(out / f"{table}.csv"), ours, out)  # read again: another grid may write it too
            write_table(out / f"{table}.csv", results)
            if json_table:
                write_table(out / f"{table}.json", results, records_json=True)

    busy = []  # runs another process is making: the others first, then wait for these
    for i, cfg in enumerate(tqdm(configs, desc=f"grid {profile}", disable=not progress)):
        rows = run_one(cfg, out, root=root, progress=progress, profile=profile, wait=False)
        if rows is None:
            busy.append(i)
        else:
            finished(i, rows)
    for i in busy:
        finished(i, run_one(configs[i], out, root=root, progress=progress, profile=profile, wait=True))
    return pd.concat([tables[k] for k in sorted(tables)], ignore_index=True)


def read_table(path: Path) -> pd.DataFrame | None:
    """A results table written before (None when there is none); one that cannot be read raises DataError, before any work."""
    if not path.exists():
        return None
    fix = (f"delete it (the next command writes it again, and read_results({str(path.parent)!r}) reads every finished "
           "run's rows from the run folders)")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise DataError(f"{path} cannot be read ({type(err).__name__}); {fix}") from None
    if "run_id" not in frame:
        raise DataError(f"{path} is not a results table (it has no run_id column); {fix}")
    return frame


def merged_table(previous: pd.DataFrame | None, new: pd.DataFrame, out: Path) -> pd.DataFrame:
    """``new`` rows in the table ``previous`` held: its rows of other runs still finished in ``out`` are kept, in place.

    A selection rerun (``emlib grid --train-set vnc``) rewrites its runs' rows and keeps the others', so
    the table of the finished runs never shrinks. Kept rows of runs made on other data than ``new``'s
    are left out (their folders are not), with a warning that names them.
    """
    if previous is None or previous.empty:
        return new
    ours = list(dict.fromkeys(new.run_id))
    kept = previous[previous.run_id.map(lambda r: r in ours or (out / str(r) / METRICS).is_file())]
    if "data_fingerprint" in kept and "data_fingerprint" in new:
        other = ~kept.run_id.isin(ours) & ~kept.data_fingerprint.isin(set(new.data_fingerprint))
        if other.any():
            warnings.warn(f"{kept[other].run_id.nunique()} runs made on other data are left out of the table in {out} "
                          f"(their folders are kept; read_results({str(out)!r}, data_fingerprint=...) reads them)",
                          RuntimeWarning, stacklevel=3)
            kept = kept[~other]
    parts, placed = [], set()
    for run_id, rows in kept.groupby("run_id", sort=False):
        parts.append(new[new.run_id == run_id] if run_id in ours else rows)
        placed.add(run_id)
    parts += [new[new.run_id == run_id] for run_id in ours if run_id not in placed]
    return pd.concat(parts, ignore_index=True)


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


def read_results(out_dir: str | os.PathLike[str], *, data_fingerprint: str | None = None) -> pd.DataFrame:
    """The results table of a grid folder (rows of every finished run, even if the grid stopped).

    Parameters
    ----------
    out_dir : path
    data_fingerprint : str, default=None
        Only the runs made on this data (a prefix of the ``data_fingerprint`` column is enough). A folder
        whose runs were made on more than one data copy must be given one: rows of two data are never mixed.
    """
    rows = []
    for metrics in sorted(Path(out_dir).glob(f"*/{METRICS}")):
        rows.extend(saved_rows(metrics.parent).to_dict(orient="records"))
    if not rows:
        raise DataError(f"no finished runs in {out_dir}; run `emlib grid --profile smoke --out {out_dir}` first")
    frame = pd.DataFrame(rows)
    counts = frame.groupby("data_fingerprint", sort=False).run_id.nunique()
    found = ", ".join(f"{_short(fp)} ({n} runs)" for fp, n in counts.items())
    if data_fingerprint is not None:
        frame = frame[frame.data_fingerprint.astype(str).str.startswith(data_fingerprint)]
        if frame.empty:
            raise DataError(f"no finished run in {out_dir} was made on data {data_fingerprint!r}; its runs were made on "
                            f"data {found}: pass one of these as data_fingerprint")
        return frame.reset_index(drop=True)
    if len(counts) > 1:
        raise DataError(f"the runs in {out_dir} were made on {len(counts)} different data copies (data fingerprints "
                        f"{found}), whose rows are not mixed; pass data_fingerprint= one of these to read_results, or move "
                        "the other data's run folders out")
    return frame


def _short(fingerprint: str) -> str:
    """A data fingerprint cut to 12 hex digits, keeping its ``modified:`` mark."""
    mark, _, digest = str(fingerprint).rpartition(":")
    return f"{mark}:{digest[:12]}" if mark else digest[:12]


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
