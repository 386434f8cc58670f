"""Input validation shared by the machinery and the models.

Every boundary of the package (Python API and command line) checks its inputs with these helpers
before any compute, so that an invalid value is refused with one message naming the parameter and
its allowed range.  On the command line a :class:`ParameterError` becomes a usage error (exit
status 2, no traceback).
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["ParameterError", "require", "check_positive", "check_nonnegative", "check_int", "check_choice", "check_flag",
           "Range", "positive", "nonnegative", "integer", "fraction"]


class ParameterError(ValueError):
    """An input value is outside its allowed range.  The message names both."""


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Raise :class:`ParameterError` unless ``condition`` holds."""
    if not condition:
        raise ParameterError(f"invalid {name}={value!r}: allowed range is {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value: Any, *, allow_inf: bool = False, high: float | None = None) -> float:
    """``value`` must be a finite number > 0 (or +inf where ``allow_inf``), and <= ``high`` if given."""
    ok = _is_number(value) and value > 0 and (allow_inf or math.isfinite(value)) and not math.isnan(value)
    ok = ok and (high is None or value <= high)
    allowed = "a number > 0" if high is None else f"0 < {name} <= {_num(high)}"
    require(ok, name, value, allowed + (" (inf allowed)" if allow_inf else ""))
    return float(value)


def check_nonnegative(name: str, value: Any, *, high: float | None = None) -> float:
    """``value`` must be a finite number >= 0, and <= ``high`` if given."""
    ok = _is_number(value) and math.isfinite(value) and value >= 0 and (high is None or value <= high)
    require(ok, name, value, "a finite number >= 0" if high is None else f"0 <= {name} <= {_num(high)}")
    return float(value)


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` must be an integer in [low, high]."""
    ok = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    ok = ok and value >= low and (high is None or value <= high)
    allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    require(ok, name, value, allowed)
    return int(value)


def check_flag(name: str, value: Any) -> bool:
    """``value`` must be True or False (numpy booleans included)."""
    require(isinstance(value, bool) or type(value).__name__ == "bool_", name, value, "True or False")
    return bool(value)


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    require(value in choices, name, value, "one of " + ", ".join(map(repr, choices)))
    return value


def _num(x: float) -> str:
    """1e4 rather than 1e+04 or 10000 in range texts."""
    if x >= 1e4 and math.log10(x).is_integer():
        return f"1e{int(math.log10(x))}"
    return f"{x:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


class Range:
    """A reusable check with its allowed range in words: ``Range(kind, low, high)(name, value)``
    returns the normalised value or raises :class:`ParameterError`; ``str(r)`` is the range as
    help texts show it (e.g. ``0 < x <= 1e+04``).  Build one with :func:`positive`,
    :func:`nonnegative`, :func:`integer` or :func:`fraction`."""

    def __init__(self, kind: str, low: float | None = None, high: float | None = None, optional: bool = False):
        self.kind, self.low, self.high, self.optional = kind, low, high, optional

    def or_none(self) -> "Range":
        """The same range, with None also accepted (an option whose default is decided elsewhere)."""
        return Range(self.kind, self.low, self.high, optional=True)

    def __call__(self, name: str, value: Any):
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not _is_number(value):
            raise ParameterError(f"invalid {name}={value!r}: allowed range is {self.describe(name)}")
        if self.kind == "positive":
            return check_positive(name, value, high=self.high)
        if self.kind == "nonnegative":
            return check_nonnegative(name, value, high=self.high)
        if self.kind == "fraction":
            ok = math.isfinite(value) and 0 <= value < 1
            require(ok, name, value, self.describe(name))
            return float(value)
        return check_int(name, value, int(self.low), None if self.high is None else int(self.high))

    def describe(self, name: str = "x") -> str:
        if self.kind == "positive":
            return f"0 < {name} <= {_num(self.high)}" if self.high is not None else f"{name} > 0"
        if self.kind == "nonnegative":
            return f"0 <= {name} <= {_num(self.high)}" if self.high is not None else f"{name} >= 0"
        if self.kind == "fraction":
            return f"0 <= {name} < 1"
        return (f"integer {name} >= {int(self.low)}" if self.high is None
                else f"integer {int(self.low)} <= {name} <= {int(self.high)}")

    def __repr__(self) -> str:
        return f"Range({self.describe()!r})"


def positive(high: float | None = None) -> Range:
    """A finite number in (0, high]."""
    return Range("positive", None, high)


def nonnegative(high: float | None = None) -> Range:
    """A finite number in [0, high]."""
    return Range("nonnegative", None, high)


def integer(low: int = 1, high: int | None = None) -> Range:
    """An integer in [low, high] (a float with an integer value is accepted and converted)."""
    return Range("integer", low, high)


def fraction() -> Range:
    """A number in [0, 1)."""
    return Range("fraction")
