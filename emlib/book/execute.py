"""One chapter, executed: jupytext reads the source, papermill runs it, the result is made ready for the book.

:func:`execute_chapter` runs ``notebooks/<name>.py`` once with papermill (``-p profile <profile>``)
into ``book/chapters/<name>.ipynb``; the kernel gets ``PLOTLY_RENDERER`` so plotly writes HTML the
static book can show. While it runs, one progress line per code cell says which chapter and cell
run and for how long (:class:`CellProgress`); the kernel logs only errors, so the expected
"Kernel is running over TCP without encryption" warning stays out. :func:`postprocess_notebook`
then tags the ``injected-parameters`` cell ``remove-cell``, puts an "Open in Colab" badge under
the title (its address derived by :mod:`emlib.book.repository`, never typed in) and, for profiles without pretrained weights, a banner naming the profile and the
weights with a link to the online edition; it drops the plotly.js bundle (the book serves one copy
from ``_static``) and the MathJax-from-CDN tags. A failing cell becomes one line naming the
chapter, the cell and where the partial notebook is.

Colab opens notebooks, not ``.py`` files: the workflow publishes ``.ipynb`` copies, their install
pinned to the built commit (``python -m emlib.book export``, :mod:`emlib.book.publish`), to the
``notebooks`` branch at the same paths the book pages have, so both the badge and the theme's Colab
launch button open them.

jupytext, papermill and nbformat come with the ``[book]`` extra; they are imported where they are
used, so ``emlib`` works without them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from emlib.book.exercises import SOLUTION_TAG, SOLUTIONS_METADATA, solution_cells
from emlib.book.parameters import PROFILE_PARAMETER, chapter_parameters, check_injection, check_parameters
from emlib.book.repository import NOTEBOOKS_BRANCH, BookSource, resolve_source
from emlib.book.toc import BookError
from emlib.config import BUILD_ENV, Profile, get_profile
from emlib.paths import pin_env_paths

__all__ = [
    "PLOTLY_RENDERER",
    "KERNEL_ARGUMENTS",
    "CellProgress",
    "colab_url",
    "colab_badge_markdown",
    "profile_banner_markdown",
    "read_notebook_source",
    "execute_chapter",
    "postprocess_notebook",
    "strip_solutions",
]

#: Plotly renderer for the papermill kernel: the JSON for Jupyter plus HTML for the static book.
PLOTLY_RENDERER = "plotly_mimetype+notebook"
#: Extra kernel arguments: log errors only (ipykernel 7 warns on every start that its local TCP
#: sockets are unencrypted, which is expected for a kernel papermill starts on this machine).
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=ERROR",)


def colab_url(name: str, *, book_source: BookSource | None = None, branch: str = NOTEBOOKS_BRANCH) -> str:
    """Colab address of chapter ``name`` as published on the notebooks branch.

    Parameters
    ----------
    name : str
        Chapter name, e.g. ``01_data``.
    book_source : BookSource, default=None
        The book's repository; None derives it (:func:`~emlib.book.repository.resolve_source`).
    branch : str, default='notebooks'

    Examples
    --------
    >>> colab_url("01_data", book_source=BookSource("Someone/emlib"))
    'https://colab.research.google.com/github/Someone/emlib/blob/notebooks/book/chapters/01_data.ipynb'
    """
    return (book_source or resolve_source()).colab_url(name, branch=branch)


def _badge_svg() -> str:
    """A small self-contained "Open in Colab" badge (no external image, so it works offline)."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">'
        '<rect width="117" height="20" rx="3" fill="#555"/>'
        '<rect x="45" width="72" height="20" rx="3" fill="#F9AB00"/><rect x="45" width="6" height="20" fill="#F9AB00"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        '<text x="8" y="14">Open</text></g>'
        '<g fill="#202124" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        '<text x="52" y="14">in Colab</text></g></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def colab_badge_markdown(name: str, *, book_source: BookSource | None = None) -> str:
    """Markdown (raw HTML) of the "Open in Colab" badge of chapter ``name`` (``book_source``: as in :func:`colab_url`)."""
    return (
        f'<a class="colab-badge" href="{colab_url(name, book_source=book_source)}" target="_blank" rel="noopener">'
        f'<img src="{_badge_svg()}" alt="Open in Colab" width="117" height="20"/></a>'
    )



