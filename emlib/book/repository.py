"""Which repository and commit a book comes from: its links, its theme buttons and its Colab installs.

The online edition, the "Open in Colab" badges, the theme's repository and launch buttons and the
install line of every Colab notebook name one GitHub repository; the Colab install also pins the
commit the book was built from. None of them is typed into the book: :func:`resolve_source` takes
them, in this order, from

1. the arguments (``emlib book build|export --repository OWNER/NAME --commit SHA``),
2. a GitHub Actions run (``$GITHUB_REPOSITORY``, ``$GITHUB_SHA``: the workflow passes them too),
3. the book's own clone (``git remote get-url origin``, ``git rev-parse HEAD``),
4. else :data:`FALLBACK_REPOSITORY`, a placeholder, and the default branch instead of a commit.

``--repository`` also takes a local clone (a folder or a ``file://`` URL): the Colab install then
points at that clone (how the tests install a notebook's first cell without the internet), while the
links keep the clone's GitHub ``origin``.

jupyter-book reads the repository for its buttons from ``_config.yml``; :func:`write_book_config`
writes a copy with the derived repository for the build (``_build/_config.yml``), so nobody edits
the tracked file.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emlib.book.toc import CHAPTER_DIR, BookError, find_root
from emlib.errors import ConfigError

__all__ = [
    "FALLBACK_REPOSITORY",
    "DEFAULT_BRANCH",
    "NOTEBOOKS_BRANCH",
    "COLAB",
    "BookSource",
    "parse_repository",
    "resolve_source",
    "write_book_config",
]

#: Placeholder used only when no repository can be derived (no argument, no Actions run, no GitHub origin).
FALLBACK_REPOSITORY = "emlib-book/emlib"
#: The distribution name of this project (pyproject.toml): PyPI's ``emlib`` is an unrelated project, so every
#: install names this one from the repository (``emlib-vfm @ git+...``); the package is still ``import emlib``.
DISTRIBUTION = "emlib-vfm"
#: What a Colab notebook installs when no commit is known.
DEFAULT_BRANCH = "main"
#: Branch to which the workflow publishes the chapters as ``.ipynb`` for Colab.
NOTEBOOKS_BRANCH = "notebooks"
#: Colab's address; ``<COLAB>/github/<owner>/<name>/blob/<branch>/<path>`` opens a notebook on GitHub.
COLAB = "https://colab.research.google.com"
#: Where the generated config of a build goes, relative to the book root.
BUILD_CONFIG = "_build/_config.yml"

_SLUG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_GITHUB = re.compile(r"^(?:https?://|ssh://git@|git@|git\+https://)github\.com[/:]([^/]+/[^/]+?)(?:\.git)?/?$")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")


@dataclass(frozen=True)
class BookSource:
    """The repository and commit a book is built from, and every address derived from them.

    Build it with :func:`resolve_source`.

    Attributes
    ----------
    repository : str
        ``OWNER/NAME`` on GitHub.
    commit : str or None, default=None
        The commit (or a branch/tag) the Colab notebooks install; None: :data:`DEFAULT_BRANCH`.
    install_url : str or None, default=None
        A git URL to install from instead of GitHub (a local clone: ``file://localhost/path``).
    origin : str, default='argument'
        Where ``repository`` came from: ``argument``, ``$GITHUB_REPOSITORY``, ``git remote`` or ``fallback``.

    Examples
    --------
    >>> src = BookSource("Someone/emlib", commit="0123abc")
    >>> src.url, src.online_edition
    ('https://github.com/Someone/emlib', 'https://someone.github.io/emlib/')
    >>> src.requirement
    'emlib-vfm @ git+https://github.com/Someone/emlib@0123abc'
    >>> src.colab_url("01_data")
    'https://colab.research.google.com/github/Someone/emlib/blob/notebooks/book/chapters/01_data.ipynb'
    """

    repository: str
    commit: str | None = None
    install_url: str | None = None
    origin: str = "argument"

    @property
    def url(self) -> str:
        """The repository on GitHub (``https://github.com/OWNER/NAME``)."""
        return f"https://github.com/{self.repository}"

    @property
    def online_edition(self) -> str:
        """The book on GitHub Pages (``https://<owner>.github.io/<name>/``, lower-case owner)."""
        owner, name = self.repository.split("/")
        host = f"{owner.lower()}.github.io"
        return f"https://{host}/" if name.lower() == host else f"https://{host}/{name}/"

    @property
    def ref(self) -> str:
        """What the install checks out: the commit, else :data:`DEFAULT_BRANCH`."""
        return self.commit or DEFAULT_BRANCH

    @property
    def requirement(self) -> str:
        """The pip requirement of the Colab install (``emlib-vfm @ git+<url>@<commit>``: :data:`DISTRIBUTION`)."""
        return f"{DISTRIBUTION} @ git+{self.install_url or self.url}@{self.ref}"

    def colab_url(self, name: str, *, branch: str = NOTEBOOKS_BRANCH, folder: str = CHAPTER_DIR) -> str:
        """Colab address of chapter ``name`` as published on ``branch`` (the theme's launch button builds the same)."""
        return f"{COLAB}/github/{self.repository}/blob/{branch}/{folder}/{name}.ipynb"


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of ``git <args>`` in ``cwd``, or None when git, the clone or the value is missing."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def _github_slug(url: str | None) -> str | None:
    """``OWNER/NAME`` of a GitHub remote URL (https, ssh or scp-like), or None for anything else."""
    m = _GITHUB.match((url or "").strip())
    return m.group(1) if m and _SLUG.fullmatch(m.group(1)) else None


def _local_clone(text: str) -> Path | None:
    """The folder of a local clone named as a path or a ``file://`` URL, or None."""
    path = Path(urlsplit(text).path) if text.startswith("file://") else Path(text).expanduser()
    return path.resolve() if (text.startswith(("file://", "/", ".", "~")) and (path / ".git").exists()) else None


def parse_repository(text: str) -> tuple[str | None, Path | None]:
    """Split a ``--repository`` value into a GitHub ``OWNER/NAME`` and a local clone.

    Parameters
    ----------
    text : str
        ``OWNER/NAME``, a GitHub URL (``https://github.com/OWNER/NAME[.git]``, ``git@github.com:OWNER/NAME``),
        or a local clone (a folder or ``file:///folder``).

    Returns
    -------
    slug : str or None
        ``OWNER/NAME`` (for a local clone: that of its GitHub ``origin``, else None).
    clone : Path or None
        The local clone, if ``text`` names one.

    Raises
    ------
    ConfigError
        ``text`` is none of these.

    Examples
    --------
    >>> parse_repository("git@github.com:Someone/emlib.git")
    ('Someone/emlib', None)
    """
    text = str(text).strip()
    clone = _local_clone(text)
    if clone is not None:
        return _github_slug(_git(["remote", "get-url", "origin"], clone)), clone
    if _SLUG.fullmatch(text):
        return text, None
    slug = _github_slug(text)
    if slug is None:
        raise ConfigError(
            f"repository {text!r} is not OWNER/NAME, a GitHub URL or a local git clone; "
            "pass e.g. --repository someone/emlib"
        )
    return slug, None


def _check_commit(commit: str) -> str:
    if not _REF.fullmatch(commit) or ".." in commit:
        raise ConfigError(f"commit {commit!r} is not a commit hash, branch or tag; pass e.g. --commit 0123abc")
    return commit


def resolve_source(
    root: str | os.PathLike[str] | None = None,
    *,
    repository: str | None = None,
    commit: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> BookSource:
    """The repository and commit of the book at ``root`` (arguments, then Actions, then git, then the fallback).

    Parameters
    ----------
    root : path, default=None
        The book root (found from the cwd when None; outside a book only the arguments and the
        environment count).
    repository : str, default=None
        ``OWNER/NAME``, a GitHub URL or a local clone (see :func:`parse_repository`).
    commit : str, default=None
        The commit to pin; None: ``HEAD`` of the local clone given as ``repository``, else
        ``$GITHUB_SHA`` (an Actions run), else ``HEAD`` of the book's clone, else the default branch.
    environ : mapping, default=None
        The environment to read (``os.environ`` when None).

    Returns
    -------
    BookSource

    Examples
    --------
    >>> src = resolve_source(repository="Someone/emlib", commit="0123abc")
    >>> src.repository, src.commit, src.origin
    ('Someone/emlib', '0123abc', 'argument')
    >>> resolve_source(repository="nope").repository
    Traceback (most recent call last):
    ...
    emlib.errors.ConfigError: repository 'nope' is not OWNER/NAME, a GitHub URL or a local git clone; pass e.g. --repository someone/emlib
    """
    env = os.environ if environ is None else environ
    try:
        book = Path(root).resolve() if root is not None else find_root()
    except BookError:
        book = None
    slug, clone, origin = None, None, "argument"
    if repository:
        slug, clone = parse_repository(repository)
    elif env.get("GITHUB_REPOSITORY"):
        slug, origin = parse_repository(env["GITHUB_REPOSITORY"])[0], "$GITHUB_REPOSITORY"
    elif book is not None:
        slug, origin = _github_slug(_git(["remote", "get-url", "origin"], book)), "git remote"
    if slug is None:
        slug, origin = FALLBACK_REPOSITORY, ("argument" if clone else "fallback")
    if commit is None:
        if clone is not None:
            commit = _git(["rev-parse", "HEAD"], clone)
        elif env.get("GITHUB_SHA"):
            commit = env["GITHUB_SHA"]
        elif book is not None:
            commit = _git(["rev-parse", "HEAD"], book)
    # file://localhost/...: pip before 24 rejects a git+file URL without a host
    install_url = f"file://localhost{clone.as_posix()}" if clone is not None else None
    return BookSource(slug, _check_commit(commit) if commit else None, install_url, origin)


def write_book_config(book_root: str | os.PathLike[str], source: BookSource, *, dest: str | None = None,
                      sphinx_config: Mapping[str, Any] | None = None) -> Path:
    """Write the book's ``_config.yml`` with ``source``'s repository, for ``jupyter-book build --config``.

    The theme's repository and issues buttons and its Colab launch button read ``repository.url``
    (``repository.branch`` stays :data:`NOTEBOOKS_BRANCH`, where the Colab notebooks are). The
    tracked ``_config.yml`` is read, never written.

    Parameters
    ----------
    book_root : path
        Folder holding ``_config.yml``.
    source : BookSource
    dest : str, default=None
        Where to write, relative to ``book_root`` (default ``_build/_config.yml``).
    sphinx_config : mapping, default=None
        Settings added to ``sphinx.config`` (the student edition's ``hide_solutions``).

    Returns
    -------
    Path
        The written config.
    """
    import yaml  # lazy: PyYAML comes with the [book] extra

    book_root = Path(book_root)
    config = yaml.safe_load((book_root / "_config.yml").read_text()) or {}
    config.setdefault("repository", {})
    config["repository"]["url"] = source.url
    config["repository"].setdefault("branch", NOTEBOOKS_BRANCH)
    if sphinx_config:
        config.setdefault("sphinx", {}).setdefault("config", {}).update(sphinx_config)
    target = book_root / (dest or BUILD_CONFIG)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated by emlib.book from _config.yml for {source.repository} ({source.origin}); do not edit.\n"
    target.write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return target
