"""The browser check: every page of the built book opened in headless Chromium.

A page fails on JavaScript errors, broken internal links or anchors, images that did not load and
plotly figures that did not render; one screenshot per page goes to ``_build/screenshots/``.
The built HTML is served on 127.0.0.1 and every other host is blocked, so the check runs offline.

It also checks the layout a reader sees (:data:`LAYOUT_JS`): no element of the article wider than
its column unless it sits in a box meant to scroll sideways (a code block, the book's table box
``.emlib-scroll``) that fits; a table hidden behind the theme's output scroll bar fails. No
plotly title, legend, slider or annotation outside its figure, every formula rendered by MathJax,
and no output text cut short with "..." by code (pandas' column width, for instance).

Every page is checked at a phone's width and a laptop's (:data:`VIEWPORTS`, 390 and 1280 px),
with a screenshot at each (``<page>-390.png``, ``<page>-1280.png``). At both, no page may be wider
than the window (``document.documentElement.scrollWidth > innerWidth``: the reader would scroll
sideways), and no plotly figure may have its "random weights" badge, its title, its panel titles
or its legend over one another. The figures are checked in the page, where plotly has drawn them
at the width the reader gets, rather than from the Python figure, whose text sizes are only known
once a browser lays them out: the badge and panel titles are the SVG's annotations, told apart
through the figure's own layout (the badge's name, :data:`emlib.viz.common.BADGE_NAME`; a panel
title sits above the plots), and two of them meet when their bounding boxes overlap.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from emlib.book.toc import BookError, find_root, toc_docnames

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "LAYOUT_JS", "VIEWPORTS", "PageReport", "CheckReport", "check_book"]

#: Headless Chromium from Debian's package, and the flags this machine needs.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: The window widths every page is checked at (a phone, a laptop), and their heights, in CSS pixels.
VIEWPORTS: dict[int, int] = {390: 844, 1280: 900}


@dataclass
class PageReport:
    """What the browser saw on one page."""

    docname: str
    url: str
    errors: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    figures: int = 0
    figures_rendered: int = 0
    screenshot: Path | None = None
    screenshots: dict[int, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and self.figures == self.figures_rendered


@dataclass
class CheckReport:
    """The browser check of a built book."""

    html_dir: Path
    pages: list[PageReport]
    screenshots_dir: Path

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pages)

    def failures(self) -> list[str]:
        """One line per problem: ``<page>: <what>``."""
        lines = []
        for p in self.pages:
            lines += [f"{p.docname}: {e}" for e in p.errors]
            if p.figures != p.figures_rendered:
                missing = p.figures - p.figures_rendered
                lines.append(f"{p.docname}: {missing} of {p.figures} plotly figures did not render")
        return lines

    def summary(self) -> str:
        figs = sum(p.figures for p in self.pages)
        rendered = sum(p.figures_rendered for p in self.pages)
        ext = sorted({u for p in self.pages for u in p.external})
        state = "ok" if self.ok else f"{len(self.failures())} problems"
        return (
            f"browser check: {len(self.pages)} pages, {rendered}/{figs} plotly figures rendered, "
            f"{len(ext)} external resources not fetched (offline check), screenshots in {self.screenshots_dir}: {state}"
        )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) for the duration of the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


_FIGURES_JS = """() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return [divs.length, divs.filter(d => d.querySelector('.main-svg')).length];
}"""
_BROKEN_IMAGES_JS = "() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
#: Waits (up to the page timeout) for MathJax to finish typesetting, where the page has maths.
_MATH_READY_JS = """() => !document.querySelector('.math') ||
  (window.MathJax && MathJax.startup && MathJax.startup.promise && document.querySelector('mjx-container'))"""
#: The layout assertions: a list of problems, each one line.
LAYOUT_JS = r"""() => {
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  if (!article) return problems;
  const col = article.getBoundingClientRect();
  const describe = el => {
    const cls = (typeof el.className === 'string' ? el.className : (el.className.baseVal || '')).trim().split(/\s+/)[0];
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 50);
    return `<${el.tagName.toLowerCase()}${cls ? '.' + cls : ''}> "${text}"`;
  };
  // boxes meant to scroll sideways: the book's table boxes, code blocks, tables and display maths
  // that the book's CSS lets scroll (not the theme's generic
  // output box, which would hide a clipped table behind a scroll bar)
  const scrolls = el => el.matches('.emlib-scroll, pre, div.highlight, table, mjx-container') &&
    ['auto', 'scroll'].includes(getComputedStyle(el).overflowX);
  // 1. horizontal overflow: an element past the column's edges that no fitting scroll box holds
  const reported = new Set();
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;   // plotly internals: see 2.
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right <= col.right + 1 && r.left >= col.left - 1) continue;
    let held = false;
    for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      const ar = a.getBoundingClientRect();
      if (scrolls(a) && ar.right <= col.right + 1 && ar.left >= col.left - 1) { held = true; break; }
    }
    if (held) continue;
    let top = el;   // report the outermost overflowing element only
    for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
      const ar = a.getBoundingClientRect();
      if (ar.right > col.right + 1 || ar.left < col.left - 1) top = a;
    }
    if (reported.has(top)) continue;
    reported.add(top);
    const tr = top.getBoundingClientRect();
    problems.push(`wider than its column (${Math.round(tr.width)} px in ${Math.round(col.width)} px): ${describe(top)}`);
    if (problems.length > 5) break;
  }
  // 2. plotly: title, legend, sliders, menus and annotations inside the figure
  for (const fig of article.querySelectorAll('.plotly-graph-div')) {
    const svg = fig.querySelector('.main-svg');
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    const name = (fig.querySelector('.gtitle') || {}).textContent || fig.id;
    for (const part of fig.querySelectorAll('.gtitle, .legend, .slider-container, .updatemenu-container, .annotation, .g-xtitle, .g-ytitle')) {
      const r = part.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1) {
        const what = part.getAttribute('class').split(' ')[0];
        problems.push(`plotly ${what} outside its figure "${name.slice(0, 50)}": ${describe(part)}`);
      }
    }
  }
  // 3. maths rendered by MathJax
  const raw = [...article.querySelectorAll('.math')].filter(m => !m.querySelector('mjx-container'));
  if (raw.length) problems.push(`${raw.length} formulas not rendered (raw TeX): ${describe(raw[0])}`);
  // 5. plotly: the "random weights" badge over no title, no title over another (the figure title,
  //    the panel titles of make_subplots, the legend); the badge and panel titles are annotations,
  //    told apart by the figure's own layout (its annotation name, a panel title sits above the plots)
  const meets = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
  for (const fig of article.querySelectorAll('.plotly-graph-div')) {
    if (!fig.querySelector('.main-svg')) continue;
    const anns = (fig.layout && fig.layout.annotations) || [];
    const name = ((fig.querySelector('.gtitle') || {}).textContent || fig.id).slice(0, 50);
    const parts = [];
    const add = (what, el) => {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && r.height > 0) parts.push([what, el, r]);
    };
    for (const t of fig.querySelectorAll('.gtitle')) add('title', t);
    for (const l of fig.querySelectorAll('.legend')) add('legend', l);
    for (const g of fig.querySelectorAll('.annotation')) {
      const a = anns[Number(g.getAttribute('data-index'))] || {};
      if (a.name === 'emlib-badge') add('badge', g);
      else if (a.yref === 'paper' && (a.y === undefined ? 0 : a.y) >= 1) add('panel title', g);
    }
    for (let i = 0; i < parts.length; i++) for (let j = i + 1; j < parts.length; j++) {
      const [wa, ea, ra] = parts[i], [wb, eb, rb] = parts[j];
      if (wa === 'legend' && wb === 'legend') continue;
      if (meets(ra, rb)) problems.push(`plotly ${wa} over ${wb} in "${name}": ${describe(ea)} / ${describe(eb)}`);
    }
  }
  // 6. the page no wider than the window (a reader would scroll sideways)
  const iw = window.innerWidth, sw = document.documentElement.scrollWidth;
  if (sw > iw + 1) {
    const clipped = el => {   // inside a box that scrolls or clips: it widens no page
      for (let a = el.parentElement; a && a !== document.body; a = a.parentElement)
        if (getComputedStyle(a).overflowX !== 'visible') return true;
      return false;
    };
    const culprits = [...document.body.querySelectorAll('*')].filter(el => {
      const r = el.getBoundingClientRect();
      const p = el.parentElement && el.parentElement.getBoundingClientRect();
      return r.width > 0 && r.right > iw + 1 && (!p || p.right <= iw + 1) && !clipped(el);
    });
    problems.push(`page wider than the window (${sw} px in ${iw} px)` +
                  (culprits.length ? `: ${culprits.slice(0, 3).map(describe).join(', ')}` : ''));
  }
  // 4. output text cut short with "..." by code
  for (const el of article.querySelectorAll('.cell_output td, .cell_output th, .cell_output pre, .cell_output li, .plotly-graph-div text')) {
    const t = (el.textContent || '').trim();
    if (/(\.\.\.|\u2026)$/.test(t)) problems.push(`text cut short: ${describe(el)}`);
  }
  return problems;
}"""
_LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"


def _check_links(links: Sequence[str], base: str, html_dir: Path, cache: dict[Path, str]) -> list[str]:
    """Internal links whose file or ``#anchor`` does not exist in the built HTML."""
    broken = []
    for href in sorted(set(links)):
        if not href.startswith(base):
            continue
        parts = urlsplit(href)
        rel = unquote(parts.path)[1:]
        target = html_dir / rel
        if rel == "" or rel.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"broken link {href[len(base) - 1:]} (no file {target.relative_to(html_dir)})")
            continue
        frag = unquote(parts.fragment)
        if frag and target.suffix == ".html":
            text = cache.setdefault(target, target.read_text(errors="replace"))
            if f'id="{frag}"' not in text and f"id='{frag}'" not in text and f'name="{frag}"' not in text:
                broken.append(f"broken anchor {href[len(base) - 1:]}")
    return broken


