"""Published results: the tables of finished runs, exported where they ran, read back by a book built elsewhere.

Paper-profile runs take hours on a GPU cluster; the online edition is built on a machine without
those GPUs or weights. :func:`export_results` (``emlib results export runs/paper --into published``)
writes a **results folder** that carries what the book shows and nothing it would have to trust:

- ``<profile>/<run folder>/``: each finished run's ``config.json``, ``metrics.json``, ``results.csv``
  and ``history.csv``;
- ``<profile>/``: the grid's tables (``results.csv``/``.json``, ``latents/domain_report*.csv``, the
  embedding summaries of chapter 6, ``paper_comparison.csv``, ...);
- ``emlib-results.json``, the manifest: the SHA-256 and size of every file (the entries of
  :mod:`emlib.lab`'s manifest), and the provenance of each profile's runs: their commits, the machines
  they ran on, the weights labels and fingerprints of each backbone and the data fingerprints.

Only JSON and CSV files are exported: weights (``model.safetensors``, adapters, checkpoints), the
embedding and feature caches and logs are left out, and :func:`read_published` refuses a folder
holding any other file, a file its manifest does not list or whose SHA-256 differs, before any
work, in one sentence. Nothing is unpickled.

A book build with ``--results DIR`` (:mod:`emlib.book.published`) hands the folder to its chapters
(``$EMLIB_RESULTS``); :func:`published_rows` gives a chapter the rows of its runs found there (by run
id and config, so they are read where the data or weights here differ), and :func:`provenance_note`
the note its page shows: commit, weights labels and machine, and, never silently, a warning when the
folder's commit is not this book's or its data or weights fingerprints are not those here.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from emlib.config import RunConfig
from emlib.errors import ConfigError, DataError, EmlibError, WeightsError
from emlib.grid.runner import git_commit, read_results, saved_rows
from emlib.lab import folder_files
from emlib.models.hub import find_weights
from emlib.preflight import data_inputs_fingerprint
from emlib.runfiles import CONFIG, METRICS, file_sha256, read_json, write_json

__all__ = ["RESULTS_ENV", "RESULTS_MANIFEST", "RESULTS_FORMAT", "PublishedResults", "PublishedNote", "export_results",
           "read_published", "published_rows", "provenance_note"]

#: The variable a book build sets for its chapters: the results folder they read instead of training.
RESULTS_ENV = "EMLIB_RESULTS"
#: The manifest's name in a results folder.
RESULTS_MANIFEST = "emlib-results.json"
#: The manifest's ``format``; :func:`read_published` refuses any other.
RESULTS_FORMAT = "emlib-results/1"
#: The only files a results folder holds (tables and records; never weights).
KEPT_SUFFIXES = (".json", ".csv")
#: Grid sub-folders never exported: caches of embeddings and features (tensors), job logs.
_SKIPPED = ("embeddings", "features", "logs")
#: Files that are weights or pickles: named as such when a results folder holds one.
_WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".npz", ".npy")
_MANIFEST_LIMIT = 64 << 20
#: The provenance of a profile's runs in the manifest, checked against their rows when the folder is read.
_PROVENANCE = ("runs", "commits", "machines", "weights_labels", "weights_fingerprints", "data_fingerprints")
_EXPORT = "emlib results export RUNS --into DIR"


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _grid_files(grid: Path, runs: set[str]) -> tuple[list[Path], list[Path]]:
    """The files of ``grid`` to export (finished runs' and the grid's own tables), and those left out."""
    kept, left = [], []
    for path in folder_files(grid):
        parts = path.relative_to(grid).parts
        skipped = parts[0] in _SKIPPED or any(p.startswith(".") for p in parts)
        in_run = len(parts) > 1 and ((grid / parts[0] / METRICS).is_file() or (grid / parts[0] / CONFIG).is_file())
        unfinished = in_run and parts[0] not in runs
        (left if skipped or unfinished or path.suffix not in KEPT_SUFFIXES else kept).append(path)
    return kept, left


def _profile_record(grid: Path, rows: pd.DataFrame) -> tuple[str, dict]:
    """The profile of a grid folder's rows and its provenance record for the manifest."""
    profiles = sorted(set(rows.get("profile", pd.Series(["custom"])).astype(str)))
    if len(profiles) != 1:
        raise ConfigError(f"{grid} holds runs of {len(profiles)} profiles ({', '.join(profiles)}); export one grid "
                          "folder per profile (emlib grid writes runs/<profile>)")

    def per_backbone(column: str) -> dict[str, str]:
        if column not in rows:
            return {}
        pairs = rows[["backbone", column]].dropna().astype(str).drop_duplicates()
        return {b: " | ".join(sorted(set(g[column]))) for b, g in pairs.groupby("backbone")}

    def values(column: str) -> list[str]:
        return sorted(set(rows[column].dropna().astype(str))) if column in rows else []

    machines = values("machine") or [f"device {d} (machine not recorded)" for d in values("device")]
    return profiles[0], {
        "runs": sorted(set(rows.run_id.astype(str))), "commits": values("git_commit") or ["unknown"],
        "machines": machines, "weights_labels": per_backbone("weights_label"),
        "weights_fingerprints": per_backbone("weights_fingerprint"), "data_fingerprints": values("data_fingerprint"),
    }


