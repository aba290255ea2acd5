"""The one-command build: every chapter executed, then ``jupyter-book build`` with execution off.

``python -m emlib.book build --profile smoke`` (or :func:`build_book`)

1. executes each chapter listed in the table of contents with papermill
   (:func:`emlib.book.execute.execute_chapter`) into ``book/chapters/<name>.ipynb``, printing one
   progress line per code cell (chapter, cell, elapsed seconds),
2. writes the one copy of plotly.js the pages load (``book/chapters/_static/plotly.min.js``) and
   the chapter timings (``book/chapters/timings.json`` and ``timings.md``, which the instructor's
   guide includes: its time per chapter is this build's own, never typed in),
Before any of it, in seconds, it refuses (one sentence each): a ``-p`` parameter no chapter's
parameters cell declares, or of another type, or ``-p profile=...`` (:mod:`emlib.book.parameters`);
missing weights (:func:`check_chapter_weights`); an ``--out`` that holds files emlib did not make,
or lies in the book's sources (:func:`check_out`). A build with ``--out`` writes only there: its
chapters' runs too (``out_dir`` resolves under ``--out``).

With ``--edition student`` the executed chapters lose every ``{solution}`` block before the HTML is
built (:mod:`emlib.book.edition`); the default, ``answer-key``, keeps them in dropdowns.

3. runs ``jupyter-book build`` with execution off (the book never runs code itself) on a copy of
   ``_config.yml`` naming the repository the book comes from (:mod:`emlib.book.repository`), and
4. with ``--check`` opens every page in headless Chromium (:func:`emlib.book.check.check_book`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from plotly.offline import get_plotlyjs

from emlib.book.check import CHROMIUM, CheckReport, check_book
from emlib.book.edition import DEFAULT_EDITION, check_edition, edition_sphinx_config, strip_notebook_solutions
from emlib.book.execute import CellProgress, execute_chapter, read_notebook_source
from emlib.book.exercises import solution_cells
from emlib.book.parameters import ChapterParameter, chapter_parameters, check_parameters, parameters_for
from emlib.book.published import check_results, results_environment, served_chapters
from emlib.book.repository import BookSource, resolve_source, write_book_config
from emlib.book.sphinx import PARTIAL_ENV
from emlib.book.toc import CHAPTER_DIR, SOURCE_DIR, BookError, find_root, list_chapters, write_toc_subset
from emlib.config import Profile, get_profile
from emlib.errors import WeightsError
from emlib.models.hub import find_weights
from emlib.models.weights import WEIGHTS_ENV
from emlib.paths import user_path

__all__ = ["STATIC_DIR", "TIMINGS", "OUT_MARKER", "BuildReport", "build_book", "check_chapter_weights", "check_out",
           "claim_out", "chapter_parameter_values", "write_timings", "timings_markdown"]

_T = TypeVar("_T")

#: Shared static files of the built book (one copy of plotly.js), relative to the book root.
STATIC_DIR = "book/chapters/_static"
#: The chapter timings of the last build (JSON), next to the executed chapters; ``.md`` beside it.
TIMINGS = "book/chapters/timings.json"
#: The file that marks a folder an ``emlib book build --out`` made (a later build may write there again).
OUT_MARKER = ".emlib-build"
#: The chapter parameter naming the folder of the chapter's runs.
OUT_DIR_PARAMETER = "out_dir"


def _machine() -> dict[str, Any]:
    """Where the chapters ran: CPU cores, and the GPU's name when there is one."""
    import torch  # a dependency of emlib; imported here so the build's other steps stay light

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cores": os.cpu_count() or 1, "gpu": gpu}


def _chapter_title(source: Path) -> str:
    for line in source.read_text().splitlines():
        m = re.match(r"#\s+#\s+(.+)", line)
        if m:
            return m.group(1).strip()
    return source.stem


def _machine_key(profile: str, machine: Mapping[str, Any]) -> str:
    """The key of a full build's record: its profile and machine (``smoke on 2-core CPU``)."""
    return f"{profile} on {_where(machine)}"


def _where(machine: Mapping[str, Any]) -> str:
    return f"{machine['gpu']} GPU" if machine.get("gpu") else f"{machine['cores']}-core CPU"


