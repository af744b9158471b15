"""Plots of a comparison (matplotlib, no display needed): totals per policy, the timeline over
simulated time with the scenario's phases, and per-op distributions.

Every axis names its unit; bytes read in KiB/MiB/GiB and times in µs/ms/s (never with an
offset such as ``1e9``); an axis whose positive values span more than two decades is
logarithmic (symmetric-log when it also shows zeros).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from permalloc.atomicfile import atomic_write, check_writable  # noqa: E402
from permalloc.errors import SpecError  # noqa: E402
from permalloc.model.metrics import UNITS, percentile  # noqa: E402
from permalloc.report.quantities import Kind, axis_scale, format_count, format_quantity, kind_of  # noqa: E402
from permalloc.run.simulation import PolicyResult  # noqa: E402

BAR_METRICS = (
    "shootdowns",
    "ipis",
    "sync_ipis",
    "local_flushes",
    "directmap_splits_2m",
    "directmap_4k_bytes",
    "text_pokes",
    "huge_mappings",
    "allocated_bytes",
    "reloc_out_of_range",
    "wx_violations",
    "contract_violations",
    "cost_ns",
)
# The metrics whose per-op values the distribution plot draws (compare keeps them: samples=).
DISTRIBUTION_METRICS = ("cost_ns", "shootdowns", "ipis")
DECADES = 2  # an axis whose positive values span more than this many decades is logarithmic

_COLORS = plt.cm.tab10.colors


def _unit_label(metric: str, kind: Kind, unit: str) -> str:
    return unit if kind != "count" else UNITS.get(metric, "count")


def value_unit(metric: str, values: Sequence[float]) -> tuple[str, float]:
    """The label of the unit an axis of ``metric`` showing ``values`` reads in, and its divisor."""
    kind = kind_of(metric)
    unit, divisor = axis_scale(kind, max((abs(v) for v in values), default=0))
    return _unit_label(metric, kind, unit), divisor


def spans_decades(values: Sequence[float]) -> bool:
    """Whether the positive ``values`` span more than DECADES decades (max / min > 10**DECADES)."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) > 10**DECADES


def set_value_axis(ax: Axes, values: Sequence[float], label: str) -> None:
    """Label the y axis with its unit; log when the values span decades; plain numbers with
    thousands separators, never an offset or scientific notation."""
    if spans_decades(values):
        if min(values) > 0:
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=min(v for v in values if v > 0), linscale=0.5)
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_count(round(v, 6))))
    ax.set_ylabel(label, fontsize=8)


def _seed_note(seeds: Mapping[str, Any] | None) -> str:
    return f" (seed {seeds['seeds'][0]})" if seeds else ""


def bars(results: Sequence[PolicyResult], scenario: str, seeds: Mapping[str, Any] | None = None) -> Figure:
    """One bar chart per metric of BAR_METRICS, one bar per policy, each bar labelled with its value.
    With ``seeds`` (a result's ``seeds`` section) a bar is the mean over the seeds and its error bar
    the 95 % interval (permalloc.run.seedstats)."""
    cols = 4
    rows = -(-len(BAR_METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), constrained_layout=True)
    names = [r.policy for r in results]
    for ax, metric in zip(axes.flat, BAR_METRICS):
        entries = [seeds["policies"][name][metric] for name in names] if seeds else None
        raw = [e["centre"] for e in entries] if entries else [r.totals[metric] for r in results]
        unit, divisor = value_unit(metric, raw)
        values = [v / divisor for v in raw]
        positions = range(len(names))
        spread = None
        if entries:
            spread = [[0 if e["low"] is None else (e["centre"] - e["low"]) / divisor for e in entries],
                      [0 if e["high"] is None else (e["high"] - e["centre"]) / divisor for e in entries]]
        drawn = ax.bar(positions, values, color=[_COLORS[i % 10] for i in positions], yerr=spread, capsize=3,
                       error_kw={"elinewidth": 1, "ecolor": "0.2"})
        ax.set_title(metric, fontsize=10)
        if not any(values):
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "0 under every policy", ha="center", va="center", transform=ax.transAxes, fontsize=9)
            ax.set_ylabel(unit, fontsize=8)
        else:
            shown = values if not spread else [v + up for v, up in zip(values, spread[1])] + values
            set_value_axis(ax, shown, unit)
            ax.bar_label(drawn, labels=[format_quantity(metric, v) for v in raw], fontsize=7, padding=1)
            ax.margins(y=0.15)
        ax.set_xticks(positions, names, rotation=30, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(BAR_METRICS):]:
        ax.set_visible(False)
    over = (f", mean over {len(seeds['seeds'])} seeds, error bars the {seeds['confidence']:.0%} interval"
            if seeds else "")
    fig.suptitle(f"scenario {scenario}: totals by policy{over}")
    return fig