def _book_paths(
    html_dir: str | os.PathLike[str] | None, toc: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None,
    screenshots_dir: str | os.PathLike[str] | None,
) -> tuple[Path, Path, list[str]]:
    """The built HTML, the screenshots folder (made) and the table of contents' pages; BookError without a built book."""
    base_root = find_root() if root is None and html_dir is None else Path(root or Path(html_dir).parents[1])
    html = Path(html_dir) if html_dir else base_root / "_build" / "html"
    if not (html / "index.html").is_file():
        raise BookError(f"no built book at {html} (index.html missing); run `python -m emlib.book build` first")
    shots = Path(screenshots_dir) if screenshots_dir else html.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    return html, shots, toc_docnames(base_root, toc)


def _listen(page: Any, rep: PageReport, base: str) -> None:
    """Record on ``rep`` what ``page`` reports while it loads: console errors, exceptions, failed requests."""

    def on_console(msg: Any) -> None:
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if msg.text.startswith("Failed to load resource") and where and not where.startswith(base):
            rep.external.append(where)
        elif msg.text.startswith("Failed to load resource") and not where:
            rep.external.append(msg.text)
        else:
            rep.errors.append(f"console error: {msg.text[:300]}")

    def on_failed(req: Any) -> None:
        if req.url.startswith(base):
            rep.errors.append(f"local resource failed: {req.url[len(base) - 1:]} ({req.failure})")
        else:
            rep.external.append(req.url)

    def on_response(resp: Any) -> None:
        if resp.url.startswith(base) and resp.status >= 400:
            rep.errors.append(f"HTTP {resp.status} for {resp.url[len(base) - 1:]}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: rep.errors.append(f"uncaught exception: {str(exc)[:300]}"))
    page.on("requestfailed", on_failed)
    page.on("response", on_response)


def _wait_until_rendered(page: Any, timeout_ms: int, browser_error: type[Exception]) -> None:
    """Wait (up to ``timeout_ms`` each) for every plotly figure's SVG and for MathJax; a timeout is no error here."""
    with contextlib.suppress(browser_error):
        page.wait_for_function(
            "() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('.main-svg'))",
            timeout=timeout_ms,
        )
    with contextlib.suppress(browser_error):
        page.wait_for_function(_MATH_READY_JS, timeout=timeout_ms)
        page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")


def _inspect(
    page: Any, rep: PageReport, *, base: str, html: Path, shots: Path, cache: dict[Path, str], layout: bool, width: int,
    first: bool,
) -> None:
    """The checks of a page loaded ``width`` px wide into ``rep``, and its screenshots (``<page>-<width>.png``).

    The layout is checked at every width (its problems name the width); figures, images and links
    do not depend on it, so they are checked on the ``first`` width only.
    """
    if layout:
        rep.errors += [f"layout at {width} px: {p}" for p in page.evaluate(LAYOUT_JS)]
    if first:
        rep.figures, rep.figures_rendered = page.evaluate(_FIGURES_JS)
        for src in page.evaluate(_BROKEN_IMAGES_JS):
            if src.startswith(base) or src.startswith("data:"):
                rep.errors.append(f"image did not load: {src[:120]}")
            else:
                rep.external.append(src)
        rep.errors += _check_links(page.evaluate(_LINKS_JS), base, html, cache)
    name = Path(rep.docname).name
    shot = rep.screenshots[width] = shots / f"{name}-{width}.png"
    rep.screenshot = shot  # the last (widest) one
    page.screenshot(path=str(shot), full_page=True)
    if rep.figures:
        fig = page.locator(".plotly-graph-div").first
        fig.scroll_into_view_if_needed()
        fig.screenshot(path=str(shots / f"{name}-figure-{width}.png"))


def _check_page(
    contexts: Mapping[int, Any], doc: str, *, base: str, html: Path, shots: Path, cache: dict[Path, str],
    timeout_ms: int, layout: bool, browser_error: type[Exception],
) -> PageReport:
    """Open page ``doc`` in a new tab of each of ``contexts`` (width -> browser context) and report what is wrong."""
    rep = PageReport(doc, base + f"{doc}.html")
    if not (html / f"{doc}.html").is_file():
        rep.errors.append(f"page missing: {doc}.html was not built")
        return rep
    for k, (width, context) in enumerate(contexts.items()):
        page = context.new_page()
        if k == 0:
            _listen(page, rep, base)
        try:
            page.goto(rep.url, wait_until="load", timeout=timeout_ms)
            _wait_until_rendered(page, timeout_ms, browser_error)
            _inspect(page, rep, base=base, html=html, shots=shots, cache=cache, layout=layout, width=width,
                     first=k == 0)
        except browser_error as err:
            rep.errors.append(f"browser error at {width} px: {str(err).splitlines()[0][:300]}")
        finally:
            page.close()
    rep.external = sorted(set(rep.external))
    return rep


def check_book(
    html_dir: str | os.PathLike[str] | None = None,
    *,
    toc: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    screenshots_dir: str | os.PathLike[str] | None = None,
    chromium: str = CHROMIUM,
    timeout_ms: int = 30_000,
    layout: bool = True,
    widths: Sequence[int] = tuple(VIEWPORTS),
) -> CheckReport:
    """Open every page of the table of contents in headless Chromium and report what is wrong.

    The built HTML is served on 127.0.0.1; requests to other hosts are blocked, so the check
    runs offline and lists them as external instead. A page fails on a JavaScript error (console
    error or uncaught exception), a local resource that fails to load, a broken internal link or
    anchor, a local image that did not load, or a plotly figure without its SVG, and on any layout
    problem (:data:`LAYOUT_JS`) at any of ``widths``: each page is opened in a window as wide as a
    phone and one as wide as a laptop. One screenshot per page and width goes to ``screenshots_dir``
    (``<book root>/_build/screenshots/<page>-<width>.png``), plus one of the first figure of each
    page that has one (``<page>-figure-<width>.png``).

    Parameters
    ----------
    html_dir : path, default=None
        The built book (``<root>/_build/html``).
    toc : path, default=None
        Table of contents listing the pages (``<root>/_toc.yml``).
    root : path, default=None
        Book root (found from the cwd when None).
    screenshots_dir : path, default=None
    chromium : str, default='/usr/bin/chromium'
        Chromium executable (Debian's package; never ``playwright install``).
    timeout_ms : int, default=30000
        How long a page may take to load and render its figures.
    layout : bool, default=True
        Run the layout assertions of :data:`LAYOUT_JS` (overflow, clipped plotly parts, raw TeX,
        text cut short with "...", a badge or title over another title, a page wider than the window).
    widths : sequence of int, default=(390, 1280)
        Window widths in CSS pixels (:data:`VIEWPORTS`), narrowest first.

    Returns
    -------
    CheckReport
    """
    try:  # lazy: playwright comes with the [book] extra and is needed by the check only
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BookError("the browser check needs playwright: pip install -e '.[book]'") from None
    if not Path(chromium).is_file():
        raise BookError(f"no Chromium at {chromium}; install Debian's package: apt-get install -y chromium")
    html, shots, docs = _book_paths(html_dir, toc, root, screenshots_dir)
    cache: dict[Path, str] = {}
    with _serve(html) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True, args=[f for f in CHROMIUM_FLAGS if f != "--headless"]
        )
        def route(r: Any) -> None:  # only the local server and data: URLs; every other host is blocked
            if r.request.url.startswith(base) or r.request.url.startswith("data:"):
                r.continue_()
            else:
                r.abort()

        contexts = {}
        for width in sorted(widths):
            contexts[width] = browser.new_context(viewport={"width": width, "height": VIEWPORTS.get(width, 900)})
            contexts[width].route("**/*", route)
        pages = [
            _check_page(contexts, doc, base=base, html=html, shots=shots, cache=cache, timeout_ms=timeout_ms,
                        layout=layout, browser_error=PlaywrightError)
            for doc in ["index", *docs]
        ]
        for context in contexts.values():
            context.close()
        browser.close()
    return CheckReport(html, pages, shots)
