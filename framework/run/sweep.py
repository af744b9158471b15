"""Running a sweep: each run of a grid once, on any executor, each result kept as it arrives.

A run's result is stored as ``OUT/runs/KEY.json`` (written atomically) the moment it comes
back, so a sweep that is stopped — interrupted, killed, a run that fails — loses only the
runs still going, and the same sweep started again runs only what has no result yet. The
results come back in the grid's order whatever the executor, the number of workers or the
order in which runs finish.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from permalloc import strictjson
from permalloc.atomicfile import write_text
from permalloc.errors import PermallocError
from permalloc.model.spec import MachineSpec
from permalloc.plugin.policy import PolicySpec
from permalloc.run.executor import Call, Executor, LocalExecutor
from permalloc.run.grid import Grid, Plan
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run
from permalloc.run.workloads import WorkloadSource

if TYPE_CHECKING:
    import pandas as pd

RUNS = "runs"  # the folder of per-run results under a sweep's output folder


class RunRecord(BaseModel):
    """One run's result as a sweep keeps it: its key, its labels and its numbers."""

    model_config = ConfigDict(extra="forbid")

    key: str
    labels: dict[str, Any]
    totals: dict[str, int | float]
    per_op: dict[str, dict[str, Any]]
    problems: list[str] = []


def execute(title: str, scenario: Scenario, spec: MachineSpec, policy: PolicySpec,
            workload: WorkloadSource | None, strict: bool) -> dict[str, Any]:
    """One run, as an executor calls it: the numbers only (no timeline, no samples), and an
    error prefixed with the run it stopped."""
    try:
        result = run(scenario, spec, policy, workload=workload, strict=strict)
    except PermallocError as exc:
        raise type(exc)(f"{title}: {exc}") from None
    return {"totals": result.totals, "per_op": result.per_op, "problems": result.problems}


class Store:
    """The per-run results of one sweep's output folder."""

    def __init__(self, out: str | Path) -> None:
        self.folder = Path(out) / RUNS
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> RunRecord | None:
        """The stored result of ``key``; None when there is none (or it cannot be read: it runs again)."""
        try:
            return RunRecord.model_validate(json.loads(self.path(key).read_text()))
        except (OSError, ValueError, ValidationError):
            return None

    def save(self, record: RunRecord) -> None:
        write_text(self.path(record.key), strictjson.dumps(record.model_dump(mode="json"), record.key) + "\n")


@dataclass
class SweepResult:
    """Every run of a sweep, in the grid's order; ``to_frame`` gives the tidy table."""

    grid: Grid
    plans: list[Plan]
    records: list[RunRecord]
    ran: int  # runs done by this call (the others came from the output folder)

    def to_frame(self) -> pd.DataFrame:
        """A row per run × metric, and per op kind × statistic (:mod:`permalloc.run.tidy`)."""
        from permalloc.run.tidy import frame

        return frame(self.records, self.grid.swept())

    def summary(self) -> pd.DataFrame:
        """Per cell (every label but the seed) mean and 95 % interval over the seeds."""
        from permalloc.run.tidy import summary

        return summary(self.to_frame())


def run_sweep(grid: Grid, plans: Sequence[Plan], executor: Executor | None = None, out: str | Path | None = None,
              on_done: Callable[[Plan, bool], None] | None = None, strict: bool = False) -> SweepResult:
    """Run every plan that ``out`` has no result for (all of them without ``out``) on
    ``executor`` (default: this process). ``on_done(plan, cached)`` after each run, and once
    per run found done in ``out``."""
    store = Store(out) if out is not None else None
    records: dict[str, RunRecord] = {}
    todo: list[Plan] = []
    for plan in plans:
        found = store.load(plan.key) if store else None
        if found is not None:
            records[plan.key] = found
            if on_done:
                on_done(plan, True)
        else:
            todo.append(plan)
    by_key = {plan.key: plan for plan in todo}
    calls = [Call(plan.key, execute, (plan.title, plan.scenario, plan.spec, plan.policy, plan.workload, strict),
                  plan.title) for plan in todo]
    executor = executor or LocalExecutor()
    for key, numbers in executor.run(calls):
        record = RunRecord(key=key, labels=by_key[key].labels, **numbers)
        if store:
            store.save(record)
        records[key] = record
        if on_done:
            on_done(by_key[key], False)
    return SweepResult(grid, list(plans), [records[plan.key] for plan in plans], len(todo))
