"""Command-line interface: ``emlib data info|verify|download`` and the experiment grid.

Every user error (an :class:`~emlib.errors.EmlibError`) is printed as one sentence on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from emlib.errors import EmlibError

__all__ = ["main", "build_parser"]


def _data_info(args: argparse.Namespace) -> int:
    import pandas as pd

    from emlib.data import data_root, dataset_summary

    table = dataset_summary(root=args.root, datasets=args.datasets)
    print(f"data root: {data_root(args.root)}")
    with pd.option_context("display.width", 120):
        print(table.to_string(index=False, formatters={"foreground_fraction": "{:.2%}".format}))
    return 0


def _data_verify(args: argparse.Namespace) -> int:
    from emlib.data import list_datasets, verify_dataset

    for name in args.datasets or list_datasets():
        report = verify_dataset(name, root=args.root, progress=not args.quiet)
        note = "complete" if report.complete else f"{len(report.missing)} upstream files not in this copy"
        print(f"{name}: {report.checked} of {report.expected} files match the official pixels ({note})")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from emlib.data import fetch_dataset, list_datasets

    for name in args.datasets or list_datasets():
        path = fetch_dataset(name, root=args.root, force=args.force)
        print(f"{name}: {path}")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect, verify or download the datasets")
    data_sub = data.add_subparsers(dest="action", required=True)
    commands: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
        "info": ("slices, shape, voxel size and foreground fraction per split", _data_info),
        "verify": ("check every image against the official pixel checksums", _data_verify),
        "download": ("download and unpack the official archives (skipped when EMLIB_DATA is set)", _data_download),
    }
    for action, (help_text, func) in commands.items():
        cmd = data_sub.add_parser(action, help=help_text)
        cmd.add_argument("datasets", nargs="*", help="lucchi_pp and/or vnc (default: both)")
        cmd.add_argument("--root", default=None, help="data root (default: $EMLIB_DATA or the user cache)")
        if action == "download":
            cmd.add_argument("--force", action="store_true", help="download again even if present")
        if action == "verify":
            cmd.add_argument("--quiet", action="store_true", help="no progress bar")
        cmd.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    """The ``emlib`` argument parser (one sub-command per task)."""
    parser = argparse.ArgumentParser(
        prog="emlib", description="Are vision foundation models foundational for EM segmentation?"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    try:
        from emlib.grid import add_grid_command
    except ImportError:  # the grid arrives with the training stack
        pass
    else:
        add_grid_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emlib`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EmlibError as err:
        print(f"emlib: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("emlib: interrupted; finished steps are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
