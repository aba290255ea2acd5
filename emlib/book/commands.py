"""The book's command line: ``python -m emlib.book build|check|export``, also ``emlib book ...``.

A user error (an :class:`~emlib.errors.EmlibError`, such as a failing chapter) is printed as one
line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emlib.book.build import build_book
from emlib.book.edition import DEFAULT_EDITION, EDITIONS
from emlib.book.publish import export_notebooks
from emlib.book.repository import BookSource, resolve_source
from emlib.book.shards import build_shard, merge_shards, parse_shard
from emlib.book.check import CHROMIUM, CheckReport, check_book
from emlib.book.toc import find_root
from emlib.errors import ConfigError, EmlibError
from emlib.paths import user_path

__all__ = ["add_book_command", "main"]


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    import yaml  # lazy: PyYAML comes with the [book] extra

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"-p {item!r} is not KEY=VALUE; e.g. -p backbone=dinov2_vitb14")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"-p {item!r}: the value {value!r} is not a YAML value; quote it as a string, "
                              f"e.g. -p {key}='\"{value}\"'") from None
    return params


#: The chapter parameters that name an input folder: a relative one given with ``-p`` means a folder below the
#: cwd of the command, not of the chapter's kernel. (``out_dir`` is the build's own: a relative one resolves
#: against the book root, ``--out`` or the repository, so a build never writes its runs elsewhere.)
PATH_PARAMETERS: tuple[str, ...] = ("data_dir", "weights_dir")


def absolute_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the folders of :data:`PATH_PARAMETERS` made absolute against the cwd (other values as given).

    Examples
    --------
    >>> import os
    >>> absolute_params({"data_dir": "data", "seed": 1})["data_dir"] == os.path.join(os.getcwd(), "data")
    True
    >>> absolute_params({"data_dir": None, "weights_dir": 3, "out_dir": "runs"})
    {'data_dir': None, 'weights_dir': 3, 'out_dir': 'runs'}
    """
    return {key: str(user_path(value)) if key in PATH_PARAMETERS and isinstance(value, str) and value else value
            for key, value in params.items()}


def _optional_path(value: str | None) -> Path | None:
    """A folder given on the command line, absolute against the cwd; None when not given."""
    return user_path(value) if value else None


def _print_check(report: CheckReport) -> int:
    for line in report.failures():
        print(f"  {line}")
    print(report.summary())
    return 0 if report.ok else 1


def _build(args: argparse.Namespace) -> int:
    common = {"profile": args.profile, "only": args.only, "out": _optional_path(args.out), "dry_run": args.dry_run}
    if args.shard is not None:
        if args.check or args.solutions:
            raise ConfigError(f"--shard builds no page, so {'--check' if args.check else '--solutions'} has nothing to "
                              "do; pass it to the --merge build instead")
        parse_shard(args.shard)  # before the -p values are read: a bad --shard is the one sentence
        shard = build_shard(_optional_path(args.root), shard=args.shard,
                            parameters=absolute_params(_parse_params(args.param)), **common)
        print(shard.summary())
        return 0
    build = merge_shards if args.merge is not None else build_book
    report = build(
        *([args.merge] if args.merge is not None else []),
        _optional_path(args.root),
        parameters=absolute_params(_parse_params(args.param)),
        **common,
        strict=not args.no_strict,
        check=args.check,
        chromium=args.chromium,
        repository=args.repository,
        commit=args.commit,
        edition=args.edition,
        solutions=args.solutions,
        results=_optional_path(args.results),
    )
    print(report.summary())
    if report.book_source is not None:
        _note_fallback(report.book_source)
    if report.check is not None and not report.check.ok:
        for line in report.check.failures():
            print(f"  {line}")
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    root = _optional_path(args.root) or (None if args.html else find_root())
    return _print_check(check_book(_optional_path(args.html), root=root, chromium=args.chromium))


def _export(args: argparse.Namespace) -> int:
    root = user_path(args.root).resolve() if args.root else find_root()
    book_source = resolve_source(root, repository=args.repository, commit=args.commit)
    written = export_notebooks(user_path(args.dest), root, book_source=book_source, profile=args.profile,
                               only=args.only, executed=_optional_path(args.executed))
    for path in written:
        print(path)
    print(f"{len(written)} notebooks install {book_source.requirement} and start with profile {args.profile!r}")
    _note_fallback(book_source)
    return 0


