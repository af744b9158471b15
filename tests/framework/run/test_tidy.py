from __future__ import annotations

import math

import pytest

from permalloc.model.metrics import METRICS
from permalloc.run.seedstats import interval
from permalloc.run.sweep import RunRecord
from permalloc.run.tidy import columns, frame, summary


def _record(key: str, seed: int, cpus: int, shootdowns: float) -> RunRecord:
    totals = dict.fromkeys(METRICS, 0) | {"shootdowns": shootdowns}
    per_op = {"bpf_load": {"count": 3, "shootdowns": {"mean": shootdowns / 3, "median": 1, "p90": 2, "max": 3}}}
    return RunRecord(key=key, labels={"scenario": "s", "policy": "p", "arch": "x86", "workload": "w", "cpus": cpus,
                                      "seed": seed}, totals=totals, per_op=per_op)


def test_a_row_per_run_and_metric_and_per_op_statistic():
    table = frame([_record("a", 0, 8, 6)], ["cpus"])
    assert list(table.columns) == columns(["cpus"])
    assert len(table) == len(METRICS) + 1 + 4  # totals, the kind's count, its four statistics
    per_op = table[(table["op"] == "bpf_load")].set_index(["stat", "metric"])["value"]
    assert per_op["total", "count"] == 3 and per_op["mean", "shootdowns"] == 2 and per_op["max", "shootdowns"] == 3
    assert table["cpus"].dtype == "int64" and table["value"].dtype == "float64"


def test_summary_is_seedstats_interval_per_cell():
    values = [5.0, 9.0, 4.0]
    table = frame([_record(str(s), s, 8, v) for s, v in enumerate(values)] + [_record("x", 0, 16, 7)], ["cpus"])
    cells = summary(table).set_index(["cpus", "op", "stat", "metric"])
    expected = interval(values)
    row = cells.loc[(8, "all", "total", "shootdowns")]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(expected["centre"])
    assert row["low"] == pytest.approx(expected["low"], abs=1e-6)
    assert row["high"] == pytest.approx(expected["high"], abs=1e-6)
    single = cells.loc[(16, "all", "total", "shootdowns")]
    assert single["n"] == 1 and math.isnan(single["low"]) and single["mean"] == 7
    same = cells.loc[(8, "all", "total", "ipis")]  # every seed agrees: an interval of width 0
    assert same["low"] == same["high"] == 0
