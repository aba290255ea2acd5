"""Tests of emlib.book.repository: the repository and commit are derived, never typed in."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from emlib.book.repository import (
    DISTRIBUTION,
    BUILD_CONFIG,
    FALLBACK_REPOSITORY,
    NOTEBOOKS_BRANCH,
    BookSource,
    parse_repository,
    resolve_source,
    write_book_config,
)
from emlib.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
#: Files that may name the fallback: its constant, the placeholder the build overrides, the default
#: install line of the Colab cells (the export pins it; tests/book/test_publish.py checks that it does).
ALLOWED = {"emlib/book/repository.py", "_config.yml"}


def _git_clone(path: Path, origin: str | None = None) -> str:
    """A one-commit git repository at ``path`` (with ``origin`` as its remote); returns the commit."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("x\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "README.md"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=path, check=True)
    if origin:
        subprocess.run(["git", "remote", "add", "origin", origin], cwd=path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("text", ["Someone/emlib", "https://github.com/Someone/emlib", "https://github.com/Someone/emlib.git",
                                  "git@github.com:Someone/emlib.git", "ssh://git@github.com/Someone/emlib"])
def test_every_github_spelling_gives_owner_and_name(text: str) -> None:
    assert parse_repository(text) == ("Someone/emlib", None)


@pytest.mark.parametrize("text", ["emlib", "https://gitlab.com/a/b", "a/b/c", "-x/y"])
def test_anything_else_is_one_sentence_naming_the_value_and_the_fix(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"repository {text!r} is not OWNER/NAME.*--repository someone/emlib"):
        resolve_source(repository=text)


def test_arguments_win_then_actions_then_the_clone_then_the_fallback(tmp_path: Path) -> None:
    clone_sha = _git_clone(tmp_path / "clone", origin="git@github.com:Fork/emlib-fork.git")
    env = {"GITHUB_REPOSITORY": "Org/emlib", "GITHUB_SHA": SHA}
    src = resolve_source(tmp_path / "clone", repository="Me/other", commit="abc1234", environ=env)
    assert (src.repository, src.commit, src.origin) == ("Me/other", "abc1234", "argument")
    src = resolve_source(tmp_path / "clone", environ=env)
    assert (src.repository, src.commit, src.origin) == ("Org/emlib", SHA, "$GITHUB_REPOSITORY")
    src = resolve_source(tmp_path / "clone", environ={})
    assert (src.repository, src.commit, src.origin) == ("Fork/emlib-fork", clone_sha, "git remote")
    no_git = tmp_path / "plain"
    no_git.mkdir()
    src = resolve_source(no_git, environ={})
    assert (src.repository, src.commit, src.origin) == (FALLBACK_REPOSITORY, None, "fallback")
    assert src.requirement.endswith("@main")


def test_a_local_clone_is_installed_from_its_folder_at_its_head(tmp_path: Path) -> None:
    sha = _git_clone(tmp_path / "clone", origin="https://github.com/Fork/emlib.git")
    for text in (str(tmp_path / "clone"), (tmp_path / "clone").as_uri()):
        src = resolve_source(repository=text, environ={"GITHUB_SHA": SHA})
        assert src.repository == "Fork/emlib" and src.commit == sha
        assert src.requirement == f"emlib-vfm @ git+file://localhost{(tmp_path / 'clone').resolve()}@{sha}"


def test_addresses_derive_from_the_repository() -> None:
    src = BookSource("Some-Org/emlib", commit=SHA)
    assert src.url == "https://github.com/Some-Org/emlib" and src.online_edition == "https://some-org.github.io/emlib/"
    assert src.requirement == f"emlib-vfm @ git+https://github.com/Some-Org/emlib@{SHA}"
    assert src.colab_url("03_x").endswith(f"/github/Some-Org/emlib/blob/{NOTEBOOKS_BRANCH}/book/chapters/03_x.ipynb")
    assert BookSource("me/me.github.io").online_edition == "https://me.github.io/"
    with pytest.raises(ConfigError, match=r"commit 'a b' is not a commit hash"):
        resolve_source(repository="me/emlib", commit="a b")


def test_book_config_copy_names_the_repository_and_leaves_the_tracked_file_alone(tmp_path: Path) -> None:
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    before = (tmp_path / "_config.yml").read_text()
    path = write_book_config(tmp_path, BookSource("Org/emlib", commit=SHA))
    assert path == tmp_path / BUILD_CONFIG and (tmp_path / "_config.yml").read_text() == before
    config, tracked = yaml.safe_load(path.read_text()), yaml.safe_load(before)
    assert config["repository"] == {"url": "https://github.com/Org/emlib", "branch": NOTEBOOKS_BRANCH}
    assert {k: v for k, v in config.items() if k != "repository"} == {k: v for k, v in tracked.items() if k != "repository"}


def test_the_repository_is_typed_in_nowhere_but_the_fallback() -> None:
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git clone")
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["repository"]["url"] == BookSource(FALLBACK_REPOSITORY).url  # the placeholder the build replaces
    owner = FALLBACK_REPOSITORY.split("/")[0]
    offenders = []
    for name in tracked.stdout.split():
        path = REPO / name
        if name in ALLOWED or name.startswith("tests/") or not path.is_file() or path.suffix not in {
                ".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt", ".sh", ".ipynb", ""}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if owner in line and not (name.startswith("notebooks/") and line.strip().startswith("EMLIB = ")):
                offenders.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not offenders, f"the repository is typed in (derive it with emlib.book.repository): {offenders}"


#: Where install lines live: the README, the book's pages and chapters, the package's messages, CI and conda.
_INSTALL_SOURCES = ("README.md", "environment.yml", "notebooks/*.py", "book/**/*.md", "emlib/**/*.py", ".ci/*",
                    ".github/**/*.yml")
#: ``pip install`` and what follows on the line, up to the end of its code span (a backtick).
_PIP_INSTALL = re.compile(r"pip install\b[^`\n]*")
#: The bare index name ``emlib`` as a requirement: ``emlib``, ``"emlib[cluster]"``, ``emlib==1``, ``emlib @ ...``.
_BARE_EMLIB = re.compile(r"""(?:^|[\s"'])emlib(?:\[[^\]]*\])?(?=$|[\s"'<>=!~@;])""")
#: A direct reference under the old name, wherever it is written (a Colab cell keeps it in a variable).
_OLD_DIRECT = re.compile(r"(?<![\w-])emlib(?:\[[^\]]*\])?\s*@\s*git\+")


def _install_texts() -> dict[str, str]:
    files = sorted({p for pattern in _INSTALL_SOURCES for p in REPO.glob(pattern) if p.is_file()})
    return {str(p.relative_to(REPO)): p.read_text(errors="replace") for p in files}


def test_the_distribution_is_not_the_unrelated_emlib_on_the_index() -> None:
    """PyPI's ``emlib`` is another project: pyproject names :data:`DISTRIBUTION`, the package and command stay."""
    pyproject = (REPO / "pyproject.toml").read_text()  # read as text: tomllib is Python 3.11+
    assert re.search(r'^name = "([^"]+)"', pyproject, re.M).group(1) == DISTRIBUTION != "emlib"
    assert re.search(r'^\[project.scripts\]\nemlib = "emlib.cli:main"$', pyproject, re.M)
    assert _BARE_EMLIB.search('pip install "emlib[cluster]"'[len("pip install"):])  # the test sees the old line
    assert _OLD_DIRECT.search('EMLIB = "emlib @ git+https://github.com/o/r@main"')


def test_no_install_line_names_the_bare_index_package_emlib() -> None:
    texts = _install_texts()
    assert "README.md" in texts and "book/cluster.md" in texts and "emlib/grid/launch.py" in texts
    bare = [f"{name}: {line.group(0)}" for name, text in texts.items() for line in _PIP_INSTALL.finditer(text)
            if _BARE_EMLIB.search(line.group(0)[len("pip install"):])]
    old = [f"{name}: {m.group(0)}" for name, text in texts.items() for m in _OLD_DIRECT.finditer(text)]
    assert not bare and not old, bare + old
    assert any(f'"{DISTRIBUTION}[cluster] @ git+' in text for text in texts.values())  # without a clone
