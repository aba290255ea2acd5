"""A book build in shares: ``--shard I/N`` trains one share of the book's runs, ``--merge DIR...`` builds the book.

``python -m emlib.book build --profile quick --shard 2/8`` trains the second of eight shares of the
runs the chapters of that build train (:func:`emlib.chapters.runs.book_configs`: the profile, the
``--only`` chapters and the ``-p`` values decide them) into the build's runs folder (``runs``, or
``OUT/runs`` with ``--out``), writes ``shard-2-of-8.json`` there (which shard, its runs, the profile,
chapters, parameters and commit) and builds no page. The shares are balanced by the cost
:func:`emlib.grid.launch.plan` estimates from ``costs.csv`` (:func:`split_shares`: the longest run
first, each to the share with the least cost so far); a run without a measurement counts as the mean
of the measured ones (every run as 1 when none is measured, so the shares balance the number of runs).
The split depends on nothing but the runs and the cost table, so every shard computes the same one.

``python -m emlib.book build --profile quick --merge DIR1 DIR2 ...`` checks, before any work, that the
shards' runs folders agree (same profile, chapters, parameters and commit as each other and as this
build), that together they hold every run of the book, finished, and that a run found twice has the
same scores each time; then copies the run folders into the build's runs folder and builds the book
as usual: the chapters find their runs finished and read them back (:func:`emlib.grid.runner.run_one`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from emlib.book.build import (OUT_DIR_PARAMETER, BuildReport, build_book, chapter_parameter_values,
                              check_chapter_weights, check_out, claim_out)
from emlib.book.execute import read_notebook_source
from emlib.book.parameters import chapter_parameters, check_parameters
from emlib.book.toc import SOURCE_DIR, BookError, find_root, list_chapters
from emlib.chapters.runs import book_configs
from emlib.chapters.settings import chapter_settings, limit_cpu_threads
from emlib.config import Profile, RunConfig, get_profile
from emlib.errors import ConfigError
from emlib.featurestore import store_group
from emlib.grid.launch import plan
from emlib.grid.runner import METRICS, SCORE_COLUMNS, git_commit, run_configs, run_folder, saved_rows
from emlib.models.weights import WEIGHTS_ENV
from emlib.paths import user_path
from emlib.runfiles import read_json, write_json

__all__ = ["SHARD_MANIFEST", "WHERE_PARAMETERS", "BookRuns", "ShardReport", "parse_shard", "split_shares",
           "run_seconds", "book_runs", "build_shard", "read_shards", "merge_shards"]

#: The manifest a shard writes into its runs folder (``shard-2-of-8.json``).
SHARD_MANIFEST = "shard-{shard}-of-{shards}.json"
#: Chapter parameters that say where a shard ran, not what it computed: shards may differ in them.
WHERE_PARAMETERS = ("out_dir", "data_dir", "weights_dir", "device")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``; one sentence naming the fix for anything else.

    Examples
    --------
    >>> parse_shard("2/8")
    (2, 8)
    >>> parse_shard("9/8")
    Traceback (most recent call last):
    ...
    emlib.errors.ConfigError: --shard 9/8: I is 9, more than the 8 shards; pass I from 1 to N, e.g. --shard 1/8 up to --shard 8/8
    """
    i, sep, n = str(text).strip().partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit():
        raise ConfigError(f"--shard {text!r} is not I/N with whole numbers I and N; pass e.g. --shard 1/4 (the first "
                          "of four shards)")
    i, n = int(i), int(n)
    if n < 1:
        raise ConfigError(f"--shard {text}: N is {n}, but a build has at least 1 shard; pass e.g. --shard 1/4")
    if not 1 <= i <= n:
        why = "shards count from 1" if i < 1 else f"more than the {n} shards"
        raise ConfigError(f"--shard {text}: I is {i}, {why}; pass I from 1 to N, e.g. --shard 1/{n} up to --shard {n}/{n}")
    return i, n