def profile_banner_markdown(profile: Profile | str, *, online: str | None = None) -> str:
    """The banner of a chapter built with a profile that has no pretrained weights ("" otherwise).

    It names the profile, its backbone and weights, says what its numbers are (and are not), and
    links to the online edition, built with pretrained weights (``online``; None derives it,
    :attr:`~emlib.book.repository.BookSource.online_edition`).

    Examples
    --------
    >>> "random weights" in profile_banner_markdown("smoke"), profile_banner_markdown("quick")
    (True, '')
    """
    prof = get_profile(profile)
    online = online or resolve_source().online_edition
    if prof.is_dry_run:  # quick-dry, paper-dry: the real code path at a small size, for CI
        return (
            ":::{admonition} Dry run: numbers mean nothing\n:class: warning emlib-profile-banner\n\n"
            "**Dry run**: pretrained-weights code path with random values from a local test hub; numbers mean "
            f"nothing. This page was built with the **`{prof.name}`** profile ({prof.summary()}) to show that the "
            f"`{prof.dry_run_of}` edition runs end to end. For real numbers read the [online edition]({online}), "
            f'or run this chapter with `profile = "{prof.dry_run_of}"`.\n:::'
        )
    if prof.base.pretrained:
        return ""
    return (
        ":::{admonition} Smoke build: random weights\n:class: warning emlib-profile-banner\n\n"
        f"This page was built with the **`{prof.name}`** profile: {prof.summary()}. "
        "Its numbers and pictures show that the code runs; they say nothing about foundation models "
        f"or the paper. For real numbers read the [online edition]({online}) (pretrained weights), "
        'or run this chapter with `profile = "quick"`.\n:::'
    )


class CellProgress:
    """Progress of a chapter being executed: one line per code cell with the chapter, cell and time.

    On a terminal the line is rewritten in place; elsewhere (CI logs, pytest) each cell gets its own
    line. ``done()`` prints the chapter's total.
    """

    def __init__(self, name: str, n_cells: int, stream: TextIO | None = None) -> None:
        self.name, self.n_cells = name, n_cells
        self.stream = stream or sys.stdout
        self.start = self._last = time.perf_counter()
        self.inplace = bool(getattr(self.stream, "isatty", lambda: False)())
        self.count = 0

    def cell(self, index: int, source: str) -> None:
        """Called when a code cell starts (``index``: its position in the executed notebook)."""
        self.count += 1
        now = time.perf_counter()
        first = next((line.strip() for line in source.splitlines() if line.strip() and not line.startswith("#")), "")
        text = f"  {self.name}: cell {self.count}/{self.n_cells}, {now - self.start:5.1f} s  {first[:60]}"
        if self.inplace:
            self.stream.write("\r" + text[:110].ljust(110))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last = now

    def done(self) -> float:
        """Print and return the chapter's elapsed seconds."""
        seconds = time.perf_counter() - self.start
        end = "\r" + " " * 110 + "\r" if self.inplace else ""
        self.stream.write(f"{end}  {self.name}: {self.count} code cells in {seconds:.1f} s\n")
        self.stream.flush()
        return seconds