def write_timings(book_root: Path, root: Path, profile: str, seconds: Mapping[str, float], *,
                  partial: str | None = None) -> Path:
    """Record this build's seconds per chapter in ``book/chapters/timings.json`` (and ``timings.md``).

    The file keeps the last **full** build per profile and machine (``"full"``, each with its date
    and machine): a build of every chapter that trained its own runs. A ``partial`` build (a reason
    such as ``"--only"`` or ``"reused runs"``) never overwrites those, since its seconds say little
    of what a fresh build costs; it is kept as ``"latest"`` and shown only while its profile and
    machine have no full build, chapters it did not execute keeping the seconds of an earlier
    partial build there (marked as such). The Markdown table is what the instructor's guide shows.

    Parameters
    ----------
    book_root, root : Path
        Where the build writes (``book/chapters/timings.json``), and the repository (chapter titles).
    profile : str
    seconds : dict of str to float
        Chapter name -> seconds its execution took.
    partial : str, default=None
        Why this build is not a full one; None when it is.

    Returns
    -------
    Path
        The JSON record.
    """
    path = book_root / TIMINGS
    machine = _machine()
    old = json.loads(path.read_text()) if path.is_file() else {}
    builds = dict(old.get("full") or {}) if "full" in old else {}
    latest = old.get("latest") or {}
    same = latest.get("profile") == profile and latest.get("machine") == machine and partial is not None
    chapters = {name: {"title": _chapter_title(root / SOURCE_DIR / f"{name}.py"), "seconds": None, "earlier": False}
                for name in list_chapters(root)}
    for name, entry in (latest.get("chapters") or {}).items() if same else ():
        if name in chapters and entry.get("seconds") is not None:
            chapters[name].update(seconds=entry["seconds"], earlier=True)
    for name, sec in seconds.items():
        chapters[name].update(seconds=round(float(sec), 1), earlier=False)
    record = {"profile": profile, "machine": machine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "partial": partial, "chapters": chapters}
    if partial is None:
        builds[_machine_key(profile, machine)] = record
    data = {"full": builds, "latest": record}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    path.with_suffix(".md").write_text(timings_markdown(data))
    return path


def _timings_table(record: Mapping[str, Any]) -> str:
    """One build's table: seconds per chapter on its profile and machine, and the Colab T4 column."""
    machine = record["machine"]
    t4 = "T4" in str(machine.get("gpu") or "") and record["profile"] == "quick"
    head = f"`{record['profile']}` profile, {_where(machine)} (s)"
    lines = [f"| chapter | {head} | Colab T4, `quick` profile (s) |", "|---|---:|---:|"]
    total = 0.0
    for entry in record["chapters"].values():
        sec = entry.get("seconds")
        total += sec or 0.0
        shown = "not built yet" if sec is None else f"{sec:.0f}" + (" (earlier build)" if entry.get("earlier") else "")
        lines.append(f"| {entry['title']} | {shown} | {shown if t4 else 'not measured yet'} |")
    lines.append(f"| **all chapters** | **{total:.0f}** | {f'{total:.0f}' if t4 else 'not measured yet'} |")
    return "\n".join(lines) + "\n"


def timings_markdown(data: Mapping[str, Any]) -> str:
    """The timings tables of the instructor's guide, from :func:`write_timings`' record.

    One table per full build (profile and machine), each headed with its date; the latest build
    when it was partial and its profile and machine have no full build yet, saying so.
    """
    command = "python -m emlib.book build --profile {}"
    parts = []
    for key, record in sorted((data.get("full") or {}).items()):
        parts.append(f"Measured by the full build of {record['date']} on a {_where(record['machine'])} "
                     f"(`{command.format(record['profile'])}`), seconds to execute each chapter, training "
                     f"included:\n\n" + _timings_table(record))
    latest = data.get("latest")
    if latest and latest.get("partial") and _machine_key(latest["profile"], latest["machine"]) not in (data.get("full") or {}):
        parts.append(f"No full `{latest['profile']}` build on a {_where(latest['machine'])} yet; the partial build "
                     f"of {latest['date']} ({latest['partial']}), so these seconds understate a fresh build:\n\n"
                     + _timings_table(latest))
    return "\n".join(parts) if parts else "No build has measured the chapters yet.\n"


