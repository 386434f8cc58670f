"""Input validation shared by the machinery and the models.

Every boundary of the package (Python API and command line) checks its inputs with these helpers
before any compute, so that an invalid value is refused with one message naming the parameter and
its allowed range.  On the command line a :class:`ParameterError` becomes a usage error (exit
status 2, no traceback).
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["ParameterError", "require", "check_positive", "check_nonnegative", "check_int", "check_choice"]


class ParameterError(ValueError):
    """An input value is outside its allowed range.  The message names both."""


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Raise :class:`ParameterError` unless ``condition`` holds."""
    if not condition:
        raise ParameterError(f"invalid {name}={value!r}: allowed range is {allowed}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """``value`` must be a finite number > 0 (or +inf where ``allow_inf``)."""
    ok = _is_number(value) and value > 0 and (allow_inf or math.isfinite(value)) and not math.isnan(value)
    require(ok, name, value, "a number > 0" + (" (inf allowed)" if allow_inf else ""))
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` must be a finite number >= 0."""
    ok = _is_number(value) and math.isfinite(value) and value >= 0
    require(ok, name, value, "a finite number >= 0")
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


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    require(value in choices, name, value, "one of " + ", ".join(map(repr, choices)))
    return value