def export_results(
    runs: Sequence[str | os.PathLike[str]], into: str | os.PathLike[str], *, machine: str | None = None,
) -> PublishedResults:
    """Write a results folder from finished grid folders (see the module docstring); never their weights.

    Parameters
    ----------
    runs : sequence of path-like
        Grid folders, one per profile (``runs/paper``, what ``emlib grid`` writes); their finished runs
        are read first (:func:`~emlib.grid.runner.read_results`: damaged rows, or runs made on two data
        copies, are refused before anything is written).
    into : path-like
        A new or empty folder.
    machine : str, default=None
        Words for the machine the runs ran on (``"SLURM cluster, A100 80GB"``), kept beside the
        machine each row records.

    Returns
    -------
    PublishedResults
        The folder written, read back with :func:`read_published` (every SHA-256 checked).

    Raises
    ------
    ConfigError, DataError
        ``into`` is not new or empty; a grid folder is missing, has no finished run, mixes profiles or
        data copies, or two share a profile.
    """
    dest = Path(into).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"--into {dest} is not a new or empty folder; pass a new folder, e.g. --into {dest}-results")
    plans: dict[str, tuple[Path, dict, list[Path], list[Path]]] = {}
    for given in runs:
        grid = Path(given).expanduser()
        if not grid.is_dir():
            raise ConfigError(f"{grid} is not a folder of grid runs; pass the folder `emlib grid --out` wrote, e.g. runs/paper")
        rows = read_results(grid)  # every finished run's rows, checked; one data copy
        profile, record = _profile_record(grid, rows)
        if profile in plans:
            raise ConfigError(f"{plans[profile][0]} and {grid} both hold {profile!r} runs; export one folder per profile")
        kept, left = _grid_files(grid, set(record["runs"]))
        record["left_out"] = len(left)
        plans[profile] = (grid, record, kept, left)
    if not plans:
        raise ConfigError(f"no grid folder to export; pass at least one, e.g. `{_EXPORT}`")
    entries = []
    for profile, (grid, _, kept, _) in plans.items():
        for path in kept:
            name = f"{profile}/{path.relative_to(grid).as_posix()}"
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            entries.append({"path": name, "size": target.stat().st_size, "sha256": file_sha256(target)})
    manifest = {"format": RESULTS_FORMAT, "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "exported_with": git_commit(), "machine": machine,
                "profiles": {p: record for p, (_, record, _, _) in plans.items()}, "files": entries}
    write_json(dest / RESULTS_MANIFEST, manifest)
    return read_published(dest)