def _write_static(book_root: Path) -> Path:
    """Write the one copy of plotly.js the book pages load (``book/chapters/_static/plotly.min.js``)."""
    static = book_root / STATIC_DIR
    static.mkdir(parents=True, exist_ok=True)
    target = static / "plotly.min.js"
    js = get_plotlyjs()
    if not target.is_file() or target.stat().st_size != len(js.encode()):
        target.write_text(js)
    return target


#: Calls by which a chapter trains or embeds with its own backbone: without that backbone's weights it has
#: nothing to show. (Chapter 2 only compares backbones; it leaves a missing one out, with a note on the page.)
_NEEDS_WEIGHTS = re.compile(r"\b(chapter_runs|latent_diagnostics|latent_table|load_backbone_for_latents|create_backbone|"
                            r"run_alignment_grid)\(")


def check_chapter_weights(root: Path, chapters: Sequence[str], profile: Profile | str,
                          parameters: Mapping[str, Any] | None = None) -> None:
    """Raise BookError, before any chapter runs, when a chapter needs pretrained weights this machine lacks.

    A chapter that trains or embeds with its backbone (the profile's, or ``-p backbone=...``) cannot
    run without that backbone's weights; the check looks for them the way the chapter will
    (:func:`emlib.models.hub.find_weights`, with ``-p weights_dir=...`` as ``$EMLIB_WEIGHTS``), and
    takes seconds offline. Profiles with random weights (smoke) need none.
    """
    prof = get_profile(profile)
    params = dict(parameters or {})
    needing = [name for name in chapters if _NEEDS_WEIGHTS.search((root / SOURCE_DIR / f"{name}.py").read_text())]
    if not prof.base.pretrained or not needing:
        return
    backbone = params.get("backbone") or prof.base.backbone
    saved = os.environ.get(WEIGHTS_ENV)
    try:
        if params.get("weights_dir"):
            os.environ[WEIGHTS_ENV] = str(user_path(str(params["weights_dir"])))
        find_weights(backbone)
    except WeightsError as err:
        why = err.why.rstrip(".")
        raise BookError(
            f"{', '.join(needing)} train with {backbone}, and {why}; run `emlib weights fetch {backbone}` where there "
            f"is internet, or pass `-p weights_dir=FOLDER` with its file, or build only chapters that need no weights "
            f"(`--only` without them: chapter 2 leaves a backbone without weights out, with a note)"
        ) from None
    finally:
        if saved is None:
            os.environ.pop(WEIGHTS_ENV, None)
        else:
            os.environ[WEIGHTS_ENV] = saved


@dataclass
class BuildReport:
    """What :func:`build_book` did: where things are and how long each step took (seconds)."""

    book_root: Path
    html_dir: Path
    chapters: list[str]
    notebooks: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    check: CheckReport | None = None
    book_source: BookSource | None = None

    def summary(self) -> str:
        """One line per step."""
        lines = [f"{step}: {sec:.1f} s" for step, sec in self.timings.items()]
        lines.append(f"html: {self.html_dir / 'index.html'}")
        if self.check is not None:
            lines.append(self.check.summary())
        return "\n".join(lines)


