"""JSON as the standard defines it: no ``NaN``, no ``Infinity``.

Python's ``json`` writes ``NaN`` for a float NaN, which strict parsers (browsers'
``JSON.parse``, ``jq``, Go, Rust's serde) reject: a ranking of single-seed sequences
held 24 of them (an interval of one run has no width). Every JSON file the tool
writes goes through :func:`dumps`, where a non-finite number becomes ``null`` ("not
measured"); every JSON file it reads from a place others can write goes through
:func:`loads`, which refuses them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf), at any depth, replaced by None."""
    if isinstance(value, float):  # numpy's float64 is a float too
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` that writes strict JSON: non-finite numbers as null."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse)
