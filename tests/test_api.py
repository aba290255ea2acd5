"""The public API: every name of ``emlib.__all__`` resolves, from the module ``emlib._API`` names, and
every module's ``__all__`` holds only names it has."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import emlib

#: Every module of the package (``__main__`` modules run a command when imported: left out).
MODULES = sorted(m.name for m in pkgutil.walk_packages(emlib.__path__, "emlib.") if not m.name.endswith(".__main__"))

#: Public names that are also the names of submodules of emlib: importing the submodule would set the package
#: attribute to the module (``from emlib import evaluate`` gave the module once ``emlib.evaluate`` was imported).
SHADOWED = sorted(name for name in emlib.__all__ if f"emlib.{name}" in MODULES)


def test_every_public_name_resolves_from_the_module_api_names() -> None:
    for module, names in emlib._API.items():
        mod = importlib.import_module(module)
        for name in names:
            value = getattr(emlib, name)
            assert value is getattr(mod, name), f"emlib.{name} is not {module}.{name}"
            value = getattr(mod, name)
            assert name in mod.__all__, f"{name} is missing from {module}.__all__"
            defined_in = getattr(value, "__module__", None) if isinstance(value, type) or callable(value) else None
            if defined_in is not None:  # classes and functions: defined there (or in one of its submodules)
                assert defined_in == module or defined_in.startswith(module + "."), f"{name} is defined in {defined_in}, not {module}"


def test_all_is_the_api_once_each_and_dir_lists_it() -> None:
    names = [name for names in emlib._API.values() for name in names]
    assert len(names) == len(set(names)), "a name is listed under two modules"
    assert emlib.__all__ == ["__version__", *names]
    assert set(emlib.__all__) <= set(dir(emlib))
    with pytest.raises(AttributeError, match="module 'emlib' has no attribute 'no_such_name'"):
        emlib.no_such_name  # noqa: B018


def test_no_public_name_is_also_a_submodule_name() -> None:
    assert SHADOWED == []  # emlib.evaluate (module) was renamed emlib.evaluation for this


@pytest.mark.parametrize("module", MODULES)
def test_every_name_in_a_module_all_exists(module: str) -> None:
    mod = importlib.import_module(module)
    exported = getattr(mod, "__all__", ())
    assert len(exported) == len(set(exported)), f"{module}.__all__ lists a name twice"
    missing = [name for name in exported if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names {missing}, which it does not have"


def test_importing_emlib_imports_no_subpackage() -> None:
    code = "import sys, emlib; print(sorted(m for m in sys.modules if m.startswith('emlib.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    # names are imported on first use (PEP 562); only emlib.paths (os and pathlib alone), which makes the
    # $EMLIB_* folders absolute before anything changes folder
    assert done.stdout.strip() == "['emlib.paths']"