def check_out(root: Path, out: str | os.PathLike[str]) -> Path:
    """The resolved ``--out`` folder; raise BookError, before anything is written, where a build may not write.

    ``out`` must be new, empty, or a folder an earlier build made (it holds :data:`OUT_MARKER`);
    it may not be the repository, hold it, or lie in the book's sources (``book/``, ``notebooks/``),
    which the build copies from.
    """
    path = Path(out).expanduser().resolve()
    elsewhere = Path(tempfile.gettempdir()) / "emlib-build"
    if path == root or path in root.parents:
        raise BookError(f"--out {path} {'is' if path == root else 'holds'} the repository {root}, whose own files the "
                        f"build would overwrite; pass a new or empty folder (e.g. --out {elsewhere}), or leave --out "
                        "out to build in the repository")
    for source in (root / "book", root / SOURCE_DIR):
        if path == source or source in path.parents:
            raise BookError(f"--out {path} lies in the book's sources ({source}), which the build copies from; pass a "
                            f"folder outside {root / 'book'} and {root / SOURCE_DIR}, e.g. --out {elsewhere}")
    if path.exists() and not path.is_dir():
        raise BookError(f"--out {path} is a file, not a folder; pass a new or empty folder, e.g. --out {elsewhere}")
    try:
        held = sorted(p.name for p in path.iterdir()) if path.is_dir() and not (path / OUT_MARKER).exists() else []
    except OSError as err:
        raise BookError(f"--out {path} cannot be read ({err.strerror}); pass a folder you can write to, "
                        f"e.g. --out {elsewhere}") from None
    if held:
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
        raise BookError(f"--out {path} already holds files emlib did not make ({shown}), which the build would "
                        f"overwrite; pass a new or empty folder (e.g. --out {elsewhere}), or one an earlier "
                        "`emlib book build --out` made")
    return path


def claim_out(out: Path) -> None:
    """Create ``out`` with its :data:`OUT_MARKER` (so a later build may write there again)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / OUT_MARKER).write_text("Made by `emlib book build --out`; a later build with this --out may "
                                      "overwrite what is here.\n")
    except OSError as err:
        raise BookError(f"--out {out} cannot be created ({err.strerror}); pass a folder you can write to") from None


def chapter_parameter_values(
    declared: Mapping[str, Mapping[str, ChapterParameter]], parameters: Mapping[str, Any], *, root: Path,
    book_root: Path,
) -> dict[str, dict[str, Any]]:
    """The parameters of each chapter: those its cell declares; out of tree, its ``out_dir`` under ``book_root``.

    A relative ``out_dir`` (the cell's default ``runs``, or ``-p out_dir=...``) resolves against the
    book root, so a build with ``--out`` writes its runs there, never into the repository.
    """
    per_chapter = {}
    for name, params in declared.items():
        chosen = parameters_for(parameters, params)
        if book_root != root and OUT_DIR_PARAMETER in params:
            folder = Path(str(chosen.get(OUT_DIR_PARAMETER, params[OUT_DIR_PARAMETER].default))).expanduser()
            chosen[OUT_DIR_PARAMETER] = str(folder if folder.is_absolute() else book_root / folder)
        per_chapter[name] = chosen
    return per_chapter


def _found_runs(per_chapter: Mapping[str, Mapping[str, Any]], declared: Mapping[str, Mapping[str, ChapterParameter]],
                *, cwd: Path) -> bool:
    """Whether the chapters' run folders (``out_dir``) already hold a finished run (a ``metrics.json``).

    Chapters read finished runs back instead of training them, so a build that starts with one
    measures less than a fresh build does: :func:`write_timings` keeps it apart from full builds.
    """
    for name, params in per_chapter.items():
        if OUT_DIR_PARAMETER not in declared.get(name, {}):
            continue
        folder = Path(str(params.get(OUT_DIR_PARAMETER, declared[name][OUT_DIR_PARAMETER].default))).expanduser()
        folder = folder if folder.is_absolute() else cwd / folder
        if folder.is_dir() and next(folder.rglob("metrics.json"), None) is not None:
            return True
    return False


def _stage(root: Path, out: Path) -> None:
    """Copy the book's own files (config, toc, front matter) into ``out`` for an out-of-tree build."""
    claim_out(out)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, out / name)
    chapters = (root / CHAPTER_DIR).resolve()
    for path in (root / "book").rglob("*"):
        if path.is_file() and chapters not in path.resolve().parents:
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _jupyter_book(book_root: Path, toc: Path | None, *, strict: bool, config: Path | None = None) -> None:
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(book_root)]
    if config is not None:  # the generated _config.yml with the derived repository (write_book_config)
        cmd += ["--config", str(config)]
    if toc is not None:
        cmd += ["--toc", str(toc)]
    if strict:
        cmd += ["-W", "--keep-going"]
    log = book_root / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({PARTIAL_ENV: "1"} if toc is not None else {})}  # --only: links to left-out chapters
    proc = subprocess.run(cmd, cwd=book_root, capture_output=True, text=True, env=env)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + "\n" + proc.stderr)
    log.write_text(text)
    if proc.returncode != 0:
        problems = [line.strip() for line in text.splitlines() if re.search(r"(WARNING|ERROR|Error|Exception)", line)]
        first = problems[0] if problems else (text.strip().splitlines() or ["no output"])[-1]
        raise BookError(
            f"jupyter-book build failed ({len(problems)} warnings/errors; warnings count as errors): "
            f"{first[:300]}; full log: {log}"
        )


