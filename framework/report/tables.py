"""Rendering results: the JSON document of docs/architecture.md "Output", CSV, and rich tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from permalloc.model.metrics import METRICS
from permalloc.model.spec import MachineSpec
from permalloc.report.quantities import format_count, format_quantity, format_value
from permalloc.run.simulation import PhaseStart, PolicyResult


class Stat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mean: float
    median: float
    p90: float
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
    phases: list[PhaseStart] = []
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
        entry = result.model_dump(exclude={"samples"} if timeline else {"samples", "timeline"})
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
    """One row per policy and metric: totals, then per-op mean/median/p90/max (raw numbers)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["scenario", "policy", "arch", "workload", "op", "metric", "total", "count", "mean", "median", "p90", "max"])
    for r in results:
        head = [scenario, r.policy, r.arch, r.workload or ""]
        for name in METRICS:
            writer.writerow([*head, "all", name, r.totals[name], "", "", "", "", ""])
        for kind, stats in r.per_op.items():
            for name in METRICS:
                s = stats[name]
                writer.writerow([*head, kind, name, "", stats["count"], s["mean"], s["median"], s["p90"], s["max"]])
    return buf.getvalue()


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


# The narrow tables (the default): metrics as rows, one column per policy, a one-space gap
# and no outer edge, so that six policies fit 80 columns.
_NARROW = {"box": box.SIMPLE_HEAD, "padding": (0, 0), "show_edge": False, "header_style": "bold"}
_VALUE_WIDTH = 8  # "51.9 MiB", "1.39 ms", "179,172"


def _arch_title(results: Sequence[PolicyResult]) -> str:
    arches = sorted({r.arch for r in results})
    return f" on {arches[0]}" if len(arches) == 1 else ""


def totals_table(
    scenario: str, results: Sequence[PolicyResult], columns: Sequence[ReportColumn] = (), wide: bool = False
) -> Table:
    """Every metric (and plugin report column) as a row, in human units, one column per policy;
    ``wide``: boxed, each policy's arch under its name, workload names in 12-character lines."""
    same_arch = "" if wide else _arch_title(results)
    table = Table(title=f"scenario {scenario}{same_arch}: totals", **({"header_style": "bold"} if wide else _NARROW))
    table.add_column("metric", no_wrap=True)
    for r in results:
        table.add_column(escape(r.policy if same_arch else f"{r.policy}\n({r.arch})"), justify="right",  # a variant's [...]
                         no_wrap=not wide, min_width=None if wide else _VALUE_WIDTH)
    if any(r.workload for r in results):
        widths = [12 if wide else max(_VALUE_WIDTH, len(r.policy)) for r in results]
        table.add_row("workload", *[_workload_label(r.workload, w) for r, w in zip(results, widths)], end_section=True)
    for name in METRICS:
        table.add_row(name, *[format_quantity(name, r.totals[name]) for r in results])
    for column in columns:
        table.add_row(column.name, *[format_value(column.value(r)) for r in results])
    return table


def costly_kinds(results: Sequence[PolicyResult]) -> list[str]:
    """The op kinds that changed some metric under some policy, in first-seen order (ops that
    cost nothing, e.g. ``advance``, are in JSON/CSV only)."""
    kinds: dict[str, None] = {}
    for r in results:
        for kind, stats in r.per_op.items():
            if any(stats[n]["max"] for n in METRICS):
                kinds.setdefault(kind)
    return list(kinds)


def per_op_table(results: Sequence[PolicyResult]) -> Table:
    """Per op kind, a row of its op count and one row of the mean change per op of each metric
    of TABLE_PER_OP that is not 0 under every policy; one column per policy."""
    table = Table(title="per operation (mean)", caption="each op's first row: how many ops ran", **_NARROW)
    table.add_column("op / metric", no_wrap=True)
    for r in results:
        table.add_column(escape(r.policy), justify="right", no_wrap=True, min_width=_VALUE_WIDTH)
    kinds = costly_kinds(results)
    for i, kind in enumerate(kinds):
        per = [r.per_op.get(kind) for r in results]
        table.add_row(f"[bold]{kind}[/]", *[format_count(s["count"]) if s else "-" for s in per])
        shown = [n for n in TABLE_PER_OP if any(s and s[n]["mean"] for s in per)]
        for j, name in enumerate(shown):
            table.add_row(f" {name}", *[format_quantity(name, s[name]["mean"]) if s else "-" for s in per],
                          end_section=j == len(shown) - 1 and i < len(kinds) - 1)
    return table