def split_shares(seconds: Sequence[float], shards: int, *, groups: Sequence[Any] | None = None) -> list[list[int]]:
    """Deal the runs into ``shards`` shares of about equal cost: the indices of ``seconds`` in each share.

    Longest-processing-time first: runs in order of decreasing cost (ties: the earlier run first), each
    to the share with the least cost so far (ties: the lower share). Deterministic; every run in exactly
    one share; each share's indices ascending. The longest share is at most 4/3 of the best possible.

    ``groups`` (one key per run, None for a run of its own) keeps the runs of one key in one share: the
    frozen runs that read one feature store (:func:`emlib.featurestore.store_group`) then compute it
    once. Each still costs its own seconds (a frozen run's head trains on every epoch, stored tokens
    or not: measured in ``benchmarks/README.md``), so a group weighs the sum of its runs.

    Examples
    --------
    >>> split_shares([5, 1, 4, 3, 3], 2)
    [[0, 4], [1, 2, 3]]
    >>> split_shares([1.0], 3)
    [[0], [], []]
    >>> split_shares([5, 1, 4, 3, 3], 2, groups=["a", None, "a", None, None])
    [[0, 2], [1, 3, 4]]
    """
    units: dict[Any, list[int]] = {}
    for k in range(len(seconds)):
        units.setdefault(_unit(k, groups), []).append(k)
    members = list(units.values())
    cost = [sum(float(seconds[k]) for k in unit) for unit in members]
    loads = [0.0] * shards
    shares: list[list[int]] = [[] for _ in range(shards)]
    for u in sorted(range(len(members)), key=lambda k: (-cost[k], members[k][0])):
        j = min(range(shards), key=lambda s: (loads[s], s))
        shares[j].extend(members[u])
        loads[j] += cost[u]
    return [sorted(share) for share in shares]


def _store_order(share: Sequence[int], groups: Sequence[Any]) -> list[int]:
    """The runs of a share with each store group's runs one after another (at its first run's place): a
    process keeps a few stores (:data:`emlib.cache.SHARED_STORES`), so a group is done before the next starts."""
    first: dict[Any, int] = {}
    for k in share:
        first.setdefault(_unit(k, groups), k)
    return sorted(share, key=lambda k: (first[_unit(k, groups)], k))


def _unit(k: int, groups: Sequence[Any] | None) -> tuple:
    """What run ``k`` is dealt with: its store group, or itself when it has none."""
    key = groups[k] if groups is not None else None
    return ("run", k) if key is None else ("group", key)


def run_seconds(configs: Sequence[RunConfig], *, root: str | os.PathLike[str] | None = None,
                costs: pd.DataFrame | None = None) -> list[float]:
    """The estimated seconds of each run (:func:`emlib.grid.launch.plan`), a run without a measurement at the mean.

    The mean is that of the measured runs; when none is measured, every run counts as 1 s (the
    shares then balance the number of runs).
    """
    estimate = plan(configs, None, root=root, costs=costs).seconds.astype(float)
    fallback = float(estimate.mean()) if estimate.notna().any() else 1.0
    return [float(v) for v in estimate.fillna(fallback)]


@dataclass
class BookRuns:
    """The runs of one build (:func:`book_runs`): where they go and what each chapter is run with."""

    root: Path
    profile: Profile
    chapters: list[str]
    parameters: dict[str, Any]
    book_root: Path
    runs_dir: Path
    data_dir: Path | None
    configs: list[RunConfig]

    @property
    def grid(self) -> Path:
        """The grid folder the chapters share: ``<runs folder>/<profile>``."""
        return self.runs_dir / self.profile.name

    def identity(self) -> dict[str, Any]:
        """What every shard of this build must share: profile, chapters, parameters (less :data:`WHERE_PARAMETERS`), commit."""
        return {"profile": self.profile.name, "chapters": self.chapters, "commit": git_commit(),
                "parameters": {k: v for k, v in sorted(self.parameters.items()) if k not in WHERE_PARAMETERS}}

    def folders(self) -> dict[str, RunConfig]:
        """Run folder name -> config (:func:`emlib.grid.runner.run_folder`: the data and weights are in the name)."""
        with _weights_env(self.parameters):
            return {run_folder(cfg, self.grid, root=self.data_dir).name: cfg for cfg in self.configs}


@contextmanager
def _weights_env(parameters: Mapping[str, Any]) -> Iterator[None]:
    """``-p weights_dir=...`` as ``$EMLIB_WEIGHTS`` while the runs are named or made (as a chapter exports it)."""
    saved = os.environ.get(WEIGHTS_ENV)
    if parameters.get("weights_dir"):
        os.environ[WEIGHTS_ENV] = str(user_path(str(parameters["weights_dir"])))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(WEIGHTS_ENV, None)
        else:
            os.environ[WEIGHTS_ENV] = saved


