"""Quantities as people read them: bytes in KiB/MiB/GiB, counts with thousands separators,
durations with their unit. Tables and the HTML page show these; JSON and CSV keep raw numbers.

A metric's kind of quantity follows from its name (the public metric names end in ``_bytes``
or ``_ns`` where they are sizes or times; every other metric is a count).
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["bytes", "ns", "count"]

BINARY_UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))
TIME_UNITS = (("s", 1e9), ("ms", 1e6), ("µs", 1e3))


def kind_of(metric: str) -> Kind:
    """What a metric measures: ``bytes`` (``*_bytes``), ``ns`` (``*_ns``) or a ``count``."""
    if metric.endswith("_bytes"):
        return "bytes"
    if metric.endswith("_ns"):
        return "ns"
    return "count"


def _three_digits(value: float) -> str:
    """``value`` (at most 1024) to three significant digits: 1.23, 51.9, 269."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_bytes(value: float) -> str:
    """``54_398_976`` -> ``51.9 MiB``, ``2 << 30`` -> ``2 GiB``; below 1 KiB, bytes: ``512 B``."""
    sign, size = ("-" if value < 0 else ""), abs(value)
    for unit, scale in BINARY_UNITS:
        if size >= scale:
            scaled = size / scale
            return f"{sign}{f'{scaled:.0f}' if scaled.is_integer() else _three_digits(scaled)} {unit}"
    return f"{sign}{size:,.0f} B" if float(size).is_integer() else f"{sign}{size:,.1f} B"


def format_duration(ns: float) -> str:
    """Nanoseconds in the unit that keeps three significant digits: ``233.7e6`` -> ``234 ms``."""
    sign, size = ("-" if ns < 0 else ""), abs(ns)
    for unit, scale in TIME_UNITS:
        if size >= scale:
            return f"{sign}{_three_digits(size / scale)} {unit}"
    if size == 0 or float(size).is_integer():
        return f"{sign}{size:.0f} ns"
    return f"{sign}{_three_digits(size) if size >= 1 else f'{size:.2g}'} ns"


def format_count(value: float) -> str:
    """Whole counts with thousands separators (``12,799``); a fraction (a mean) to three
    significant digits, ``<0.01`` for a tiny non-zero one."""
    if float(value).is_integer():
        return f"{int(value):,}"
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size < 0.01:
        return f"{'-' if value < 0 else ''}<0.01"
    return f"{value:.1f}" if size >= 10 else f"{value:.2f}"


def format_quantity(metric: str, value: float) -> str:
    """``value`` of ``metric`` as a person reads it (:func:`kind_of` chooses the format)."""
    kind = kind_of(metric)
    if kind == "bytes":
        return format_bytes(value)
    if kind == "ns":
        return format_duration(value)
    return format_count(value)


def format_value(value: object) -> str:
    """A value of no known metric (a plugin's report column): numbers as counts, the rest as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return format_count(value)


def axis_scale(kind: Kind, largest: float) -> tuple[str, float]:
    """The unit an axis of ``kind`` reads in and the divisor to get there, chosen from the
    largest value it shows: bytes in B..TiB, times in ns..s, counts as they are."""
    if kind == "bytes":
        return next(((unit, float(scale)) for unit, scale in BINARY_UNITS if largest >= scale), ("B", 1.0))
    if kind == "ns":
        return next(((unit, scale) for unit, scale in TIME_UNITS if largest >= scale), ("ns", 1.0))
    return "", 1.0
