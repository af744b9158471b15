from __future__ import annotations

import pytest

from permalloc.errors import SpecError
from permalloc.model.metrics import METRICS
from permalloc.report.sweepplot import default_x, save_sweep_plot, sweep_figure
from permalloc.run.sweep import RunRecord
from permalloc.run.tidy import frame, summary


def _table():
    records = []
    for policy, slope in (("legacy", 100), ("linux-6.1", 1)):
        for cpus in (8, 64, 512):
            for seed in (0, 1):
                totals = dict.fromkeys(METRICS, 0) | {"shootdowns": slope * cpus + seed, "allocated_bytes": cpus << 20}
                records.append(RunRecord(key=f"{policy}{cpus}{seed}", labels={
                    "scenario": "s", "policy": policy, "arch": "x86", "workload": "w", "cpus": cpus, "numa_nodes": 1,
                    "seed": seed}, totals=totals, per_op={}))
    return frame(records, ["cpus", "numa_nodes"])


def test_a_line_per_policy_with_its_band_on_a_log_axis():
    table = _table()
    assert default_x(["numa_nodes", "cpus"], table) == "cpus"  # numa_nodes has one value
    fig = sweep_figure(summary(table), "cpus", ["shootdowns", "allocated_bytes"], "t")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["legacy", "linux-6.1"]
    assert list(ax.get_lines()[0].get_xdata()) == [8, 64, 512]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"  # 8 .. 51,200 flushes span decades
    assert len(ax.collections) == 2  # a band per policy (two seeds)
    assert fig.axes[1].get_ylabel() == "MiB"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "64", "512"]


def test_save_and_errors(tmp_path):
    table = _table()
    path = save_sweep_plot(summary(table), "cpus", ["shootdowns"], tmp_path / "s.svg", "t")
    assert path.read_text().lstrip().startswith("<?xml")
    with pytest.raises(SpecError, match="--metric 'warp'"):
        sweep_figure(summary(table), "cpus", ["warp"], "t")
    with pytest.raises(SpecError, match="no axis with more than one value"):
        default_x(["numa_nodes"], table)