def _progress_engine() -> type:
    """A papermill engine that reports each cell start to a :class:`CellProgress` (``emlib_progress=``)."""
    from papermill.engines import NBClientEngine

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
            progress: CellProgress | None = kwargs.pop("emlib_progress", None)
            if progress is not None:
                start: Callable[..., Any] = nb_man.cell_start

                def cell_start(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                    if cell.get("cell_type") == "code":
                        progress.cell(cell_index or 0, cell.get("source", ""))
                    return start(cell, cell_index, **kw)

                nb_man.cell_start = cell_start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return ProgressEngine


def read_notebook_source(path: str | os.PathLike[str]) -> Any:
    """Read a Jupytext percent-format chapter as an nbformat notebook (with a python3 kernelspec)."""
    import jupytext  # lazy: jupytext, papermill and nbformat come with the [book] extra

    path = Path(path)
    try:
        nb = jupytext.read(path, fmt="py:percent")
    except Exception as err:  # noqa: BLE001 - any parse failure is the same to the author
        raise BookError(f"cannot read {path} as a py:percent notebook: {err}") from None
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    nb.metadata.get("jupytext", {}).pop("text_representation", None)
    return nb


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _source_cell_number(nb: Any, fallback_index: int) -> int:
    """1-based number, in the chapter source, of the cell holding the error output of a partial notebook.

    papermill's own cells (``injected-parameters``, its error banners) are not counted.
    """
    skip = {"injected-parameters", "papermill-error-cell-tag"}
    number = 0
    for cell in nb.cells:
        if skip & set(cell.get("metadata", {}).get("tags", [])):
            continue
        number += 1
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return number
    return fallback_index + 1


def _papermill_options(
    params: dict[str, Any], *, cwd: str | os.PathLike[str] | None, timeout: int | None, progress: CellProgress | bool
) -> dict[str, Any]:
    """Keyword arguments of ``papermill.execute_notebook`` for one chapter (the ``emlib`` progress engine)."""
    return {
        "parameters": params,
        "engine_name": "emlib",
        "kernel_name": "python3",
        "progress_bar": False,
        "cwd": str(cwd) if cwd else None,
        "execution_timeout": timeout,
        "extra_arguments": list(KERNEL_ARGUMENTS),
        "emlib_progress": progress or None,
    }


def _cell_failure(err: Any, partial: Any, *, name: str, source: Path, output: Path) -> BookError:
    """The one-line error of a failed cell: chapter, cell number in the source (``partial``: the partial notebook
    or None), the cell's first line, the error and where the partial notebook is."""
    failed = next((c for c in (partial.cells if partial is not None else [])
                   if any(o.get("output_type") == "error" for o in c.get("outputs", []))), None)
    label = failed.get("metadata", {}).get("emlib_exercise") if failed is not None else None
    if label:
        evalue = " ".join(str(err.evalue).split())
        return BookError(f"chapter {name}: the solution of exercise {label} ({source}) failed: {err.ename}: "
                         f"{evalue[:300]}; partial notebook: {output}")
    number = _source_cell_number(partial, err.cell_index) if partial is not None else err.cell_index
    first = next((line for line in (err.source or "").splitlines() if line.strip()), "")
    evalue = " ".join(str(err.evalue).split())
    return BookError(
        f"chapter {name} failed at cell {number} of {source} ({first.strip()[:60]!r}): "
        f"{err.ename}: {evalue[:300]}; partial notebook: {output}"
    )


def execute_chapter(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    profile: Profile | str = "smoke",
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    plotly_renderer: str = PLOTLY_RENDERER,
    timeout: int | None = 1800,
    progress: CellProgress | bool = False,
    book_source: BookSource | None = None,
    solutions: bool = False,
) -> Path:
    """Run one chapter with papermill (``-p profile <profile>``) and post-process the result.

    Parameters
    ----------
    source : path
        ``notebooks/<name>.py``.
    output : path
        Executed notebook to write (``book/chapters/<name>.ipynb``); written even when a cell fails.
    profile : Profile or str, default='smoke'
        The profile (its name is what the chapter's ``profile`` parameter gets).
    parameters : dict, default=None
        More papermill parameters (``backbone``, ``data_dir``, ``out_dir``, ...): each one a name the
        chapter's parameters cell declares, of its declared type, never ``profile``
        (:mod:`emlib.book.parameters`).
    cwd : path, default=None
        Working directory of the kernel (the repository root in a build).
    plotly_renderer : str, default='plotly_mimetype+notebook'
        ``PLOTLY_RENDERER`` for the kernel.
    timeout : int, default=1800
        Seconds one cell may run.
    progress : CellProgress or bool, default=False
        Report each code cell as it starts (True: a :class:`CellProgress` on stdout).
    book_source : BookSource, default=None
        The repository the badge and banner link to; None derives it (:func:`resolve_source`).
    solutions : bool, default=False
        Also run the code of the chapter's exercise solutions, after its last cell
        (:func:`emlib.book.exercises.solution_cells`); the executed notebook records them
        (:func:`strip_solutions`) but does not keep their cells.

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    BookError
        A cell failed: one line with the chapter, the cell number in the source (or the exercise
        whose solution failed), the error and the path of the partial notebook.
    ConfigError
        A parameter the chapter does not declare, or of another type (before the kernel starts).
    """
    import nbformat  # lazy: [book] extra
    import papermill as pm
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    prof = get_profile(profile)
    source, output = Path(source), Path(output)
    nb = read_notebook_source(source)
    name = source.stem
    if solutions:
        nb.cells.extend(solution_cells(nb, chapter=name))
    params = {PROFILE_PARAMETER: prof.name, **(parameters or {})}
    check_parameters(parameters or {}, {name: chapter_parameters(nb)}, profile=prof.name)  # before the kernel starts
    check_injection(params, chapter=name)
    output.parent.mkdir(parents=True, exist_ok=True)
    if progress is True:
        progress = CellProgress(name, sum(c.cell_type == "code" for c in nb.cells) + 1)  # + papermill's cell
    options = _papermill_options(params, cwd=cwd, timeout=timeout, progress=progress)
    papermill_engines.register("emlib", _progress_engine())
    pin_env_paths()  # the kernel runs in ``cwd``: a relative $EMLIB_DATA reaches it as the folder meant here
    try:
        with _environ(PLOTLY_RENDERER=plotly_renderer, **{BUILD_ENV: "1"}):
            pm.execute_notebook(nb, str(output), **options)
    except PapermillExecutionError as err:
        partial = nbformat.read(output, as_version=4) if output.is_file() else None
        raise _cell_failure(err, partial, name=name, source=source, output=output) from None
    except Exception as err:  # noqa: BLE001 - kernel start failures, bad parameters, ...
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        raise BookError(f"chapter {name} could not be executed ({reason}); source: {source}") from None
    executed = strip_solutions(nbformat.read(output, as_version=4))
    nbformat.write(postprocess_notebook(executed, name, profile=prof, book_source=book_source), output)
    if progress:
        progress.done()
    return output


def strip_solutions(nb: Any) -> Any:
    """Remove the exercise-solution cells from an executed chapter (returns ``nb``, changed in place).

    What ran stays in ``nb.metadata["emlib_solutions"]``: one ``{"label", "seconds"}`` per cell, in order.
    """
    ran = [c for c in nb.cells if SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]
    if ran:
        nb.metadata[SOLUTIONS_METADATA] = [
            {"label": c.metadata.get("emlib_exercise", ""),
             "seconds": round(float(c.metadata.get("papermill", {}).get("duration") or 0.0), 2)} for c in ran]
        nb.cells = [c for c in nb.cells if SOLUTION_TAG not in c.get("metadata", {}).get("tags", [])]
    return nb


_PLOTLY_BUNDLE = re.compile(r"\*\s*plotly\.js v\d")
_CDN_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"></script>')


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def postprocess_notebook(
    nb: Any, name: str, *, badge: bool = True, profile: Profile | str | None = None, book_source: BookSource | None = None
) -> Any:
    """Prepare an executed chapter for the static book (returns ``nb``, changed in place).

    - the papermill ``injected-parameters`` cell gets the ``remove-cell`` tag;
    - an "Open in Colab" badge cell goes under the first markdown cell (once), and under it, for a
      ``profile`` without pretrained weights, the banner of :func:`profile_banner_markdown` (once),
      both linking to ``book_source``'s repository and online edition (None: :func:`resolve_source`);
    - the plotly.js bundle that the ``notebook`` renderer pastes into the first figure's output is
      removed, because the book loads one shared copy (``_static/plotly.min.js``) on every page;
    - the MathJax-from-CDN tag plotly adds to every figure is removed (no figure uses LaTeX, and
      the page works offline), and so is the figure's plotly JSON, which the HTML book cannot use
      (its title is kept in the output's metadata as ``emlib_figure_title``, for checks).
    """
    import nbformat  # lazy: [book] extra

    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = _text(data.get("text/html", "")) if "text/html" in data else ""
            if html and len(html) > 100_000 and _PLOTLY_BUNDLE.search(html[:5000]):
                continue  # the inlined plotly.js; the book serves one copy from _static
            if html and "plotly-graph-div" in html:
                data["text/html"] = _CDN_MATHJAX.sub("", html)
                fig = data.pop("application/vnd.plotly.v1+json", None)  # the HTML is what the book shows
                layout = (fig or {}).get("layout") or {}
                title = layout.get("title") or {}
                meta = out.setdefault("metadata", {})
                meta["emlib_figure_title"] = title.get("text", "") if isinstance(title, dict) else str(title)
                meta["emlib_figure_badges"] = [a.get("text", "") for a in layout.get("annotations", [])
                                               if "emlib-badge" in str(a.get("name", ""))]
            kept.append(out)
        cell["outputs"] = kept
    at = next((i + 1 for i, c in enumerate(nb.cells) if c.get("cell_type") == "markdown"), 0)
    book_source = book_source or resolve_source()
    if badge and not any("colab-badge" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        badge_cell = nbformat.v4.new_markdown_cell(colab_badge_markdown(name, book_source=book_source), metadata={"tags": ["colab-badge"]})
        nb.cells.insert(at, badge_cell)
    banner = profile_banner_markdown(profile, online=book_source.online_edition) if profile else ""
    if banner and not any("profile-banner" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        at += int(badge)
        nb.cells.insert(at, nbformat.v4.new_markdown_cell(banner, metadata={"tags": ["profile-banner"]}))
    return nb
