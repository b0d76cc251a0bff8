"""The check of a number a user gives: finite, and inside the range it means something in.

NaN compares false with everything, so a range check written as ``if value < low: refuse``
lets it through; every float a user gives goes through :func:`check_number` (or a check
written as ``not low <= value <= high``) where it is parsed.
"""

from __future__ import annotations

import math

from gpt2cli.errors import UsageError


def check_number(
    value: float,
    option: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` if finite and within [low, high] (an end excluded when ``*_open``), else a
    UsageError (exit 2) naming ``option`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number, not {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        if low is not None and high is not None:
            where = f"in {left}, {right}"
        elif low is not None:
            where = f"{'above' if low_open else 'at least'} {low:g}"
        else:
            where = f"{'below' if high_open else 'at most'} {high:g}"
        raise UsageError(f"{option} must be {where}, not {value:g}")
    return value
