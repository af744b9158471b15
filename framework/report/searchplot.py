"""A search drawn: every trial, objective against objective, the Pareto front marked."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from permalloc.atomicfile import write_bytes
from permalloc.report.plots import check_plot_path, plt, render, value_unit
from permalloc.report.quantities import format_count


def front_figure(result: Any) -> Figure:
    """A panel per pair of objectives (one panel for a single objective: value by trial)."""
    trials, front = result.trials, result.front
    metrics = list(result.space.objectives)
    pairs = list(itertools.combinations(metrics, 2)) or [("trial", metrics[0])]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 3.8), constrained_layout=True, squeeze=False)
    for ax, (x, y) in zip(axes.flat, pairs):
        scaled = {}
        for name in (x, y):
            unit, divisor = value_unit(name, list(trials[name])) if name != "trial" else ("trial", 1)
            scaled[name] = (unit, divisor)
        ax.scatter(trials[x] / scaled[x][1], trials[y] / scaled[y][1], s=14, color="0.6", label="trial")
        ax.scatter(front[x] / scaled[x][1], front[y] / scaled[y][1], s=30, color="tab:red", label="Pareto front")
        for _, row in front.iterrows():
            ax.annotate(str(int(row["trial"])), (row[x] / scaled[x][1], row[y] / scaled[y][1]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"{x} ({scaled[x][0]})" if x != "trial" else "trial", fontsize=8)
        ax.set_ylabel(f"{y} ({scaled[y][0]})", fontsize=8)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: format_count(round(v, 6))))
        ax.tick_params(labelsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"search {result.space.name}: {len(front)} of {len(trials)} trials on the front (numbers: trials)")
    return fig


def save_front_plot(result: Any, path: str | Path) -> Path:
    path = check_plot_path(path)
    write_bytes(path, render(front_figure(result), path.suffix[1:]))
    return path
