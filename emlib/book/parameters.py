"""A chapter's parameters: what its ``parameters`` cell declares, and the ``-p`` values checked against it.

papermill pastes every parameter of a build into a new cell as ``name = value``; a name that is
not an identifier would be pasted as code and run. So before any chapter runs, every ``-p KEY=VALUE``
is checked against the chapter's parameters cell (:func:`chapter_parameters`):

- the key is a Python identifier the cell declares (a name no chapter built declares is refused,
  and one only some chapters declare goes to those only: :func:`parameters_for`);
- the value has the declared type: the annotation when there is one (``seed: int | None = None``),
  else the type of the default (``device = "auto"`` takes a string); a default of None without an
  annotation declares no type, and takes only None;
- ``profile`` is never a ``-p`` parameter: the build's profile (``--profile``) also sets its
  banner, timings and weights check, so it is passed by the build itself.

Last, the cell papermill would paste is parsed back (:func:`check_injection`): it must be only
assignments of the given literal values.
"""

from __future__ import annotations

import ast
import keyword
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emlib.errors import ConfigError

__all__ = [
    "PROFILE_PARAMETER",
    "ChapterParameter",
    "chapter_parameters",
    "check_parameters",
    "parameters_for",
    "check_injection",
]

#: The parameter the build sets from ``--profile``, never from ``-p``.
PROFILE_PARAMETER = "profile"

_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict, "None": type(None)}
_SHOWN = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
          dict: "a mapping", type(None): "null"}