# --------------------------------------------------------------------------------------------
# read and check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedResults:
    """A results folder :func:`read_published` checked: its files are those its manifest lists.

    Attributes
    ----------
    root : Path
    manifest : dict
        ``created``, ``machine`` and, per profile, ``runs``, ``commits``, ``machines``,
        ``weights_labels``, ``weights_fingerprints``, ``data_fingerprints``.
    """

    root: Path
    manifest: dict = field(repr=False)

    @property
    def profiles(self) -> tuple[str, ...]:
        """The profiles whose runs the folder holds."""
        return tuple(sorted(self.manifest["profiles"]))

    def record(self, profile: str) -> dict:
        """The provenance record of ``profile``'s runs; ConfigError naming the profiles held when it has none."""
        if profile not in self.manifest["profiles"]:
            held = ", ".join(self.profiles)
            raise ConfigError(f"the results folder {self.root} holds runs of the {held} profile(s), not {profile!r}; "
                              f"build with the profile it holds (e.g. --profile {self.profiles[0].removesuffix('-dry')}"
                              f"{' --dry-run' if self.profiles[0].endswith('-dry') else ''}) or export {profile!r} runs")
        return self.manifest["profiles"][profile]

    def run_dir(self, cfg: RunConfig, profile: str) -> Path | None:
        """The folder of ``cfg``'s run in ``profile``'s runs (same run id and config), or None."""
        for name in self.record(profile)["runs"]:
            if name.rpartition("-")[0] not in (cfg.run_id, cfg.legacy_run_id):
                continue
            folder = self.root / profile / name
            recorded = read_json(folder / METRICS, fix=f"export the folder again (`{_EXPORT}`)").get("config")
            try:
                if RunConfig.from_dict(recorded).digest() == cfg.digest():
                    return folder
            except ConfigError:
                continue
        return None

    def table(self, profile: str, name: str) -> pd.DataFrame | None:
        """A table of ``profile``'s grid folder (``"latents/domain_report.csv"``), or None when not exported."""
        path = self.root / profile / name
        return pd.read_csv(path) if path.is_file() and path.suffix == ".csv" else None

    def summary(self) -> str:
        """One line: the folder, its profiles with their runs and commits."""
        parts = [f"{p}: {len(r['runs'])} runs at commit {', '.join(r['commits'])} on {', '.join(r['machines'])}"
                 for p, r in self.manifest["profiles"].items()]
        return f"{self.root} (exported {self.manifest.get('created')}): " + "; ".join(parts)


def _refuse(root: Path, what: str, fix: str = f"export it again with `{_EXPORT}`") -> DataError:
    return DataError(f"the results folder {root} {what}; {fix}")


def _manifest(root: Path) -> dict:
    path = root / RESULTS_MANIFEST
    if not path.is_file():
        raise _refuse(root, f"holds no {RESULTS_MANIFEST}, so `emlib results export` did not write it",
                      f"pass the folder `{_EXPORT}` wrote")
    if path.stat().st_size > _MANIFEST_LIMIT:
        raise _refuse(root, f"holds a {RESULTS_MANIFEST} too large to be one emlib wrote")
    try:
        manifest = json.loads(path.read_text())  # JSON only: nothing in the folder is unpickled
        files = {str(e["path"]): (int(e["size"]), str(e["sha256"])) for e in manifest["files"]}
        profiles = {str(p): dict(r) for p, r in manifest["profiles"].items()}
        for record in profiles.values():
            for key in ("runs", "commits", "machines", "data_fingerprints"):
                record[key] = [str(v) for v in record[key]]
            for key in ("weights_labels", "weights_fingerprints"):
                record[key] = {str(k): str(v) for k, v in record[key].items()}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise _refuse(root, f"holds a {RESULTS_MANIFEST} that cannot be read (damaged or not emlib's)") from None
    if manifest.get("format") != RESULTS_FORMAT:
        raise _refuse(root, f"is a {manifest.get('format')!r} folder, not {RESULTS_FORMAT}",
                      "read it with the emlib version that exported it, or export it again")
    return {**manifest, "files": files, "profiles": profiles}


