"""Checks of configuration values against the annotation of their dataclass field: type, then range.

:class:`~emlib.config.RunConfig` and :class:`~emlib.config.LoraSettings` call :func:`check_field` for
each field on construction, so a string seed, a float batch size, a number written as a string or a
negative sample count ends in one sentence that says what to write instead.
"""

from __future__ import annotations

import math
from typing import Any

from emlib.errors import ConfigError

__all__ = ["check_field"]


#: Integer fields that must be at least 1 (other integer fields must be at least 0).
_POSITIVE_INTS = frozenset({
    "epochs", "batch_size", "head_channels", "unet_channels", "crop", "long_edge", "train_slices", "samples_per_epoch",
    "eval_window", "eval_slices", "eval_region", "rank",
})
#: Number fields that must be above 0 (other number fields must be finite and at least 0).
_POSITIVE_NUMBERS = frozenset({"lr", "lora_lr", "grad_clip", "alpha"})


def _number_hint(name: str, value: Any, want_int: bool) -> str:
    """``; write name=N`` when ``value`` is a number in disguise (a string, or a whole float for an int)."""
    if isinstance(value, bool):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if want_int and number.is_integer():
        return f"; write {name}={int(number)}"
    return "" if want_int else f"; write {name}={number!r}"


def check_field(name: str, value: Any, kind: str) -> None:
    """Check ``value`` against a field annotation such as ``int``, ``float | None`` or ``str``, and its range.

    Integers must be at least 1 for the sizes and counts in ``_POSITIVE_INTS`` and at least 0
    otherwise; numbers must be finite, above 0 for ``_POSITIVE_NUMBERS`` and at least 0 otherwise. A
    class name (``LoraSettings``) asks for an instance of that class.

    Examples
    --------
    >>> check_field("seed", "1", "int")
    Traceback (most recent call last):
    emlib.errors.ConfigError: seed='1' must be an integer (not a string); write seed=1
    """
    optional = kind.endswith("| None")
    base = kind.removesuffix("| None").strip()
    if value is None and optional:
        return
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be True or False")
    elif base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            what = " (not a string)" if isinstance(value, str) else ""
            raise ConfigError(f"{name}={value!r} must be an integer{what}{_number_hint(name, value, True)}")
        low = 1 if name in _POSITIVE_INTS else 0
        if value < low:
            raise ConfigError(f"{name}={value} must be {'positive' if low else 'at least 0'}" + (" or None" if optional else ""))
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = " (not a string)" if isinstance(value, str) else ""
            raise ConfigError(f"{name}={value!r} must be a number{what}{_number_hint(name, value, False)}")
        if not math.isfinite(value):
            raise ConfigError(f"{name}={value} must be a finite number")
        if value <= 0 if name in _POSITIVE_NUMBERS else value < 0:
            raise ConfigError(f"{name}={value} must be {'positive' if name in _POSITIVE_NUMBERS else 'at least 0'}")
    elif base == "str" and not isinstance(value, str):
        raise ConfigError(f"{name}={value!r} must be a string" + (" or None" if optional else ""))
    elif base[:1].isupper() and type(value).__name__ != base:  # a class of emlib.config, which this module cannot import
        raise ConfigError(f"{name}={value!r} must be a {base}, e.g. {base}()")
