"""Command-line interface: ``emlib data info|verify|download|audit``, ``emlib grid``, ``emlib weights list|check|fetch``,
``emlib lab pack|unpack``, ``emlib results export|check`` and ``emlib book``.

Every user error (an :class:`~emlib.errors.EmlibError`) and every failure of the file system
(a full disk, a folder without permission) is printed as one sentence on stderr with exit status
2, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from emlib.book.commands import add_book_command
from emlib.config import MIXED_TEST, PAIRINGS, REGIMES, TEST_LABELS, TRAIN_SETS, get_profile, grid_configs, list_profiles
from emlib.data import PUBLISHED_SCRIPT, data_root, dataset_summary, fetch_dataset, list_datasets, pairing_audit, verify_dataset
from emlib.data.layout import ENV_MODIFIED
from emlib.errors import ConfigError, EmlibError, WeightsError
from emlib.evaluation import scored_rows
from emlib.grid.runner import grid_command, run_grid
from emlib.grid.launch import LAUNCHERS, SlurmOptions, launch, plan, run_status
from emlib.grid.published import export_results, provenance_note, read_published
from emlib.grid.remedies import REMEDIES, run_alignment_grid
from emlib.lab import env_lines, pack_lab, unpack_lab
from emlib.models import list_backbones
from emlib.models.hub import fetch_weights, find_weights, select_backbones, weights_status
from emlib.models.weights import load_weights_file
from emlib.paths import user_path

__all__ = ["main", "build_parser"]


def _allow_modified(args: argparse.Namespace) -> None:
    """``--allow-modified-data``: for this process and the run processes it starts (local, slurm launchers)."""
    if getattr(args, "allow_modified_data", False):
        os.environ[ENV_MODIFIED] = "1"


def _add_allow_modified(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-modified-data", action="store_true",
                        help="read slices whose pixels are not the official ones (your own edits or data in the "
                        "official layout); the data fingerprint of each run then says modified")


def _data_info(args: argparse.Namespace) -> int:
    _allow_modified(args)
    table = dataset_summary(root=args.root, datasets=args.datasets)
    print(f"data root: {data_root(args.root)}")
    with pd.option_context("display.width", 120):
        print(table.to_string(index=False, formatters={"foreground_fraction": "{:.2%}".format}))
    return 0


def _data_verify(args: argparse.Namespace) -> int:
    for name in args.datasets or list_datasets():
        report = verify_dataset(name, root=args.root, progress=not args.quiet)
        note = "complete" if report.complete else f"{len(report.missing)} upstream files not in this copy"
        print(f"{name}: {report.checked} of {report.expected} files match the official pixels ({note})")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    for name in args.datasets or list_datasets():
        path = fetch_dataset(name, root=args.root, force=args.force)
        print(f"{name}: {path}")
    return 0


def _data_audit(args: argparse.Namespace) -> int:
    _allow_modified(args)
    audit = pairing_audit(root=args.root)
    print(f"data root: {data_root(args.root)}")
    print(f"The published paired set, as {PUBLISHED_SCRIPT} composes it from these files")
    print("(right: pairs whose label is the image's own; iou: own vs given label, per slice;")
    print(" perfect_iou_fg: a model that predicts every true label, scored against the given ones, pooled):")
    with pd.option_context("display.width", 120):
        print(audit.to_string(index=False, float_format="{:.4f}".format))
    rows = audit.set_index("scope")["pairs"]
    if rows["lucchi_pp train"] != rows["lucchi_pp test"]:  # the staged copy keeps every second training slice
        print(f"note: this copy's Lucchi++ Train_* holds {rows['lucchi_pp train']} of {rows['lucchi_pp test']} slices; "
              "on all of them the script pairs Train_* as it pairs Test_* (the same file names)")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, verify or download the datasets")
    data_sub = data.add_subparsers(dest="action", required=True)
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "info": ("slices, shape, voxel size and foreground fraction per split", _data_info),
        "verify": ("check every image against the official pixel checksums", _data_verify),
        "download": ("download and unpack the official archives (skipped when EMLIB_DATA is set)", _data_download),
    }
    root_help = "data root (default: $EMLIB_DATA or the user cache)"
    audit = data_sub.add_parser("audit", help="how the authors' published paired set pairs images with labels, "
                                "and the IoU_fg a perfect model scores against it")
    audit.add_argument("--root", default=None, help=root_help)
    _add_allow_modified(audit)
    audit.set_defaults(func=_data_audit)
    for action, (help_text, func) in commands.items():
        cmd = data_sub.add_parser(action, help=help_text)
        cmd.add_argument("datasets", nargs="*", help="lucchi_pp and/or vnc (default: both)")
        cmd.add_argument("--root", default=None, help=root_help)
        if action == "download":
            cmd.add_argument("--force", action="store_true", help="download again even if present")
        if action == "verify":
            cmd.add_argument("--quiet", action="store_true", help="no progress bar")
        if action == "info":
            _add_allow_modified(cmd)
        cmd.set_defaults(func=func)


def weights_argument(values: Sequence[str] | None) -> str | dict[str, str] | None:
    """``--weights`` values as :func:`emlib.config.grid_configs` takes them: ``NAME=FILE`` pairs as
    ``{NAME: FILE}``, or one bare ``FILE`` as it is (valid when the runs use one backbone).

    Examples
    --------
    >>> weights_argument(["dinov2_vits14=a.pth", "openclip_vitb16=b.bin"])
    {'dinov2_vits14': 'a.pth', 'openclip_vitb16': 'b.bin'}
    >>> weights_argument(["a.pth"])
    'a.pth'
    """
    if not values:
        return None
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in list_backbones():
            pairs[name] = path
        elif len(values) == 1:
            return value
        else:
            raise ConfigError(f"--weights {value} does not say which backbone it is for; give one --weights NAME=FILE "
                              f"per backbone, e.g. --weights {list_backbones()[0]}={value}")
    return pairs


def absolute_paths(args: argparse.Namespace) -> argparse.Namespace:
    """``--root``, ``--out`` and the files of ``--weights`` made absolute against the cwd (in place), so they
    name the same folders in the run processes a launcher starts elsewhere.

    Examples
    --------
    >>> args = absolute_paths(argparse.Namespace(root="/data/../data", out=None, weights=["dinov2_vits14=/x/./w.pth"]))
    >>> args.root, args.out, args.weights
    ('/data', None, ['dinov2_vits14=/x/w.pth'])
    """
    for name in ("root", "out"):
        if getattr(args, name, None):
            setattr(args, name, str(user_path(getattr(args, name))))
    if getattr(args, "weights", None):
        args.weights = [_absolute_weights(value) for value in args.weights]
    return args


def _absolute_weights(value: str) -> str:
    """One ``--weights`` value, ``NAME=FILE`` or ``FILE``, with its file absolute (anything else as given, for
    :func:`weights_argument` to name in its error)."""
    name, sep, path = value.partition("=")
    if sep and name in list_backbones():
        return f"{name}={user_path(path)}" if path else value
    return value if sep else str(user_path(value))


def _weights_selection(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    named = list(args.names) + [v.partition("=")[0] for v in args.weights or () if "=" in v]
    if not named and args.profile is None and args.action != "list":
        raise ConfigError(f"name the backbones to {args.action}, e.g. `emlib weights {args.action} dinov2_vits14`, "
                          f"or a profile (`emlib weights {args.action} --profile quick`)")
    names = select_backbones(named or None, profile=args.profile)
    files = weights_argument(args.weights)
    if isinstance(files, str):  # a bare FILE: for the one backbone named
        if len(names) != 1:
            raise ConfigError(f"--weights {files} does not say which backbone it is for; give --weights NAME=FILE")
        files = {names[0]: files}
    return names, files or {}


def _weights_list(args: argparse.Namespace) -> int:
    names, files = _weights_selection(args)
    table = weights_status(names, weights=files)
    table["present"] = table["present"].map({True: "yes", False: "no"})
    with pd.option_context("display.width", 250, "display.max_colwidth", 90):
        print(table.to_string(index=False))
    return 0


def _weights_check(args: argparse.Namespace) -> int:
    names, files = _weights_selection(args)
    failed = 0
    for name in names:
        try:
            source = find_weights(name, files.get(name))
            if not source.present:
                print(f"{name}: not on this machine (the hub serves it); run `emlib weights fetch {name}`")
                failed += 1
                continue
            load_weights_file(source.spec, source.path)
            print(f"{name}: ok, {source.label()}")
        except WeightsError as err:
            print(f"{name}: {getattr(err, 'cli_message', None) or err}")
            failed += 1
    print("all present" if not failed else f"{failed} of {len(names)} missing or unusable")
    return 1 if failed else 0


def _weights_fetch(args: argparse.Namespace) -> int:
    names, _ = _weights_selection(args)
    for name, source in fetch_weights(names, progress=not args.quiet).items():
        print(f"{name}: {source.where} ({'downloaded' if source.origin == 'hf-download' else 'already here'})")
    return 0


def _add_weights_command(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="what pretrained weights each backbone needs, which are here, and fetching them")
    weights_sub = weights.add_subparsers(dest="action", required=True)
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "list": ("a table: hub repo, files as served, size, SHA-256, licence, and whether and where each is here", _weights_list),
        "check": ("find and load each backbone's weights; exit 1 when some are missing", _weights_check),
        "fetch": ("download what is missing into the Hugging Face cache (needs internet; DINOv3: accepted terms)", _weights_fetch),
    }
    for action, (help_text, func) in commands.items():
        cmd = weights_sub.add_parser(action, help=help_text)
        cmd.add_argument("names", nargs="*", metavar="NAME", help=f"backbones ({', '.join(list_backbones())})")
        cmd.add_argument("--profile", choices=list_profiles(), default=None, help="the backbones of this profile")
        if action == "fetch":
            cmd.add_argument("--quiet", action="store_true", help="no progress bars")
        else:
            cmd.add_argument("--weights", action="append", default=None, metavar="NAME=FILE", help="a local file for NAME")
        cmd.set_defaults(func=func, weights=None)


def _lab_pack(args: argparse.Namespace) -> int:
    contents = pack_lab(args.archive, data=args.data, include_data=not args.no_data, backbones=args.backbone,
                    profile=args.profile, include_weights=not args.no_weights, runs=args.runs or ())
    print(f"packed {contents.summary()}")
    return 0


def _lab_unpack(args: argparse.Namespace) -> int:
    contents = unpack_lab(args.archive, args.into)
    print(f"unpacked {contents.summary()} into {contents.root}; every SHA-256 matches the manifest")
    lines = env_lines(contents)
    if lines:
        print("set these (e.g. in ~/.bashrc) so that emlib uses them, offline:")
        print("\n".join(lines))
    for name in contents.runs:
        print(f"finished runs: {contents.root / 'runs' / name} (pass it as `emlib grid --out`, which skips finished runs)")
    return 0


def _add_lab_command(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="carry data, weights and finished runs to a lab without internet, in one archive")
    lab_sub = lab.add_subparsers(dest="action", required=True)
    p = lab_sub.add_parser("pack", help="write ARCHIVE (.tar, .tar.gz) with the data, the weights here and run folders")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--data", default=None, help="data root to pack (default: $EMLIB_DATA or the download cache)")
    p.add_argument("--no-data", action="store_true", help="pack no data")
    p.add_argument("--backbone", action="append", default=None, choices=list_backbones(),
                   help="pack this backbone's weights (repeatable; default: every backbone whose weights are here)")
    p.add_argument("--profile", choices=list_profiles(), default=None, help="pack the weights of this profile's backbones")
    p.add_argument("--no-weights", action="store_true", help="pack no weights")
    p.add_argument("--runs", action="append", default=None, metavar="DIR",
                   help="a folder of finished grid runs, e.g. runs/quick (repeatable)")
    p.set_defaults(func=_lab_pack)
    u = lab_sub.add_parser("unpack", help="unpack ARCHIVE, verify every SHA-256, print the variables to set")
    u.add_argument("archive", metavar="ARCHIVE")
    u.add_argument("--into", required=True, metavar="DIR", help="a new or empty folder")
    u.set_defaults(func=_lab_unpack)


def _results_export(args: argparse.Namespace) -> int:
    results = export_results(args.runs, args.into, machine=args.machine)
    left = sum(r.get("left_out", 0) for r in results.manifest["profiles"].values())
    print(f"exported {results.summary()}; {len(results.manifest['files'])} tables and records, every SHA-256 in "
          f"{results.root.name}/emlib-results.json; {left} files left out (weights, caches, logs)")
    print(f"build the book from it with `python -m emlib.book build --profile PROFILE --results {results.root}`")
    return 0


def _results_check(args: argparse.Namespace) -> int:
    results = read_published(args.folder)
    print(f"{results.summary()}; every file matches its SHA-256")
    for profile in results.profiles:
        print(provenance_note(results, profile, root=args.root).text())
    return 0


def _add_results_command(sub: argparse._SubParsersAction) -> None:
    results = sub.add_parser("results", help="export finished runs' tables (no weights) for a book built elsewhere")
    results_sub = results.add_subparsers(dest="action", required=True)
    e = results_sub.add_parser("export", help="write a results folder: metrics, results tables, latent summaries and "
                                              "provenance (commit, weights labels, machine); never weights")
    e.add_argument("runs", nargs="+", metavar="RUNS", help="grid folders, one per profile, e.g. runs/paper")
    e.add_argument("--into", required=True, metavar="DIR", help="a new or empty folder")
    e.add_argument("--machine", default=None, help='words for where the runs ran, e.g. "SLURM cluster, A100 80GB"')
    e.set_defaults(func=_results_export)
    c = results_sub.add_parser("check", help="check a results folder (every SHA-256) and compare it with this checkout")
    c.add_argument("folder", metavar="DIR")
    c.add_argument("--root", default=None, help="data root to compare with (default: $EMLIB_DATA or the download cache)")
    c.set_defaults(func=_results_check)


def _grid(args: argparse.Namespace) -> int:
    _allow_modified(args)
    prof = get_profile(args.profile, dry_run=args.dry_run)  # --dry-run: quick -> quick-dry
    out = args.out or f"runs/{prof.name}"
    if args.remedies and args.launcher != "inline":
        raise EmlibError("--remedies runs inline only; drop --launcher or run the remedies in a second command")
    pretrained = False if args.random_weights else (True if args.weights else None)  # a weights file is meant to be used
    overrides = {"device": args.device, "pretrained": pretrained, "weights": weights_argument(args.weights)}
    selection = {"backbone": args.backbone, "regimes": args.regime, "train_sets": args.train_set, "seeds": args.seed,
                 "pairings": args.pairing}
    if args.launcher == "inline" and not (args.plan or args.status):
        results = run_grid(prof, out, root=args.root, progress=not args.quiet, **selection, **overrides)
    else:
        configs = grid_configs(prof, **selection, **overrides)
        if args.plan or args.status:
            return _print_plan(configs, out, args.root) if args.plan else _print_status(configs, out, args.root)
        slurm = SlurmOptions(partition=args.partition, gpus_per_run=args.gpus_per_run, time=args.time, mem=args.mem,
                             account=args.account, array_parallelism=args.array_parallelism)
        results = launch(configs, out, launcher=args.launcher, root=args.root,
                         profile=prof.name, jobs=args.jobs, slurm=slurm, wait=not args.no_wait)
        if args.no_wait:
            again = grid_command(prof, out, **selection)
            print(f"submitted; watch with `{again} --status`, and run the same command again to gather the results")
        if results.empty:
            return 0
    if args.remedies:
        regimes = [r for r in args.regime or ("frozen", "lora") if r != "unet"]
        run_alignment_grid(prof, out, regimes=regimes, root=args.root, progress=not args.quiet, backbone=args.backbone,
                           seed=(args.seed or [None])[0], **overrides)
    _print_results(results)
    return 0


def _summary(results: pd.DataFrame, columns: list[str]) -> str:
    summary = results[[c for c in columns if c in results]].copy()
    summary["iou_fg"] = summary["iou_fg"].map("{:.3f}".format)
    if "degenerate" in results:  # one class predicted everywhere: the row says nothing about the regime
        summary["note"] = results["degenerate"].map({True: "DEGENERATE (one class everywhere)", False: ""})
    return summary.to_string(index=False)


def _print_results(results: pd.DataFrame) -> None:
    columns = ["train_set", "pairing", "regime", "backbone", "test_set", "iou_fg", "weights_label"]
    print(_summary(scored_rows(results), columns), file=sys.stdout)
    mixed = pd.concat([scored_rows(results, test_sets=[MIXED_TEST], test_labels=labels) for labels in TEST_LABELS])
    if not mixed.empty:
        print(f"\nmixed test set (Lucchi++ and VNC test slices pooled, as the authors score paired runs), against the true "
              f"labels and the labels {PUBLISHED_SCRIPT} gives them:", file=sys.stdout)
        print(_summary(mixed.reset_index(drop=True), [*columns, "test_labels"]), file=sys.stdout)


def _print_plan(configs: list, out: str, root: str | None) -> int:
    table = plan(configs, out, root=root)
    print(f"plan: {len(table)} of {len(configs)} selected runs to make in {out} (finished runs are skipped)")
    if table.empty:
        return 0
    shown = table.assign(est_hours=(table.seconds / 3600).map("{:.1f}".format),
                         peak_memory_gb=(table.peak_memory_mb / 1024).map("{:.1f}".format))
    shown.loc[table.seconds.isna(), ["est_hours", "peak_memory_gb"]] = "no measurement"
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(shown[["run", "epochs", "train_images", "input", "est_hours", "peak_memory_gb", "measured_on"]].to_string(index=False))
    measured = table.dropna(subset=["seconds"])
    if measured.empty:
        print("total: no measurement in emlib/grid/costs.csv for these backbones and regimes")
        return 0
    print(f"total: {measured.seconds.sum() / 3600:.1f} h of compute for {len(measured)} runs, at most "
          f"{measured.peak_memory_mb.max() / 1024:.1f} GB per run -- an ESTIMATE from emlib/grid/costs.csv, "
          "measured on the machine named in measured_on (every epoch run; early stopping ends runs sooner), "
          "scaled by the pixels of each run's input (crops, or slices at its long side) over the measured size"
          + (f"; {len(table) - len(measured)} runs: no measurement" if len(measured) < len(table) else ""))
    return 0


def _print_status(configs: list, out: str, root: str | None) -> int:
    table = run_status(configs, out, root=root)
    print(table.to_string(index=False))
    print(", ".join(f"{n} {state}" for state, n in table.state.value_counts().items()))
    return 0


def _add_grid_command(sub: argparse._SubParsersAction) -> None:
    grid = sub.add_parser(
        "grid", help="train and test the runs of a profile; writes results.csv/json",
        description=f"For example: {grid_command('smoke', 'runs/smoke', regimes=['lora'], train_sets=['paired'])}",
    )
    grid.add_argument("--profile", choices=list_profiles(), default="smoke")
    grid.add_argument("--out", default=None, help="output folder (default: runs/<profile>)")
    grid.add_argument("--root", default=None, help="data root (default: $EMLIB_DATA or the download cache)")
    _add_allow_modified(grid)
    grid.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default: the profile's)")
    grid.add_argument("--backbone", choices=list_backbones(), default=None, help="train only this backbone (default: the profile's)")
    grid.add_argument("--regime", choices=REGIMES, action="append", default=None, help="only this regime (repeatable)")
    grid.add_argument("--train-set", choices=TRAIN_SETS, action="append", default=None, help="only this training set (repeatable)")
    grid.add_argument("--seed", type=int, action="append", default=None, help="only this seed (repeatable)")
    grid.add_argument("--pairing", choices=PAIRINGS, action="append", default=None,
                      help="train the paired runs on this pairing of Lucchi++ images and labels (repeatable; default: "
                      "correct; published: the authors' composed paired set, see `emlib data audit`)")
    what = grid.add_mutually_exclusive_group()
    what.add_argument("--plan", action="store_true", help="print the runs still to make with their estimated cost; train nothing")
    what.add_argument("--status", action="store_true", help="print which runs are done, running, failed (with the log) or missing")
    grid.add_argument("--launcher", choices=LAUNCHERS, default="inline",
                      help="inline: one run after the other here; local: one process per run; slurm: a job array")
    grid.add_argument("--jobs", type=int, default=1, help="local launcher: runs at a time")
    slurm = grid.add_argument_group("slurm launcher")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--gpus-per-run", type=int, default=1)
    slurm.add_argument("--time", type=int, default=24 * 60, help="minutes per run (default: 1440)")
    slurm.add_argument("--mem", default=None, help="memory per run, e.g. 64G")
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--array-parallelism", type=int, default=256, help="runs of the array at a time")
    slurm.add_argument("--no-wait", action="store_true", help="submit and return (watch with --status)")
    grid.add_argument(
        "--remedies", action="store_true",
        help=f"also train the remedy runs of 'beyond the paper' ({len(REMEDIES)} remedies; writes alignment_results.csv)",
    )
    weights = grid.add_mutually_exclusive_group()
    weights.add_argument("--weights", action="append", default=None, metavar="NAME=FILE",
                         help="a local weights file for backbone NAME (repeatable; a bare FILE when the runs use one "
                              "backbone); else $EMLIB_WEIGHTS, the hubs' caches or a download (see `emlib weights`)")
    weights.add_argument("--random-weights", action="store_true", help="random-init backbones (timing only; labelled)")
    grid.add_argument("--dry-run", action="store_true", help="the profile's dry run (quick-dry, paper-dry): every code "
                      "path at a small size, out in runs/<profile>-dry (CI, on a local weights hub)")
    grid.add_argument("--quiet", action="store_true", help="no progress bars")
    grid.set_defaults(func=_grid)


def build_parser() -> argparse.ArgumentParser:
    """The ``emlib`` argument parser (one sub-command per task)."""
    parser = argparse.ArgumentParser(
        prog="emlib", description="Are vision foundation models foundational for EM segmentation?"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_grid_command(sub)
    _add_weights_command(sub)
    _add_lab_command(sub)
    _add_results_command(sub)
    add_book_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emlib`` console script; returns the exit status."""
    args = absolute_paths(build_parser().parse_args(argv))
    try:
        return int(args.func(args))
    except EmlibError as err:  # in command-line words where the error has them (--weights, not weights=)
        print(f"emlib: error: {getattr(err, 'cli_message', None) or err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (`emlib weights list | head`): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise: no error at exit
        return 0
    except OSError as err:  # the file system, not emlib: a full disk, a folder without permission, ...
        where = f" ({err.filename})" if err.filename else ""
        print(f"emlib: error: {err.strerror or type(err).__name__}{where}; free space or fix the permissions and run "
              "the same command again, which resumes where it stopped", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emlib: interrupted; finished steps are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