def _check_files(root: Path, manifest: dict) -> None:
    """Every listed file present with its size and SHA-256, nothing else, nothing but JSON and CSV."""
    listed = manifest["files"]
    for name in listed:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name or path.suffix not in KEPT_SUFFIXES:
            raise _refuse(root, f"lists {name!r}, which is not a table or record inside it")
    for path in folder_files(root):
        name = path.relative_to(root).as_posix()
        if name == RESULTS_MANIFEST:
            continue
        if path.suffix in _WEIGHTS_SUFFIXES:
            raise _refuse(root, f"holds {name}, a weights or pickle file, and a results folder holds no weights",
                          f"delete {path} (nothing reads it) or export the folder again with `{_EXPORT}`")
        if name not in listed:
            raise _refuse(root, f"holds {name}, which its manifest does not list (it changed after export)")
    for name, (size, sha) in listed.items():
        path = root / name
        if not path.is_file():
            raise _refuse(root, f"lacks {name}, which its manifest lists (it is incomplete)", "copy it again")
        if path.stat().st_size != size or file_sha256(path) != sha:
            raise _refuse(root, f"holds {name} changed after export (its SHA-256 is not the manifest's)", "copy it again")
    for profile, record in manifest["profiles"].items():
        for run in record["runs"]:
            if f"{profile}/{run}/{METRICS}" not in listed:
                raise _refuse(root, f"lists the run {profile}/{run} without its {METRICS}")


def read_published(folder: str | os.PathLike[str]) -> PublishedResults:
    """Check a results folder and read its manifest (JSON only); seconds, before any work.

    Raises
    ------
    DataError
        Not a folder; no manifest or one of another format; a file missing, changed (SHA-256), not listed,
        or not JSON/CSV (a weights file is named as such): one sentence naming the fix.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"the results folder {root} is not a folder; pass the folder `{_EXPORT}` wrote")
    manifest = _manifest(root)
    _check_files(root, manifest)
    results = PublishedResults(root, manifest)
    for profile in results.profiles:  # every run's rows are records of this run (saved_rows' checks) ...
        record = results.record(profile)
        try:
            rows = pd.concat([saved_rows(root / profile / run) for run in record["runs"]], ignore_index=True)
        except DataError as err:
            raise _refuse(root, f"holds a run whose rows cannot be read ({str(err).split(';')[0]})") from None
        name, recorded = _profile_record(root / profile, rows)
        if name != profile:
            raise _refuse(root, f"lists as {profile} runs whose rows say they are {name} runs (it was edited after export)")
        for key in _PROVENANCE:  # ... and the provenance the notes show is what the rows say
            if recorded[key] != record[key]:
                raise _refuse(root, f"has a manifest whose {key.replace('_', ' ')} of {profile} are not those its runs' "
                              "rows record (it was edited after export)")
    return results


def published_rows(
    results: PublishedResults, configs: Sequence[RunConfig], profile: str,
) -> tuple[dict[int, pd.DataFrame], list[int]]:
    """The rows of the runs of ``configs`` found in ``results`` (index -> rows) and the indices of those not there."""
    found, missing = {}, []
    for i, cfg in enumerate(configs):
        folder = results.run_dir(cfg, profile)
        if folder is None:
            missing.append(i)
        else:
            found[i] = saved_rows(folder)
    return found, missing


# --------------------------------------------------------------------------------------------
# provenance on the page
# --------------------------------------------------------------------------------------------


@dataclass
class PublishedNote:
    """Where a page's published results come from, and what about them does not match this book.

    Displayed, it is an admonition: a note listing the folder, profile, commits, machines and
    weights labels; a **warning** (class ``emlib-published-mismatch``) with one sentence per
    mismatch when :attr:`problems` is not empty.
    """

    folder: str
    profile: str
    runs: int
    commits: list[str]
    commit_here: str
    machines: list[str]
    weights_labels: dict[str, str]
    created: str
    problems: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """True when the folder's commit, data and weights are this book's (no :attr:`problems`)."""
        return not self.problems

    def title(self) -> str:
        if self.problems:
            return "Published results that do not match this book"
        return "Published results: computed elsewhere, read by this build"

    def lines(self) -> list[str]:
        """The provenance, one line each: folder, commits, machines, then each backbone's weights label."""
        out = [f"{self.runs} runs of the `{self.profile}` profile, read from the results folder `{self.folder}` "
               f"(exported {self.created}), not trained by this build",
               f"commit: {', '.join(self.commits)} (this book: {self.commit_here})",
               f"machine: {', '.join(self.machines)}"]
        out += [f"weights of {name}: {_file_only(label)}" for name, label in sorted(self.weights_labels.items())]
        return out

    def text(self) -> str:
        """The note as plain text: title, provenance lines, then problems and remarks."""
        lines = [self.title(), *(f"- {line}" for line in self.lines())]
        lines += [f"- WARNING: {p}" for p in self.problems] + [f"- {r}" for r in self.remarks]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        def item(text: str, strong: bool = False) -> str:
            parts = html.escape(text).split("`")
            body = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
            return f"<li>{'<strong>' + body + '</strong>' if strong else body}</li>"

        kind = "warning emlib-published-mismatch" if self.problems else "note"
        items = "".join(item(p, strong=True) for p in self.problems) + "".join(item(line) for line in self.lines())
        items += "".join(item(r) for r in self.remarks)
        return (f'<div class="admonition {kind} emlib-published"><p class="admonition-title">'
                f'{html.escape(self.title())}</p><ul>{items}</ul></div>')