def _quiet(*args: Any, **kwargs: Any) -> None:
    """``print`` when ``progress=False``: nothing."""


def _timed(say: Callable[..., None], message: str, step: Callable[[], _T]) -> tuple[_T, float]:
    """Say ``message``, run ``step``; returns what it returns and its seconds (the message included)."""
    t0 = time.perf_counter()
    say(message, flush=True)
    value = step()
    return value, time.perf_counter() - t0


def _execute_chapters(
    root: Path, book_root: Path, chapters: Sequence[str], *, profile: Profile,
    parameters: Mapping[str, Mapping[str, Any]], progress: bool, book_source: BookSource, solutions: bool = False,
) -> tuple[dict[str, Path], dict[str, float]]:
    """Execute each chapter into ``book_root/book/chapters`` (``parameters``: each chapter's own): the notebooks,
    and the seconds of each (``execute <name>``)."""
    say = print if progress else _quiet
    notebooks: dict[str, Path] = {}
    timings: dict[str, float] = {}
    for i, name in enumerate(chapters, start=1):
        t0 = time.perf_counter()
        say(f"[{i}/{len(chapters)}] executing {SOURCE_DIR}/{name}.py (profile {profile.name}) ...", flush=True)
        source = root / SOURCE_DIR / f"{name}.py"
        nb = read_notebook_source(source)
        extra = len(solution_cells(nb, chapter=name)) if solutions else 0  # the solutions run after the chapter
        counter = CellProgress(name, sum(c.cell_type == "code" for c in nb.cells) + 1 + extra)
        notebooks[name] = execute_chapter(
            source,
            book_root / CHAPTER_DIR / f"{name}.ipynb",
            profile=profile,
            parameters=parameters[name],
            cwd=root,
            progress=counter if progress else False,
            book_source=book_source,
            solutions=solutions,
        )
        timings[f"execute {name}"] = time.perf_counter() - t0
    return notebooks, timings


