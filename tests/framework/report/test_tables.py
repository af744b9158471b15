from __future__ import annotations

import csv
import io
import json

from rich.console import Console

from permalloc.cli import main
from permalloc.model.metrics import METRICS
from permalloc.report.quantities import format_quantity
from permalloc.report.tables import print_tables, report_csv, report_json

from .conftest import PHASED


def _widest(results):
    """The results with every total at the widest value the default compare prints of its kind
    (hundreds of thousands of IPIs, GiB of direct map, a quarter second of cost)."""
    def wide(name):
        return 1000.5 * (1 << 30) if name.endswith("_bytes") else 999.5e6 if name.endswith("_ns") else 999_999
    return [r.model_copy(update={"totals": {name: wide(name) for name in METRICS}}) for r in results]


def _render(results, width, **kwargs) -> list[str]:
    console = Console(width=width, record=True)
    with console.capture() as captured:
        print_tables(PHASED.name, results, console, **kwargs)
    return captured.get().splitlines()


def test_the_default_tables_fit_80_columns_and_no_row_wraps(results):
    widest = _widest(results)
    lines = _render(widest, 80)
    assert max(map(len, lines)) <= 80
    for name in METRICS:  # each metric's row is one line holding every policy's value
        (row,) = [line for line in lines if line.startswith(f"{name} ")]
        assert row.split()[1:] == " ".join(format_quantity(name, r.totals[name]) for r in widest).split()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[1:] == [r.policy for r in results]  # whole names, one line
    per_op = lines[lines.index(next(line for line in lines if "per operation (mean)" in line)):]
    kinds = [line.split()[0] for line in per_op if line[:1].isalpha()]
    assert "module_load" in kinds and "advance" not in kinds  # advance costs nothing


def test_per_op_rows_are_means_in_human_units(results):
    lines = _render(results, 80)
    start = lines.index(next(line for line in lines if line.startswith("module_load")))
    counts = lines[start].split()[1:]
    assert counts == [str(r.per_op["module_load"]["count"]) for r in results]
    (cost,) = [line for line in lines[start:] if line.startswith(" cost_ns")][:1]
    assert cost.split()[1:3] == format_quantity("cost_ns", results[0].per_op["module_load"]["cost_ns"]["mean"]).split()


def test_wide_is_the_boxed_layout(results):
    lines = _render(results, 200, wide=True)
    assert lines[1].startswith("┏") and any(f"({results[0].arch})" in line for line in lines)
    row = next(line for line in lines if line.startswith("│ " + results[0].policy) and "module_load" in line)
    assert format_quantity("cost_ns", results[0].per_op["module_load"]["cost_ns"]["mean"]) in row


def test_compare_at_80_columns(results, tmp_path, capsys, monkeypatch, spec):
    path = tmp_path / "phased.json"
    path.write_text(json.dumps(PHASED.model_dump()))
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compare", "-s", str(path), "--arch", spec.arch, "--memory", "2G", "--cpus", "2", "-q", "-j", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert max(map(len, out)) <= 80 and any(line.startswith("shootdowns ") for line in out)
    assert main(["compare", "-s", str(path), "--arch", spec.arch, "--memory", "2G", "--cpus", "2", "-q", "-j", "1",
                 "--wide"]) == 0
    assert max(map(len, capsys.readouterr().out.splitlines())) > 80  # the boxed layout at 120 or more


def test_json_and_csv_keep_raw_numbers(results, spec):
    doc = report_json(PHASED.name, spec, results)
    entry = doc["results"][0]
    assert "samples" not in entry and "timeline" not in entry
    assert entry["phases"] == [{"name": "boot", "op": 0, "t_ms": 0.0}, {"name": "churn", "op": 2, "t_ms": 0.0},
                               {"name": "patch", "op": 22, "t_ms": 1000.0}]
    assert entry["totals"] == results[0].totals
    rows = list(csv.DictReader(io.StringIO(report_csv(PHASED.name, results))))
    row = next(r for r in rows if r["op"] == "module_load" and r["metric"] == "cost_ns" and r["policy"] == entry["policy"])
    stats = results[0].per_op["module_load"]["cost_ns"]
    assert [float(row[s]) for s in ("mean", "median", "p90", "max")] == [stats[s] for s in ("mean", "median", "p90", "max")]
    assert next(r for r in rows if r["op"] == "all" and r["metric"] == "directmap_4k_bytes")["total"].isdigit()