def _mark_phases(axes: Sequence[Axes], result: PolicyResult, end_s: float) -> None:
    """Shade each phase of the scenario (alternately) from its start to the next one's, name it
    at the top; a phase that took no simulated time is a dashed line with its name."""
    phases = result.phases
    for i, phase in enumerate(phases):
        start = phase.t_ms / 1000
        stop = phases[i + 1].t_ms / 1000 if i + 1 < len(phases) else end_s
        for ax in axes:
            if stop > start:
                ax.axvspan(start, stop, color="0.5", alpha=0.08 if i % 2 else 0.16, lw=0)
            else:
                ax.axvline(start, color="0.4", ls="--", lw=0.8)
        top = axes[0]
        if stop > start:
            top.text((start + stop) / 2, 1.01, phase.name, transform=top.get_xaxis_transform(), ha="center",
                     va="bottom", fontsize=8)
        else:
            last = i + 1 == len(phases) and i > 0
            top.text(start, 1.01, f"{phase.name}: no simulated time", transform=top.get_xaxis_transform(),
                     ha="right" if last else "left", va="bottom", fontsize=7, color="0.3")


def timeline(results: Sequence[PolicyResult], scenario: str, seeds: Mapping[str, Any] | None = None) -> Figure:
    """DirectMap4k and the cumulative shootdowns over simulated time (``Machine.now_ms``), one
    line per policy, the scenario's phases marked."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    every_4k = [p["directmap_4k_bytes"] for r in results for p in r.timeline]
    unit, divisor = axis_scale("bytes", max(every_4k, default=0))
    for i, r in enumerate(results):
        seconds = [p["t_ms"] / 1000 for p in r.timeline]
        color = _COLORS[i % 10]
        top.step(seconds, [p["directmap_4k_bytes"] / divisor for p in r.timeline], where="post", label=r.policy,
                 color=color)
        bottom.step(seconds, [p["shootdowns"] for p in r.timeline], where="post", label=r.policy, color=color)
    set_value_axis(top, [v / divisor for v in every_4k], f"DirectMap4k ({unit})")
    set_value_axis(bottom, [p["shootdowns"] for r in results for p in r.timeline], "shootdowns, cumulative (flushes)")
    end_s = max((p["t_ms"] / 1000 for r in results for p in r.timeline), default=0)
    if results and results[0].phases:
        _mark_phases((top, bottom), results[0], end_s)
    bottom.set_xlabel("simulated time (s)")
    bottom.ticklabel_format(axis="x", style="plain", useOffset=False)
    top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"scenario {scenario}: over simulated time{_seed_note(seeds)}")
    return fig


def _box(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Box statistics of one op kind under one policy: the box p25..p75, the line the median,
    whiskers from the min to p90, the max as a point (when above p90), the mean as a marker."""
    p90, top = percentile(values, 90), max(values)
    return {"q1": percentile(values, 25), "med": percentile(values, 50), "q3": percentile(values, 75),
            "whislo": min(values), "whishi": p90, "mean": sum(values) / len(values),
            "fliers": [top] if top > p90 else []}