def build_book(
    root: str | os.PathLike[str] | None = None,
    *,
    profile: Profile | str = "smoke",
    only: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    strict: bool = True,
    check: bool = False,
    chromium: str = CHROMIUM,
    progress: bool = True,
    dry_run: bool = False,
    repository: str | None = None,
    commit: str | None = None,
    edition: str = DEFAULT_EDITION,
    solutions: bool = False,
    results: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """Execute the chapters and build the HTML book; optionally run the browser check.

    Parameters
    ----------
    root : path, default=None
        Repository root (found from the cwd when None).
    profile : Profile or str, default='smoke'
        Passed to every chapter as ``-p profile <profile>``.
    dry_run : bool, default=False
        Build the profile's dry run instead (``quick`` -> ``quick-dry``, :meth:`emlib.config.Profile.dry_run`):
        the same chapters and code paths at a small size, every page under a dry-run banner. Same as
        ``profile="quick-dry"``.
    only : sequence of str, default=None
        Build only these chapters (names such as ``01_data``); the other chapter pages are
        left out of this build's table of contents.
    out : path, default=None
        Build in this folder instead of the repository (config, toc and front matter are copied
        there; executed notebooks go to ``out/book/chapters``, the HTML to ``out/_build/html``, the
        chapters' runs to ``out/runs``). It must be new, empty or made by an earlier build, and
        outside the book's sources (:func:`check_out`).
    parameters : dict, default=None
        Extra papermill parameters (e.g. ``{"seed": 1}``), each declared by a chapter's parameters
        cell and of its type (:mod:`emlib.book.parameters`); a chapter gets those it declares. Never
        ``profile`` (use ``profile=``). A relative ``out_dir`` resolves against ``out``.
    strict : bool, default=True
        Sphinx warnings fail the build (``-W --keep-going``).
    check : bool, default=False
        Run :func:`check_book` after the build.
    chromium : str, default='/usr/bin/chromium'
        Browser for the check.
    progress : bool, default=True
        Print one line per step, and one per code cell while a chapter runs.
    repository, commit : str, default=None
        The repository (``OWNER/NAME``) the badges, banners and theme buttons link to, and the
        commit recorded with it; None derives them (``$GITHUB_REPOSITORY``/``$GITHUB_SHA``, else
        the clone's ``origin``/``HEAD``: :func:`~emlib.book.repository.resolve_source`).
    edition : {'answer-key', 'student'}, default='answer-key'
        ``student``: every ``{solution}`` block is cut out of the executed chapters and Sphinx hides
        any left (:mod:`emlib.book.edition`); ``answer-key``: solutions in dropdowns, as online.
    solutions : bool, default=False
        Also run every exercise solution's code, in its chapter's kernel after the chapter's last cell
        (:mod:`emlib.book.exercises`); a failing one fails the build, naming the exercise. The pages
        are the same either way (the solution cells are not kept). The test suite's smoke build does this.
    results : path, default=None
        A results folder made elsewhere (``emlib results export``): checked first; the chapters that show
        only tables (chapter 7) read the runs found there instead of training them, and say so on the page
        (:mod:`emlib.book.published`).

    Returns
    -------
    BuildReport

    Raises
    ------
    ConfigError, BookError
        Before anything is written or run: an unknown profile or chapter, a parameter no chapter
        declares or of another type, missing weights, an ``out`` that is not new, empty or emlib's.
    """
    prof = get_profile(profile, dry_run=dry_run)  # resolved once; the object travels
    check_edition(edition)
    root = find_root() if root is None else Path(root).resolve()
    book_source = resolve_source(root, repository=repository, commit=commit)
    chapters = list_chapters(root, only=only)
    declared = {name: chapter_parameters(read_notebook_source(root / SOURCE_DIR / f"{name}.py")) for name in chapters}
    check_parameters(parameters or {}, declared, profile=prof.name)  # before any work: one sentence, in seconds
    published = check_results(results, prof) if results is not None else None
    served = served_chapters(root, chapters, published, prof, parameters, needs=_NEEDS_WEIGHTS) if published else []
    check_chapter_weights(root, [c for c in chapters if c not in served], prof, parameters)
    book_root = check_out(root, out) if out else root
    per_chapter = chapter_parameter_values(declared, parameters or {}, root=root, book_root=book_root)
    if out:
        _stage(root, book_root)
    say = print if progress else _quiet
    reused = _found_runs(per_chapter, declared, cwd=root)  # before the chapters train: a build that reuses runs is no full timing
    with results_environment(published):
        notebooks, timings = _execute_chapters(
            root, book_root, chapters, profile=prof, parameters=per_chapter, progress=progress, book_source=book_source,
            solutions=solutions,
        )
    if edition == "student":
        for path in notebooks.values():
            strip_notebook_solutions(path)
    _write_static(book_root)
    write_timings(book_root, root, prof.name, {name: timings[f"execute {name}"] for name in chapters},
                  partial="--only" if only else "published results" if published else "reused runs" if reused else None)
    toc = write_toc_subset(book_root, chapters) if only else None
    _, timings["jupyter-book build"] = _timed(
        say, "jupyter-book build (execution off) ...",
        lambda: _jupyter_book(book_root, toc, strict=strict, config=write_book_config(
            book_root, book_source, sphinx_config=edition_sphinx_config(edition))),
    )
    report = BuildReport(book_root, book_root / "_build" / "html", chapters, notebooks, timings, book_source=book_source)
    if check:
        report.check, timings["browser check"] = _timed(
            say, "browser check ...",
            lambda: check_book(report.html_dir, toc=toc or book_root / "_toc.yml", root=book_root, chromium=chromium),
        )
    return report