def book_runs(root: str | os.PathLike[str] | None = None, *, profile: Profile | str = "smoke",
              only: Sequence[str] | None = None, out: str | os.PathLike[str] | None = None,
              parameters: Mapping[str, Any] | None = None, dry_run: bool = False,
              check_weights: bool = True) -> BookRuns:
    """The runs the chapters of this build train, with the build's own refusals first (seconds, nothing written).

    The same checks as :func:`~emlib.book.build.build_book` (profile, ``--only``, ``-p``, weights, ``--out``);
    the runs folder is the chapters' ``out_dir`` as the build resolves it (under ``out`` when given).
    """
    prof = get_profile(profile, dry_run=dry_run)
    root = find_root() if root is None else Path(root).resolve()
    chapters = list_chapters(root, only=only)
    params = dict(parameters or {})
    declared = {name: chapter_parameters(read_notebook_source(root / SOURCE_DIR / f"{name}.py")) for name in chapters}
    check_parameters(params, declared, profile=prof.name)
    if check_weights:
        check_chapter_weights(root, chapters, prof, params)
    book_root = check_out(root, out) if out else root
    chosen = chapter_parameter_values(declared, params, root=root, book_root=book_root)
    values = {name: {**{k: p.default for k, p in declared[name].items() if k != "profile"}, **chosen[name]}
              for name in chapters}
    folder = Path(str(next((v[OUT_DIR_PARAMETER] for v in values.values() if OUT_DIR_PARAMETER in v), "runs")))
    runs_dir = folder.expanduser() if folder.expanduser().is_absolute() else book_root / folder
    data_dir = user_path(str(params["data_dir"])) if params.get("data_dir") else None
    return BookRuns(root, prof, chapters, params, book_root, runs_dir, data_dir, book_configs(prof, values))


@dataclass
class ShardReport:
    """What :func:`build_shard` did."""

    shard: int
    shards: int
    runs: list[str]
    manifest: Path
    estimated_seconds: float
    seconds: float

    def summary(self) -> str:
        return (f"shard {self.shard}/{self.shards}: {len(self.runs)} runs in {self.seconds:.1f} s (estimated "
                f"{self.estimated_seconds:.0f} s); manifest: {self.manifest}")


def build_shard(root: str | os.PathLike[str] | None = None, *, shard: str, profile: Profile | str = "smoke",
                only: Sequence[str] | None = None, out: str | os.PathLike[str] | None = None,
                parameters: Mapping[str, Any] | None = None, dry_run: bool = False, progress: bool = True) -> ShardReport:
    """Train share ``I/N`` of the build's runs into its runs folder and write its manifest; no page is built.

    ``shard`` (``"I/N"``) and every option are checked before any work (:func:`parse_shard`, :func:`book_runs`).
    The runs run as the chapters would run them (:func:`emlib.grid.runner.run_configs`, the chapters'
    data folder, the profile's CPU threads); runs already finished there are read back.
    """
    i, n = parse_shard(shard)
    book = book_runs(root, profile=profile, only=only, out=out, parameters=parameters, dry_run=dry_run)
    folders = book.folders()
    costs = run_seconds(book.configs, root=book.data_dir)
    groups = [store_group(cfg) for cfg in book.configs]
    mine = _store_order(split_shares(costs, n, groups=groups)[i - 1], groups)
    estimated = sum(costs[k] for k in mine)
    if out:
        claim_out(book.book_root)
    names = list(folders)
    say = print if progress else (lambda *a, **k: None)
    t0 = time.perf_counter()
    with _weights_env(book.parameters):
        if mine:
            limit_cpu_threads(chapter_settings(book.profile, device=str(book.parameters.get("device", "auto"))))
        for step, k in enumerate(mine, start=1):  # one run at a time, as the chapters make them, one line each
            say(f"[shard {i}/{n}, run {step}/{len(mine)}] {names[k]} (estimated {costs[k]:.0f} s) ...", flush=True)
            run_configs([book.configs[k]], book.grid, root=book.data_dir, progress=False, profile=book.profile.name)
    seconds = time.perf_counter() - t0
    manifest = book.runs_dir / SHARD_MANIFEST.format(shard=i, shards=n)
    write_json(manifest, {"shard": i, "shards": n, **book.identity(), "grid": book.profile.name,
                          "runs": [names[k] for k in mine], "estimated_seconds": estimated,
                          "seconds": seconds, "all_parameters": book.parameters})
    return ShardReport(i, n, [names[k] for k in mine], manifest, estimated, seconds)


def read_shards(dirs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, dict[str, Any]]]:
    """The shard manifests of the runs folders ``dirs`` (a folder's ``runs`` when it has none itself), as (folder, manifest)."""
    found: dict[Path, tuple[Path, dict[str, Any]]] = {}
    for given in dirs:
        folder = user_path(str(given))
        if not folder.is_dir():
            raise BookError(f"--merge {given}: no such folder; pass the runs folder of each shard (where its "
                            f"{SHARD_MANIFEST.format(shard='I', shards='N')} is)")
        paths = sorted(folder.glob(SHARD_MANIFEST.format(shard="*", shards="*"))) or sorted(
            (folder / "runs").glob(SHARD_MANIFEST.format(shard="*", shards="*")))
        if not paths:
            raise BookError(f"--merge {given} holds no shard manifest ({SHARD_MANIFEST.format(shard='I', shards='N')}); "
                            "pass the runs folder a `python -m emlib.book build --shard I/N` wrote")
        for path in paths:
            data = read_json(path, fix="build that shard again (`--shard I/N` with the same options)")
            if not isinstance(data, dict) or not {"shard", "shards", "runs", "grid"} <= set(data):
                raise BookError(f"{path} is not a shard manifest (no shard, shards, runs and grid); build that shard again")
            found[path.resolve()] = (path.parent, data)
    return list(found.values())


