"""Constraints of configuration fields, declared next to the fields, and the one check that applies them.

A dataclass of :mod:`emlib.config` declares what each field accepts in the field itself, as
scikit-learn declares ``_parameter_constraints`` beside its parameters::

    epochs: int = field(default=20, metadata=Interval(1).meta)
    regime: str = field(default="frozen", metadata=Options(REGIMES).meta)

and calls :func:`check_fields` on construction. The type comes from the annotation (``int``,
``float | None``, ``str``, a class name), the range or choice list from the field's constraint, so a
string seed, a float batch size, a number written as a string, a negative sample count or an unknown
regime ends in one sentence that says what to write instead, and each rule is checked in one place.
Numbers must always be finite; a number field without a constraint must be at least 0, and an
integer without an upper bound must fit in 64 bits (:data:`INT_LIMIT`, what torch and numpy take).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from emlib.errors import ConfigError

__all__ = ["INT_LIMIT", "Interval", "Options", "Pattern", "check_fields", "check_field", "check_choice", "check_keys"]

#: The key of a field's constraint in ``dataclasses.field(metadata=...)``.
CONSTRAINT = "constraint"
#: Integers of a field without an upper bound must be below it: torch and numpy take them as 64-bit integers.
INT_LIMIT = 2**63


def _number(value: float) -> str:
    """A bound in words: integers exactly (``4294967295``), other numbers short (``0.5``)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


@dataclass(frozen=True)
class Interval:
    """A numeric range: ``low`` (inclusive unless ``low_open``) to ``high`` (exclusive unless ``high_closed``).

    Examples
    --------
    >>> Interval(1).describe(), Interval(0, low_open=True).describe(), Interval(0, 1).describe()
    ('positive', 'positive', 'in [0, 1)')
    >>> Interval(0, 2**32 - 1, high_closed=True).describe()
    'in [0, 4294967295]'
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_closed: bool = False
    hint: str = ""

    @property
    def meta(self) -> dict[str, Interval]:
        """The ``metadata`` of a dataclass field with this constraint."""
        return {CONSTRAINT: self}

    def accepts(self, value: float) -> bool:
        """True when ``value`` lies in the interval."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value <= self.high if self.high_closed else value < self.high)

    def describe(self) -> str:
        """The interval in words: ``positive``, ``at least 0`` or ``in [0, 1)``."""
        if self.high is None and (self.low, self.low_open) in ((1, False), (0, True)):
            return "positive"
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        low = "(" if self.low_open else "["
        high = "]" if self.high_closed else ")"
        return f"in {low}{_number(self.low)}, {_number(self.high)}{high}"


@dataclass(frozen=True)
class Options:
    """A choice from ``choices``; with ``many=True`` a non-empty sequence of distinct choices."""

    choices: tuple[str, ...]
    many: bool = False

    @property
    def meta(self) -> dict[str, Options]:
        """The ``metadata`` of a dataclass field with this constraint."""
        return {CONSTRAINT: self}


@dataclass(frozen=True)
class Pattern:
    """A string matching ``regex`` in full; ``words`` lists the allowed forms for the error."""

    regex: str
    words: str

    @property
    def meta(self) -> dict[str, Pattern]:
        """The ``metadata`` of a dataclass field with this constraint."""
        return {CONSTRAINT: self}


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


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """One sentence when ``value`` is not one of ``choices``.

    Examples
    --------
    >>> check_choice("regime", "full", ("frozen", "lora"))
    Traceback (most recent call last):
    emlib.errors.ConfigError: regime='full' is not allowed; choose one of ['frozen', 'lora']
    """
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(choices)}")


def check_keys(names: Iterable[str], cls: type, *, what: str | None = None) -> None:
    """One sentence naming the keys of ``names`` that are not fields of the dataclass ``cls``.

    Examples
    --------
    >>> from emlib.config import RunConfig
    >>> check_keys(["epochs", "colour"], RunConfig)
    Traceback (most recent call last):
    emlib.errors.ConfigError: unknown RunConfig keys ['colour']; allowed keys are [...]
    """
    known = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what or cls.__name__ + ' keys'} {unknown}; allowed {'are' if what else 'keys are'} {known}")


def _finite(value: float) -> bool:
    """True for a number that is finite as a float (an integer too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown(value: Any) -> str:
    """``value`` for a sentence: a very long integer by its digits' count, not a screenful of them."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}... ({len(text)} digits)"


def _check_type(name: str, value: Any, base: str, optional: bool) -> None:
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be True or False")
    elif base in ("int", "float"):
        want_int = base == "int"
        ok = isinstance(value, int) if want_int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            what = " (not a string)" if isinstance(value, str) else ""
            raise ConfigError(f"{name}={value!r} must be {'an integer' if want_int else 'a number'}{what}"
                              f"{_number_hint(name, value, want_int)}")
        if not want_int and not _finite(value):  # an int is finite; a huge one is refused by its range
            raise ConfigError(f"{name}={_shown(value)} must be a finite number")
    elif base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r} must be a string" + (" or None" if optional else ""))
    elif base.startswith("tuple"):
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise ConfigError(f"{name}={value!r} must be a tuple of names")
    elif base[:1].isupper() and type(value).__name__ != base:  # a class of emlib.config, which this module cannot import
        raise ConfigError(f"{name}={value!r} must be a {base}, e.g. {base}()")


def check_field(name: str, value: Any, kind: str, constraint: Interval | Options | Pattern | None = None) -> None:
    """Check ``value`` against a field annotation such as ``int``, ``float | None`` or ``str``, then its constraint.

    Without a constraint a number must be at least 0.

    Examples
    --------
    >>> check_field("seed", "1", "int")
    Traceback (most recent call last):
    emlib.errors.ConfigError: seed='1' must be an integer (not a string); write seed=1
    >>> check_field("epochs", 0, "int", Interval(1))
    Traceback (most recent call last):
    emlib.errors.ConfigError: epochs=0 must be positive
    """
    optional = kind.endswith("| None")
    base = kind.removesuffix("| None").strip()
    if value is None and optional:
        return
    _check_type(name, value, base, optional)
    if base in ("int", "float"):
        interval = constraint if isinstance(constraint, Interval) else Interval(0)
        if not interval.accepts(value):
            raise ConfigError(f"{name}={_shown(value)} must be {interval.describe()}" + (" or None" if optional else "")
                              + interval.hint)
        if base == "int" and interval.high is None and abs(value) >= INT_LIMIT:
            raise ConfigError(f"{name}={_shown(value)} must be below 2**63 (torch and numpy take it as a 64-bit integer)"
                              + interval.hint)
    elif isinstance(constraint, Options):
        if constraint.many:
            values = tuple(value)
            if not values or len(set(values)) != len(values) or any(v not in constraint.choices for v in values):
                raise ConfigError(f"{name} {values!r} are not allowed; give distinct names from {constraint.choices}")
        else:
            check_choice(name, value, constraint.choices)
    elif isinstance(constraint, Pattern) and not re.fullmatch(constraint.regex, value):
        raise ConfigError(f"{name}={value!r} is not allowed; use {constraint.words}")


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation and declared constraint."""
    for f in dataclasses.fields(obj):
        check_field(f.name, getattr(obj, f.name), str(f.type), f.metadata.get(CONSTRAINT))