def wide_per_op_table(results: Sequence[PolicyResult]) -> Table:
    """``--wide``: one row per policy and op kind, the metrics of TABLE_PER_OP as columns."""
    table = Table(title="per operation (mean)", header_style="bold")
    table.add_column("policy")
    table.add_column("op")
    table.add_column("count", justify="right")
    for name in TABLE_PER_OP:
        table.add_column(name, justify="right")
    kinds = set(costly_kinds(results))
    for r in results:
        for kind, stats in r.per_op.items():
            if kind in kinds:
                table.add_row(escape(r.policy), kind, format_count(stats["count"]),
                              *[format_quantity(n, stats[n]["mean"]) for n in TABLE_PER_OP])
    return table


def print_tables(
    scenario: str,
    results: Sequence[PolicyResult],
    console: Console | None = None,
    columns: Sequence[ReportColumn] = (),
    wide: bool = False,
) -> None:
    """The totals and per-op tables: narrow (80 columns for six policies), or ``wide`` (the
    boxed layout of one row per policy and op kind)."""
    console = console or Console()
    console.print(totals_table(scenario, results, columns, wide=wide))
    console.print(wide_per_op_table(results) if wide else per_op_table(results))
    for r in results:
        for problem in r.problems:
            console.print(f"[yellow]warning[/]: {r.policy}: {problem}")


def varying_labels(totals: Any, swept: Sequence[str]) -> list[str]:
    """The label columns that tell a sweep's cells apart: the policy, and each other label
    that takes more than one value for the same policy (a workload that only follows the
    policy's kernel does not)."""
    policies = totals["policy"].nunique()
    return ["policy", *(c for c in ("scenario", "arch", "workload", *swept)
                        if len(totals[["policy", c]].drop_duplicates()) > policies)]


def sweep_table(summary: Any, swept: Sequence[str], metrics: Sequence[str], title: str) -> Table:
    """A sweep's run totals (``summary`` of :func:`permalloc.run.tidy.summary`): a row per
    cell, the labels that vary, then each metric's mean over the seeds (``±`` half its 95 %
    interval when more than one seed ran and they differ)."""
    totals = summary[(summary["op"] == "all") & (summary["stat"] == "total")]
    labels = varying_labels(totals, swept)
    table = Table(title=title, **_NARROW)
    for name in labels:
        table.add_column(escape(name), no_wrap=True)
    for metric in metrics:
        table.add_column(metric.replace("_", " "), justify="right")
    for cell, rows in totals.groupby(labels, sort=False):
        by_metric = rows.set_index("metric")
        values = []
        for metric in metrics:
            mean, high = by_metric.at[metric, "mean"], by_metric.at[metric, "high"]
            text = format_quantity(metric, mean)
            if high == high and high != mean:  # not NaN (one seed) and not an interval of width 0
                text += f" ±{format_quantity(metric, high - mean)}"
            values.append(text)
        cell = cell if isinstance(cell, tuple) else (cell,)
        table.add_row(*[escape(format_value(v)) for v in cell], *values)
    return table


def search_table(result: Any) -> Table:
    """The Pareto front of a search (:class:`permalloc.run.search.SearchResult`): a row per
    point, the values chosen and each objective in human units."""
    space = result.space
    table = Table(title=f"search {space.name}: Pareto front, {len(result.front)} of {len(result.trials)} trials",
                  **_NARROW)
    table.add_column("policy", no_wrap=True)
    for name in space.params:
        table.add_column(escape(name.replace("_", " ")))
    for metric in space.objectives:
        table.add_column(f"{metric.replace('_', ' ')} ({space.objectives[metric][:3]})", justify="right")
    for _, row in result.front.iterrows():
        table.add_row(escape(result.policies[int(row["trial"])].name), *[escape(format_value(row[p])) for p in space.params],
                      *[format_quantity(m, row[m]) for m in space.objectives])
    return table
