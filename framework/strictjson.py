"""Strict JSON out: NaN and infinities are refused by name, never written as ``NaN``.

Python's ``json`` writes ``NaN``/``Infinity``, which no strict parser (jq, browsers,
``json.loads(..., parse_constant=...)``) accepts; a result holding one is a bug somewhere
upstream, so it is named by its path instead of written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from permalloc.errors import OutputError


def nonfinite_path(value: Any, path: str = "") -> str | None:
    """The path (``results[0].extra.ratio``) of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "the value")
    if isinstance(value, dict):
        for key, item in value.items():
            found = nonfinite_path(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = nonfinite_path(item, f"{path}[{index}]")
            if found:
                return found
    return None


def problem(value: Any) -> str | None:
    """Why ``value`` cannot be written as strict JSON (a NaN's path, a type JSON has not), or None."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:  # a NaN, a set, an object, a key JSON cannot have
        bad = nonfinite_path(value)
        return f"{bad} is not a finite number" if bad else " ".join(str(exc).split())
    return None


def dumps(value: Any, what: str, **kwargs: Any) -> str:
    """``json.dumps`` with ``allow_nan=False``; ``what`` names the document in the error."""
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except (TypeError, ValueError):
        raise OutputError(f"{what}: {problem(value)}; strict JSON cannot hold it") from None
