"""A sweep drawn: each metric against one swept axis, a line per policy, the seeds' 95 %
interval as a band.

The x axis is the swept field (``--x``; default: the first axis with more than one value),
logarithmic (base 2) when its values span more than a decade (CPU counts, RAM sizes), its ticks the swept values
themselves; y axes follow :mod:`permalloc.report.plots` (units, log where values span decades).
Every other column that varies (another axis, the scenario, the workload) splits the lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from permalloc.atomicfile import write_bytes
from permalloc.errors import SpecError
from permalloc.report.plots import check_plot_path, plt, render, set_value_axis, value_unit
from permalloc.report.quantities import axis_scale, format_count
from permalloc.report.tables import varying_labels

SWEEP_METRICS = ("shootdowns", "ipis", "directmap_splits_2m", "directmap_4k_bytes", "allocated_bytes", "cost_ns")
TABLE_METRICS = SWEEP_METRICS[:4]  # what fits 80 columns with a policy, an axis and intervals


def default_x(swept: Sequence[str], table: pd.DataFrame) -> str:
    """The first swept column with more than one value."""
    for name in swept:
        if table[name].nunique() > 1:
            return name
    raise SpecError("the sweep has no axis with more than one value to draw against; give --x COLUMN")


def _x_values(values: Sequence[float], name: str) -> tuple[list[float], str]:
    """The x positions in the unit the axis reads in (memory in GiB), and its label."""
    if name in ("memory", "initrd"):  # the machine spec's sizes, in bytes
        unit, divisor = axis_scale("bytes", max(values))
        return [v / divisor for v in values], f"{name} ({unit})"
    return list(values), name


def sweep_figure(summary: pd.DataFrame, x: str, metrics: Sequence[str], title: str, swept: Sequence[str] = ()
                 ) -> Figure:
    """One panel per metric of the run totals (op ``all``) in ``summary`` (:func:`tidy.summary`);
    ``swept``: the grid's swept columns, those that vary besides ``x`` split the lines."""
    totals = summary[(summary["op"] == "all") & (summary["stat"] == "total")]
    unknown = [m for m in metrics if m not in set(totals["metric"])]
    if unknown:
        raise SpecError(f"--metric {unknown[0]!r}: not a metric of the sweep; metrics: "
                        f"{', '.join(dict.fromkeys(totals['metric']))}")
    split = [c for c in varying_labels(totals, [c for c in swept if c != x]) if c != x]
    numeric = pd.api.types.is_numeric_dtype(totals[x])
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), constrained_layout=True, squeeze=False)
    xs_all = sorted(totals[x].unique()) if numeric else list(dict.fromkeys(totals[x]))
    for ax, metric in zip(axes.flat, metrics):
        rows_of = totals[totals["metric"] == metric]
        unit, divisor = value_unit(metric, list(rows_of["mean"]) + list(rows_of["high"].dropna()))
        drawn: list[float] = []
        for i, (line, group) in enumerate(rows_of.groupby(split, sort=False)):
            group = group.sort_values(x) if numeric else group
            xs = list(group[x]) if numeric else [xs_all.index(v) for v in group[x]]
            xs = _x_values(xs, x)[0] if numeric else xs
            mean = list(group["mean"] / divisor)
            color = plt.cm.tab10.colors[i % 10]
            name = " ".join(str(v) for v in (line if isinstance(line, tuple) else (line,)))
            ax.plot(xs, mean, marker="o", markersize=3, color=color, label=name)
            if group["low"].notna().any():
                ax.fill_between(xs, group["low"] / divisor, group["high"] / divisor, color=color, alpha=0.2,
                                linewidth=0)
                drawn += list(group["low"].dropna() / divisor) + list(group["high"].dropna() / divisor)
            drawn += mean
        set_value_axis(ax, drawn, unit)
        _set_x(ax, xs_all, x, numeric)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(4, len(names)), fontsize=8)
    fig.suptitle(title)
    return fig


def _set_x(ax: plt.Axes, xs: Sequence[object], name: str, numeric: bool) -> None:
    if not numeric:
        ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=30, ha="right")
        ax.set_xlabel(name, fontsize=8)
        return
    positions, label = _x_values([float(v) for v in xs], name)  # type: ignore[arg-type]
    if min(positions) > 0 and max(positions) / min(positions) > 10:  # more than a decade: 8 .. 512 CPUs
        ax.set_xscale("log", base=2)
    ax.set_xticks(positions, [format_count(round(p, 6)) for p in positions])
    ax.minorticks_off()
    ax.set_xlabel(label, fontsize=8)


def save_sweep_plot(summary: pd.DataFrame, x: str, metrics: Sequence[str], path: str | Path, title: str,
                    swept: Sequence[str] = ()) -> Path:
    """Draw :func:`sweep_figure` to ``path`` (.png, .svg or .pdf), written whole or not at all."""
    path = check_plot_path(path)
    write_bytes(path, render(sweep_figure(summary, x, metrics, title, swept), path.suffix[1:]))
    return path

