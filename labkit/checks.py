"""One wording for parameter errors: ``"x=... is not valid; allowed: ..."``.

Why a module at the bottom of the dependency graph: a mistyped size, profile or training setting must
fail in one line that names the parameter and the values it may take, whether it reaches a dataset, the
trainer, a profile or the command line. Every layer of labkit imports its checks from here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = ["check_choice", "check_fraction", "check_int", "check_like", "check_positive", "invalid"]


def invalid(name: str, value: object, allowed: str) -> ValueError:
    """The lab's error for a bad parameter: ``name=value is not valid; allowed: ...``."""
    return ValueError(f"{name}={value!r} is not valid; allowed: {allowed}")


def check_int(name: str, value: object, low: int | None = None, high: int | None = None,
              high_text: str | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]``; else ``ValueError``.

    The message names the parameter, its value and the allowed range, e.g.
    ``"D=5000 is not valid; allowed: 1 <= D <= T**L = 4096"`` (``high_text`` is the ``"T**L = 4096"`` part).
    Integral floats such as ``1e5`` are accepted, since people write sizes that way.
    """
    bound = f"{high_text} = {high}" if high_text and high is not None else (f"{high}" if high is not None else None)
    if low is not None and bound is not None:
        allowed = f"{low} <= {name} <= {bound}"
    elif low is not None:
        allowed = f"{name} >= {low}"
    elif bound is not None:
        allowed = f"{name} <= {bound}"
    else:
        allowed = "an integer"
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and value.is_integer():
        value, ok = int(value), True
    if not ok:
        raise ValueError(f"{name}={value!r} is not valid; allowed: an integer, {allowed}")
    value = int(value)  # type: ignore[arg-type]
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name}={value} is not valid; allowed: {allowed}")
    return value


def _real(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise invalid(name, value, allowed)
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (a learning rate, a tolerance)."""
    value = _real(name, value, "a number > 0")
    if not value > 0:
        raise invalid(name, value, "a number > 0")
    return value


def check_fraction(name: str, value: object, *, closed: bool = True) -> float:
    """Return ``value`` as a float in [0, 1] (``closed=False``: in [0, 1))."""
    allowed = "a number in [0, 1]" if closed else "a number in [0, 1)"
    value = _real(name, value, allowed)
    if not (0 <= value <= 1 if closed else 0 <= value < 1):
        raise invalid(name, value, allowed)
    return value


def check_choice(name: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``; else ``ValueError`` listing them."""
    if value not in choices:
        raise invalid(name, value, ", ".join(repr(c) for c in choices))
    return value


def check_like(name: str, value: object, like: object) -> object:
    """``value`` if it has the type of ``like`` (a default or a profile's value), else ``ValueError``.

    An int is accepted for a float (``-p lr 1`` means 1.0) and returned as one; a bool is never taken
    for an int or the other way round.
    """
    expected = type(like)
    if isinstance(value, bool) != isinstance(like, bool):
        raise invalid(name, value, f"a value of type {expected.__name__}")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        raise invalid(name, value, f"a value of type {expected.__name__}")
    return value