def _check_agree(book: BookRuns, shards: list[tuple[Path, dict[str, Any]]]) -> None:
    """One sentence when a shard was built with other options or code than this build, or a shard is missing."""
    ours = book.identity()
    for folder, data in shards:
        for key, value in ours.items():
            if data.get(key) != value:
                raise BookError(f"the shard in {folder} was built with {key} {data.get(key)!r}, this merge with "
                                f"{value!r}; build every shard and the merge from the same commit with the same "
                                "--profile, --only and -p options")
    counts = {data["shards"] for _, data in shards}
    if len(counts) > 1:
        raise BookError(f"the shards were split {' and '.join(map(str, sorted(counts)))} ways; merge the N shards of one "
                        "split (--shard 1/N ... N/N)")
    n = counts.pop()
    missing = sorted(set(range(1, n + 1)) - {data["shard"] for _, data in shards})
    if missing:
        shown = ", ".join(f"{i}/{n}" for i in missing)
        raise BookError(f"shard {shown} is missing from --merge; pass the runs folder of every shard, 1/{n} to {n}/{n}")


def _scores(rows: pd.DataFrame) -> pd.DataFrame:
    """The scores of a run's test rows, in a fixed order (what two copies of one run must agree on)."""
    keys = [c for c in ("test_set", "test_labels") if c in rows]
    cols = keys + [c for c in SCORE_COLUMNS if c in rows]
    return rows[cols].sort_values(keys).reset_index(drop=True)


def _sources(book: BookRuns, shards: list[tuple[Path, dict[str, Any]]]) -> dict[str, Path]:
    """Run folder name -> the shard's folder to copy, every check done (cover, finished, copies that agree)."""
    expected = book.folders()
    listed: dict[str, list[Path]] = {}
    for folder, data in shards:
        for name in data["runs"]:
            listed.setdefault(str(name), []).append(folder / str(data["grid"]) / str(name))
    missing = [name for name in expected if name not in listed]
    if missing:
        raise BookError(f"the shards hold {len(expected) - len(missing)} of the book's {len(expected)} runs, not "
                        f"{missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "") +
                        "; build the shards again from this commit, on the same data and weights as this merge")
    extra = [name for name in listed if name not in expected]
    if extra:
        raise BookError(f"the shards hold run {extra[0]}, which this build does not train (made on other data or "
                        "weights); build the shards on the data and weights of this merge")
    sources = {}
    with _weights_env(book.parameters):
        for name, copies in listed.items():
            for path in copies:
                if not (path / METRICS).is_file():
                    raise BookError(f"{path} holds no finished run ({METRICS}); build that shard again")
            targets = [*copies, *([book.grid / name] if (book.grid / name / METRICS).is_file() else [])]
            scores = [_scores(saved_rows(p, expected[name], root=book.data_dir)) for p in targets]
            for path, other in zip(targets[1:], scores[1:]):
                if not other.equals(scores[0]):
                    raise BookError(f"run {name} was made twice with different scores ({targets[0]} and {path}); keep "
                                    "one of them (move the other out) and merge again")
            sources[name] = copies[0]
    return sources


def _copy_run(source: Path, target: Path) -> None:
    """Copy a run folder into the grid (through a temporary name, so a half-copied run is never seen as finished)."""
    if (target / METRICS).is_file():
        return  # the same run, checked to agree
    tmp = target.with_name(f".{target.name}.merging")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def merge_shards(dirs: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None, *,
                 profile: Profile | str = "smoke", only: Sequence[str] | None = None,
                 out: str | os.PathLike[str] | None = None, parameters: Mapping[str, Any] | None = None,
                 dry_run: bool = False, **build: Any) -> BuildReport:
    """Check the shards in ``dirs``, copy their runs into this build's runs folder, then build the book.

    Everything is checked before anything is copied (:func:`read_shards`: one manifest or more per
    folder; they agree with each other and with this build; they hold every run of the book, finished;
    a run found twice, or already in the runs folder, has the same scores). ``build`` goes to
    :func:`~emlib.book.build.build_book` (``check``, ``edition``, ``progress``, ...).
    """
    if not dirs:
        raise BookError("--merge names no folder; pass the runs folder of every shard, e.g. --merge shard-1 shard-2")
    book = book_runs(root, profile=profile, only=only, out=out, parameters=parameters, dry_run=dry_run)
    shards = read_shards(dirs)
    _check_agree(book, shards)
    sources = _sources(book, shards)
    if out:
        claim_out(book.book_root)
    book.grid.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        _copy_run(source, book.grid / name)
    return build_book(book.root, profile=book.profile, only=only, out=out, parameters=parameters, **build)
