"""Paths the user gives, made absolute once, where they are given, so a relative path means what it meant there.

A path on the command line (``--root``, ``--out``, ``--weights``, ``-p data_dir=...``) or in a
chapter's parameters is made absolute against the working folder of the moment it is given
(:func:`user_path`). A path in an environment variable (:data:`PATH_ENVS`: ``EMLIB_DATA``,
``EMLIB_WEIGHTS``, ``EMLIB_CACHE_DIR``) is made absolute when this process reads it
(:func:`env_path`; ``import emlib`` reads them all, :func:`pin_env_paths`) and written back
absolute, so the subprocesses, launchers and papermill kernels this process starts inherit the
folder it meant, whatever their own working folder.

One exception: a chapter opened in Jupyter from the book's ``notebooks/`` folder runs there, while
the variable was set where Jupyter was started, at the repository root. So in a ``notebooks/``
folder beside the book's ``_toc.yml``, a relative variable that names nothing there but names a
folder relative to the repository root means that folder (``EMLIB_DATA=../shared/data`` finds the
data beside the repository either way).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PATH_ENVS", "env_path", "pin_env_paths", "user_path"]

#: The environment variables that name a folder (the data root, a weights folder, the slice-check cache).
PATH_ENVS: tuple[str, ...] = ("EMLIB_DATA", "EMLIB_WEIGHTS", "EMLIB_CACHE_DIR")


def user_path(value: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None) -> Path:
    """``value`` as an absolute path: ``~`` expanded, a relative path joined to ``base`` (default: the cwd).

    The result is normalised (``a/../b`` is ``b``) but symlinks are kept as they are.

    Examples
    --------
    >>> str(user_path("../data", base="/work/repo"))
    '/work/data'
    >>> str(user_path("/abs/path", base="/elsewhere"))
    '/abs/path'
    """
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else os.getcwd()) / path
    return Path(os.path.normpath(path))


def _chapter_base(cwd: Path, value: str) -> Path:
    """The folder a relative variable is read against: the cwd, or the book root from its ``notebooks/``."""
    book = cwd.parent
    if cwd.name == "notebooks" and (book / "_toc.yml").is_file():
        if not user_path(value, base=cwd).exists() and user_path(value, base=book).exists():
            return book
    return cwd


def env_path(name: str) -> Path | None:
    """The folder environment variable ``name`` names, absolute (and written back so); None when unset or empty.

    Examples
    --------
    >>> os.environ["EMLIB_EXAMPLE_DIR"] = "/tmp/../tmp/x"
    >>> str(env_path("EMLIB_EXAMPLE_DIR")), os.environ["EMLIB_EXAMPLE_DIR"]
    ('/tmp/x', '/tmp/x')
    >>> del os.environ["EMLIB_EXAMPLE_DIR"]
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    cwd = Path(os.getcwd())
    path = user_path(value, base=_chapter_base(cwd, value))
    if str(path) != os.environ[name]:
        os.environ[name] = str(path)
    return path


def pin_env_paths(names: tuple[str, ...] = PATH_ENVS) -> dict[str, Path]:
    """Make every set variable of ``names`` absolute in ``os.environ`` (see :func:`env_path`).

    Returns
    -------
    dict of str to Path
        The variables that are set, with their absolute folders.
    """
    found = {}
    for name in names:
        try:
            path = env_path(name)
        except OSError:  # pragma: no cover - a cwd that was deleted: left as given, read again later
            continue
        if path is not None:
            found[name] = path
    return found