def _note_fallback(book_source: BookSource) -> None:
    if book_source.origin == "fallback":
        print(f"note: no repository given or found (--repository, $GITHUB_REPOSITORY, a GitHub origin), so the "
              f"links name the placeholder {book_source.repository}; pass --repository OWNER/NAME", file=sys.stderr)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--repository`` and ``--commit`` (both derived when left out: see emlib.book.repository)."""
    parser.add_argument("--repository", default=None, metavar="OWNER/NAME",
                        help="GitHub repository the links name and Colab installs from, or a local clone "
                             "(default: $GITHUB_REPOSITORY, else the clone's origin)")
    parser.add_argument("--commit", default=None, metavar="SHA",
                        help="commit the Colab notebooks install (default: $GITHUB_SHA, else the clone's HEAD)")


def _add_actions(sub: argparse._SubParsersAction) -> None:
    """The ``build``, ``check`` and ``export`` sub-commands, each with its ``func``."""
    b = sub.add_parser("build", help="execute every chapter with papermill, then jupyter-book build")
    b.add_argument("--profile", default="smoke", help="smoke (CPU, random weights), quick or paper (default: smoke)")
    b.add_argument("--only", nargs="+", metavar="CHAPTER", help="build only these chapters, e.g. --only 01_data")
    b.add_argument("--out", default=None,
                   help="build in this folder instead of the repository (new, empty or made by an earlier --out "
                        "build; the chapters' runs go to OUT/runs)")
    b.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter the chapters' parameters cells declare, as YAML (e.g. -p seed=1); "
                        "the profile is --profile")
    b.add_argument("--dry-run", action="store_true",
                   help="the profile's dry run (quick, paper): every code path at a small size, for CI on a local hub")
    b.add_argument("--edition", choices=EDITIONS, default=DEFAULT_EDITION,
                   help="answer-key: each solution in a dropdown under its exercise (the online book); "
                        "student: no solution anywhere in the pages or their notebooks (default: answer-key)")
    shards = b.add_mutually_exclusive_group()
    shards.add_argument("--shard", default=None, metavar="I/N",
                        help="train only share I of N of the chapters' runs (shares of about equal estimated cost) into "
                             "the runs folder, with a manifest; builds no page (then --merge the N runs folders)")
    shards.add_argument("--merge", nargs="+", default=None, metavar="DIR",
                        help="check the runs folders of the N shards, copy their runs into this build's runs folder, "
                             "then build the book (the chapters read the runs back)")
    b.add_argument("--results", default=None, metavar="DIR",
                   help="a results folder made elsewhere (emlib results export): chapters that show only tables "
                        "(07) read its runs instead of training them, and name its commit, weights and machine")
    b.add_argument("--check", action="store_true", help="run the browser check after the build")
    b.add_argument("--solutions", action="store_true",
                   help="also run every exercise solution's code after its chapter (the pages stay the same)")
    b.add_argument("--chromium", default=CHROMIUM, help=f"Chromium for --check (default: {CHROMIUM})")
    b.add_argument("--no-strict", action="store_true", help="do not turn Sphinx warnings into errors")
    b.add_argument("--root", default=None, help="repository root (default: found from the current folder)")
    _add_source_options(b)
    b.set_defaults(func=_build)
    c = sub.add_parser("check", help="open every built page in headless Chromium")
    c.add_argument("--root", default=None, help="book root (default: found from the current folder)")
    c.add_argument("--html", default=None, help="built HTML folder (default: <root>/_build/html)")
    c.add_argument("--chromium", default=CHROMIUM, help=f"Chromium executable (default: {CHROMIUM})")
    c.set_defaults(func=_check)
    e = sub.add_parser("export", help="write the .ipynb chapters Colab opens (the notebooks branch), install pinned")
    e.add_argument("dest", help="folder to write book/chapters/<name>.ipynb into")
    e.add_argument("--root", default=None, help="repository root (default: found from the current folder)")
    e.add_argument("--profile", default="quick", help="the profile each notebook starts with on Colab (default: quick)")
    e.add_argument("--only", nargs="+", metavar="CHAPTER", help="export only these chapters")
    e.add_argument("--executed", default=None, metavar="FOLDER",
                   help="publish the executed chapters in FOLDER (book/chapters after a build), outputs kept")
    _add_source_options(e)
    e.set_defaults(func=_export)


def add_book_command(sub: argparse._SubParsersAction) -> None:
    """Register ``emlib book build|check|export`` on the CLI's sub-parsers."""
    book = sub.add_parser("book", help="build the study-companion book, check it in a browser, export notebooks")
    _add_actions(book.add_subparsers(dest="action", required=True))


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emlib.book",
        description="Build the study-companion book, check it in a browser, export notebooks.",
    )
    _add_actions(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emlib.book build|check|export``; returns the exit status (2 for user errors)."""
    args = _build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EmlibError as err:
        print(f"emlib.book: error: {err}", file=sys.stderr)
        return 2