def distributions(results: Sequence[PolicyResult], scenario: str, seeds: Mapping[str, Any] | None = None
                  ) -> Figure:
    """Per op kind (columns) and metric of DISTRIBUTION_METRICS (rows), a box per policy of the
    change one op made: median, p90 and max next to the mean (``PolicyResult.samples``)."""
    kinds = [k for k in dict.fromkeys(k for r in results for k in r.samples)
             if any(max(r.samples[k][m], default=0) for r in results if k in r.samples for m in DISTRIBUTION_METRICS)]
    cols = max(1, len(kinds))
    rows = len(DISTRIBUTION_METRICS)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), constrained_layout=True, squeeze=False)
    names = [r.policy for r in results]
    for col, kind in enumerate(kinds):
        for row, metric in enumerate(DISTRIBUTION_METRICS):
            ax = axes[row][col]
            every = [v for r in results for v in r.samples.get(kind, {}).get(metric, [])]
            unit, divisor = axis_scale(kind_of(metric), max(every, default=0))
            stats, positions = [], []
            for i, r in enumerate(results):
                values = r.samples.get(kind, {}).get(metric)
                if values:
                    box = _box([v / divisor for v in values])
                    stats.append(box)
                    positions.append(i)
            drawn = ax.bxp(stats, positions=positions, showmeans=True, patch_artist=True, widths=0.6,
                           meanprops={"marker": "^", "markersize": 4},
                           flierprops={"marker": "D", "markersize": 3})
            for patch, i in zip(drawn["boxes"], positions):
                patch.set_facecolor(_COLORS[i % 10])
                patch.set_alpha(0.6)
            shown = [v for box in stats for v in (box["whislo"], box["q1"], box["q3"], box["whishi"], *box["fliers"])]
            if any(shown):
                set_value_axis(ax, shown, _unit_label(metric, kind_of(metric), unit))
            else:
                ax.set_ylim(-0.5, 1)
                ax.set_yticks([0])
                ax.set_ylabel(_unit_label(metric, kind_of(metric), unit), fontsize=8)
                ax.text(0.5, 0.5, "0 for every op", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xticks(range(len(names)), names if row == rows - 1 else [""] * len(names), rotation=30,
                          ha="right", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{kind}: {metric}", fontsize=9)
    if not kinds:
        for ax in axes.flat:
            ax.set_visible(False)
    fig.suptitle(f"scenario {scenario}{_seed_note(seeds)}: one op's change, per op kind (box p25–p75, line median, "
                 "whisker to p90, ◆ max, ▲ mean)", fontsize=10)
    return fig


FIGURES = {"bars": bars, "timeline": timeline, "per-op": distributions}


def check_plot_path(path: str | Path) -> Path:
    """The plot target, refused (before any work) unless matplotlib writes it and it can be written."""
    path = Path(path)
    if path.suffix not in (".png", ".svg", ".pdf"):
        raise SpecError(f"--plot {path}: plots are written as .png, .svg or .pdf")
    check_writable(path)
    return path


def render(fig: Figure, fmt: str = "png") -> bytes:
    """``fig`` as the bytes of a ``fmt`` file (then closed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format=fmt)
    finally:
        plt.close(fig)
    return buf.getvalue()


def plot_names(path: Path) -> dict[str, Path]:
    """Where each figure goes: the bars at ``path``, the others beside it (``NAME-timeline.EXT``,
    ``NAME-per-op.EXT``)."""
    return {name: path if name == "bars" else path.with_name(f"{path.stem}-{name}{path.suffix}") for name in FIGURES}


def save_plots(results: Sequence[PolicyResult], scenario: str, path: str | Path,
               seeds: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the bars to ``path``, the timeline and the per-op distributions next to it; with
    ``seeds`` the bars are means over the seeds with their intervals."""
    path = check_plot_path(path)
    written = []
    for name, target in plot_names(path).items():
        data = render(FIGURES[name](results, scenario, seeds), target.suffix[1:])
        with atomic_write(target, "wb") as fh:
            fh.write(data)
        written.append(target)
    return written

