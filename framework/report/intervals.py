"""The table of ``compare --seeds N`` / ``--baseline``: each metric's mean over the seeds with
its 95 % interval, and the ratio to the baseline with a mark where seed noise cannot tell the
policies apart (permalloc.run.seedstats)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from permalloc.model.metrics import METRICS

SAME = "≈"  # cannot be told apart from the baseline at this many seeds


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"


def _centre(entry: dict[str, Any]) -> str:
    if entry["low"] is None or entry["low"] == entry["high"]:
        return _number(entry["centre"])
    return f"{_number(entry['centre'])} ±{_number((entry['high'] - entry['low']) / 2)}"


def ratio_text(entry: Mapping[str, Any]) -> str:
    """A baseline comparison's ratio with its interval, marked ``≈`` when seed noise cannot tell
    the two policies apart."""
    ratio = entry["ratio"]
    if ratio["centre"] is None:
        text = "n/a"
    elif ratio["low"] is None:
        text = f"×{ratio['centre']:.3g}"
    else:
        text = f"×{ratio['centre']:.3g} [{ratio['low']:.3g}, {ratio['high']:.3g}]"
    return text if entry["distinguishable"] else f"{text} {SAME}"


def intervals_table(summary: dict[str, Any]) -> Table:
    seeds = summary["seeds"]
    baseline = summary.get("baseline")
    title = f"mean over {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({seeds[0]}..{seeds[-1]}), ±: half of the " \
            f"{summary['confidence']:.0%} interval"
    if baseline:
        title += f"; others as a ratio to {baseline['policy']}, {SAME}: not told apart from seed noise"
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    names = list(summary["policies"])
    for name in names:
        table.add_column(escape(name), justify="right")  # a variant's [FIELD=VALUE] is not markup
    for metric in METRICS:
        cells = []
        for name in names:
            if baseline and name != baseline["policy"]:
                cells.append(ratio_text(baseline["policies"][name][metric]))
            else:
                cells.append(_centre(summary["policies"][name][metric]))
        table.add_row(metric, *cells)
    return table


def print_intervals(summary: dict[str, Any], console: Console) -> None:
    console.print(intervals_table(summary))