@dataclass(frozen=True)
class ChapterParameter:
    """One assignment of a chapter's parameters cell.

    Attributes
    ----------
    name : str
    default : object
        The literal the cell assigns.
    types : tuple of type
        The types a value may have (the annotation's, else the default's); ``(NoneType,)`` for a
        None default without an annotation.
    """

    name: str
    default: Any
    types: tuple[type, ...]

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has one of :attr:`types` (``True`` is no integer; an integer is a number)."""
        kind = type(value)
        if kind is int and float in self.types:
            return True
        if kind not in self.types:
            return False
        if kind is list and isinstance(self.default, list) and self.default:
            inner = {type(item) for item in self.default}
            return all(type(item) in inner for item in value)
        return True

    def describe(self) -> str:
        """The declared types in words (``an integer or null``)."""
        return " or ".join(_SHOWN.get(t, t.__name__) for t in self.types)


def _annotation_types(node: ast.expr | None) -> tuple[type, ...] | None:
    """The types an annotation names (``int | None``, ``Optional[str]``, ``list[str]``), or None if it names others."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and node.value is None:
        return (type(None),)
    if isinstance(node, ast.Name) and node.id in _TYPE_NAMES:
        return (_TYPE_NAMES[node.id],)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _annotation_types(node.left), _annotation_types(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        if node.value.id == "Optional":
            inner = _annotation_types(node.slice)
            return None if inner is None else inner + (type(None),)
        return _annotation_types(node.value)
    return None


def chapter_parameters(nb: Any) -> dict[str, ChapterParameter]:
    """The parameters a chapter declares: the literal assignments of its cell tagged ``parameters``.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The chapter (:func:`emlib.book.execute.read_notebook_source`).

    Returns
    -------
    dict of str to ChapterParameter
        In the cell's order; empty when the chapter has no parameters cell.
    """
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    declared: dict[str, ChapterParameter] = {}
    for node in ast.parse(cell.source).body:
        target, value, annotation = None, None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value, annotation = node.target, node.value, node.annotation
        if not isinstance(target, ast.Name):
            continue
        try:
            default = ast.literal_eval(value)
        except ValueError:
            continue  # not a literal: papermill could not override it either
        types = _annotation_types(annotation) or (type(default),)
        if float in types and int not in types:
            types += (int,)
        declared[target.id] = ChapterParameter(target.id, default, tuple(dict.fromkeys(types)))
    return declared


def _shown(key: Any, value: Any) -> str:
    """``-p key=value`` as typed (YAML words for null and booleans), cut at 80 characters."""
    shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    text = f"-p {key}={shown}"
    return text if len(text) <= 80 else text[:77] + "..."


def check_parameters(
    parameters: Mapping[str, Any], declared: Mapping[str, Mapping[str, ChapterParameter]], *, profile: str = "smoke"
) -> None:
    """Raise ConfigError, before anything runs, unless every parameter is declared by a chapter and of its type.

    Parameters
    ----------
    parameters : mapping of str to object
        The ``-p`` values (YAML-parsed).
    declared : mapping of str to mapping of str to ChapterParameter
        Each chapter built and its :func:`chapter_parameters`.
    profile : str, default='smoke'
        The build's profile (named in the sentence that refuses ``-p profile=...``).

    Raises
    ------
    ConfigError
        A key that is not an identifier, is ``profile``, or no chapter declares; a value of another type.
    """
    chapters = ", ".join(declared) or "none"
    known = sorted({n for params in declared.values() for n in params} - {PROFILE_PARAMETER})
    for key, value in parameters.items():
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise ConfigError(
                f"{_shown(key, value)} does not name a parameter (a name such as seed, declared in a chapter's "
                f"parameters cell), so it is refused and nothing runs; the chapters built ({chapters}) take "
                f"{', '.join(known) or 'no parameters'}"
            )
        if key == PROFILE_PARAMETER:
            raise ConfigError(
                f"-p profile={value} would run the chapters on {value} while the build's banner, timings and weights "
                f"check follow --profile {profile}; pass --profile {value} instead of -p profile={value}"
            )
        owners = [name for name, params in declared.items() if key in params]
        if not owners:
            raise ConfigError(
                f"-p {key} is not a parameter of the chapters built ({chapters}); their parameters cells declare "
                f"{', '.join(known) or 'none'}"
            )
        for name in owners:
            param = declared[name][key]
            if not param.accepts(value) and param.types == (type(None),):
                raise ConfigError(
                    f"chapter {name} declares no type for {key} (its default is None without an annotation), so "
                    f"{_shown(key, value)} is refused; annotate it in the parameters cell, e.g. `{key}: str | None = None`"
                )
            if not param.accepts(value):
                quote = str in param.types and value is not None and not isinstance(value, str)
                hint = f" (quote it: -p {key}='\"{value}\"')" if quote else ""
                raise ConfigError(
                    f"{_shown(key, value)} is {_SHOWN.get(type(value), type(value).__name__)}, but chapter {name} "
                    f"declares {key} as {param.describe()} (default {param.default!r}); pass {param.describe()}{hint}"
                )


def parameters_for(parameters: Mapping[str, Any], declared: Mapping[str, ChapterParameter]) -> dict[str, Any]:
    """The ``parameters`` one chapter declares (a parameter only some chapters take goes to those only)."""
    return {key: value for key, value in parameters.items() if key in declared}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def check_injection(parameters: Mapping[str, Any], *, chapter: str) -> None:
    """Raise ConfigError unless the cell papermill pastes for ``parameters`` is only ``name = <that literal>``.

    The last guard before a kernel starts: whatever papermill's translation does with a value, a
    pasted cell that would run anything but these assignments is refused.
    """
    from papermill.translators import PythonTranslator  # lazy: papermill comes with the [book] extra

    code = PythonTranslator.codify(dict(parameters))
    try:
        body = ast.parse(code).body
    except SyntaxError:
        body = [None]
    names = []
    for node in body:
        ok = isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        if ok:
            name = node.targets[0].id
            try:
                ok = name in parameters and _same(ast.literal_eval(node.value), parameters[name])
            except ValueError:
                ok = False
        if not ok:
            raise ConfigError(
                f"the parameters of chapter {chapter} ({', '.join(map(str, parameters))}) would not be pasted into the "
                "notebook as plain values, so nothing runs; pass strings, numbers, true/false, null or lists of them"
            )
        names.append(name)
    if sorted(names) != sorted(parameters):
        raise ConfigError(f"the parameters of chapter {chapter} ({', '.join(map(str, parameters))}) would not all be "
                          "pasted into the notebook, so nothing runs; pass each once as -p KEY=VALUE")
