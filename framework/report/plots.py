"""Plots of a comparison (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from permalloc.atomicfile import atomic_write, check_writable  # noqa: E402
from permalloc.errors import SpecError  # noqa: E402
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


def bars(results: Sequence[PolicyResult], scenario: str):
    """One bar chart per metric, one bar per policy."""
    cols = 4
    rows = -(-len(BAR_METRICS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), constrained_layout=True)
    names = [r.policy for r in results]
    colors = plt.cm.tab10.colors
    for ax, metric in zip(axes.flat, BAR_METRICS):
        values = [r.totals[metric] for r in results]
        ax.bar(range(len(names)), values, color=[colors[i % 10] for i in range(len(names))])
        ax.set_title(metric, fontsize=10)
        if not any(values):
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "0 under every policy", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(BAR_METRICS):]:
        ax.set_visible(False)
    fig.suptitle(f"scenario {scenario}: totals by policy")
    return fig


def timeline(results: Sequence[PolicyResult], scenario: str):
    """DirectMap4k (and shootdowns) over the scenario's ops, one line per policy."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, constrained_layout=True)
    for r in results:
        ops = [p["op"] for p in r.timeline]
        top.plot(ops, [p["directmap_4k_bytes"] / (1 << 20) for p in r.timeline], label=r.policy)
        bottom.plot(ops, [p["shootdowns"] for p in r.timeline], label=r.policy)
    top.set_ylabel("DirectMap4k (MiB)")
    bottom.set_ylabel("shootdowns (cumulative)")
    bottom.set_xlabel("op index")
    top.legend(fontsize=8)
    fig.suptitle(f"scenario {scenario}: over time")
    return fig


def check_plot_path(path: str | Path) -> Path:
    """The plot target, refused (before any work) unless matplotlib writes it and it can be written."""
    path = Path(path)
    if path.suffix not in (".png", ".svg", ".pdf"):
        raise SpecError(f"--plot {path}: plots are written as .png, .svg or .pdf")
    check_writable(path)
    return path


def save_plots(results: Sequence[PolicyResult], scenario: str, path: str | Path) -> list[Path]:
    """Write the bars to ``path`` and the timeline next to it (``NAME-timeline.EXT``)."""
    path = check_plot_path(path)
    timeline_path = path.with_name(f"{path.stem}-timeline{path.suffix}")
    for fig, target in ((bars(results, scenario), path), (timeline(results, scenario), timeline_path)):
        try:
            with atomic_write(target, "wb") as fh:
                fig.savefig(fh, dpi=110, format=target.suffix[1:])
        finally:
            plt.close(fig)
    return [path, timeline_path]