#: The folder of a local weights file in a weights label (``from /home/me/.cache/torch/.../file.pth``): a page names the file only.
_LOCAL_FOLDER = re.compile(r"from (/[^\s]*/)([^/\s]+)")


def _file_only(label: str) -> str:
    """A weights label with the folder of a local file left out.

    Examples
    --------
    >>> _file_only("pretrained (lvd142m) from /home/me/w/dinov2.pth sha256:1a2b")
    'pretrained (lvd142m) from dinov2.pth sha256:1a2b'
    >>> _file_only("pretrained (lvd142m) from hf:timm/vit_small/model.safetensors sha256:1a2b")
    'pretrained (lvd142m) from hf:timm/vit_small/model.safetensors sha256:1a2b'
    """
    return _LOCAL_FOLDER.sub(r"from \2", label)


def _same_commit(a: str, b: str) -> bool:
    return "unknown" not in (a, b) and bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def provenance_note(
    results: PublishedResults, profile: str, *, commit: str | None = None, root: str | os.PathLike[str] | None = None,
    backbones: Sequence[str] | None = None,
) -> PublishedNote:
    """The note a page using ``results`` shows: provenance, and every mismatch with this book, never silent.

    Parameters
    ----------
    results : PublishedResults
    profile : str
    commit : str, default=None
        This book's commit (None: :func:`~emlib.grid.runner.git_commit` of this checkout).
    root : path, default=None
        The data root here, whose fingerprint is compared with the folder's.
    backbones : sequence of str, default=None
        Compare only these backbones' weights (None: every one the folder records).
    """
    record = results.record(profile)
    here = commit or git_commit()
    problems, remarks = [], []
    if not any(_same_commit(c, here) for c in record["commits"]):
        problems.append(f"The results were computed at commit {', '.join(record['commits'])}, not at this book's "
                        f"commit {here}: the code that made them may differ from the code shown here.")
    try:
        data_here = data_inputs_fingerprint(root=root)
    except EmlibError as err:
        problems.append(f"The data here could not be fingerprinted ({str(err).split(';')[0]}), so the results' data "
                        "cannot be compared with it.")
    else:
        if data_here not in record["data_fingerprints"]:
            made_on = ", ".join(fp[-12:] for fp in record["data_fingerprints"]) or "not recorded"
            problems.append(f"The results were computed on other data (data fingerprint ...{made_on}) than the data "
                            f"here (...{data_here[-12:]}): their numbers are not of the data this book reads.")
    wanted = record["weights_fingerprints"] if backbones is None else {
        b: fp for b, fp in record["weights_fingerprints"].items() if b in backbones}
    for name, recorded in sorted(wanted.items()):
        if recorded in ("none", "random"):
            continue
        try:
            local = find_weights(name).fingerprint
        except (WeightsError, ConfigError):
            remarks.append(f"The weights of {name} are not on this machine, so their fingerprint is not compared "
                           f"(recorded: {recorded[:40]}).")
            continue
        if local not in recorded.split(" | "):
            problems.append(f"The weights of {name} here (fingerprint {local[:40]}) are not those the results were "
                            f"computed with ({recorded[:40]}).")
    machines = list(record["machines"]) + ([results.manifest["machine"]] if results.manifest.get("machine") else [])
    return PublishedNote(folder=results.root.name, profile=profile, runs=len(record["runs"]), commits=record["commits"],
                         commit_here=here, machines=machines, weights_labels=record["weights_labels"],
                         created=str(results.manifest.get("created")), problems=problems, remarks=remarks)
