"""Rendering results: the JSON document of docs/architecture.md "Output", CSV, and rich tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from permalloc.model.metrics import METRICS
from permalloc.model.spec import MachineSpec
from permalloc.run.simulation import PolicyResult


class Stat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: float
    median: float
    max: float


class MachineSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str
    cpus: int
    memory: int
    seed: int


class ResultDocument(BaseModel):
    """One policy's entry: ``totals`` has every metric; ``per_op`` count + stats per metric."""

    model_config = ConfigDict(extra="forbid")
    policy: str
    arch: str
    workload: str | None = None
    totals: dict[str, int | float]
    per_op: dict[str, dict[str, int | Stat]]
    extra: dict[str, Any] = {}
    timeline: list[dict[str, float]] = []
    problems: list[str] = []

    @model_validator(mode="after")
    def _every_metric(self) -> ResultDocument:
        missing = set(METRICS) - set(self.totals)
        if missing:
            raise ValueError(f"totals lack {sorted(missing)}")
        for kind, stats in self.per_op.items():
            if not isinstance(stats.get("count"), int) or set(stats) != {"count", *METRICS}:
                raise ValueError(f"per_op.{kind}: needs count and every metric")
        return self


class Provenance(BaseModel):
    """What produced a result (permalloc.run.provenance): versions, plugins, the machine spec,
    scenario and policies in full, workload hashes, seeds and the command line."""

    model_config = ConfigDict(extra="forbid")
    permalloc: str
    python: str
    command: list[str]
    plugins: list[dict[str, str]]
    machine: dict[str, Any]
    scenario: dict[str, Any]
    scenario_hash: str
    policies: list[dict[str, Any]]
    workloads: list[dict[str, Any] | None]
    seeds: list[int]


class ReportDocument(BaseModel):
    """The JSON document of ``permalloc run/compare --format json`` (docs/architecture.md, "Output").
    ``results`` are those of the first seed; ``seeds`` (``compare --seeds N``) has every seed's
    totals with intervals (permalloc.run.seedstats)."""

    model_config = ConfigDict(extra="forbid")
    scenario: str
    machine: MachineSummary
    results: list[ResultDocument]
    provenance: Provenance | None = None
    seeds: dict[str, Any] | None = None


# Per-op metrics shown in tables (the JSON carries all of them).
TABLE_PER_OP = ("shootdowns", "local_flushes", "sync_ipis", "directmap_splits_2m", "text_pokes", "cost_ns")


def report_json(scenario: str, spec: MachineSpec, results: Sequence[PolicyResult], timeline: bool = False,
                provenance: dict[str, Any] | None = None, seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document of docs/architecture.md "Output": scenario, machine, results, and what
    produced them."""
    out = []
    for result in results:
        entry = result.model_dump(exclude={"timeline"} if not timeline else set())
        if not entry.get("problems"):
            entry.pop("problems", None)
        out.append(entry)
    return {
        "scenario": scenario,
        "machine": {"arch": spec.arch, "cpus": spec.cpus, "memory": spec.memory, "seed": spec.seed},
        "results": out,
        **({"provenance": provenance} if provenance is not None else {}),
        **({"seeds": seeds} if seeds is not None else {}),
    }


def report_csv(scenario: str, results: Sequence[PolicyResult]) -> str:
    """One row per policy and metric: totals, then per-op mean/median/max."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scenario", "policy", "arch", "workload", "op", "metric", "total", "count", "mean", "median", "max"])
    for r in results:
        head = [scenario, r.policy, r.arch, r.workload or ""]
        for name in METRICS:
            writer.writerow([*head, "all", name, r.totals[name], "", "", "", ""])
        for kind, stats in r.per_op.items():
            for name in METRICS:
                s = stats[name]
                writer.writerow([*head, kind, name, "", stats["count"], s["mean"], s["median"], s["max"]])
    return buf.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    if isinstance(value, (int, float)):
        return f"{int(value):,}"
    return str(value)


def _bytes(value: float) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value >= size:
            return f"{value / size:,.1f}{unit}"
    return f"{int(value)}"


@dataclass(frozen=True)
class ReportColumn:
    """An extra row of the totals table, contributed by a plugin (``permalloc_report_columns``):
    ``value(result)`` reads it from a result (usually from ``result.extra``)."""

    name: str
    description: str
    value: Callable[[PolicyResult], Any]


def _workload_label(name: str | None, width: int = 12) -> str:
    """A workload name broken after dashes into lines of at most ``width`` (where it can), so
    that it stays whole in a narrow column: ``debian-6.12.118-amd64`` -> three lines."""
    if not name:
        return "-"
    lines = [""]
    for part in name.replace("-", "-\n").splitlines():
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def totals_table(scenario: str, results: Sequence[PolicyResult], columns: Sequence[ReportColumn] = ()) -> Table:
    table = Table(title=f"scenario {scenario}: totals", header_style="bold")
    table.add_column("metric")
    for r in results:
        table.add_column(escape(f"{r.policy}\n({r.arch})"), justify="right")  # a variant's [...] is not markup
    if any(r.workload for r in results):
        table.add_row("workload", *[_workload_label(r.workload) for r in results], end_section=True)
    for name in METRICS:
        fmt = _bytes if name.endswith("_bytes") else _fmt
        table.add_row(name, *[fmt(r.totals[name]) for r in results])
    for column in columns:
        table.add_row(column.name, *[_fmt(column.value(r)) for r in results])
    return table


def per_op_table(results: Sequence[PolicyResult]) -> Table:
    table = Table(title="per operation (mean)", header_style="bold")
    table.add_column("policy")
    table.add_column("op")
    table.add_column("count", justify="right")
    for name in TABLE_PER_OP:
        table.add_column(name, justify="right")
    for r in results:
        for kind, stats in r.per_op.items():
            if not any(stats[n]["max"] for n in METRICS):
                continue  # ops that cost nothing (e.g. advance): in JSON/CSV, not in the table
            table.add_row(escape(r.policy), kind, _fmt(stats["count"]), *[_fmt(stats[n]["mean"]) for n in TABLE_PER_OP])
    return table


def print_tables(
    scenario: str, results: Sequence[PolicyResult], console: Console | None = None, columns: Sequence[ReportColumn] = ()
) -> None:
    console = console or Console(width=max(120, Console().width))
    console.print(totals_table(scenario, results, columns))
    console.print(per_op_table(results))
    for r in results:
        for problem in r.problems:
            console.print(f"[yellow]warning[/]: {r.policy}: {problem}")
