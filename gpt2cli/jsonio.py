"""JSON as every command writes it: valid JSON (RFC 8259), so a non-finite number (NaN, inf),
which has no JSON form, is written as ``null``."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every non-finite float, at any depth of dicts, lists and tuples, None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of ``finite(value)``; never writes NaN or Infinity."""
    return json.dumps(finite(value), allow_nan=False, **options)
