"""permalloc from Python: run, compare, sweep and search, each returning a result object
that converts to a pandas DataFrame (the tidy table of docs/sweeps.md).

>>> from permalloc import api
>>> table = api.compare("boot", ["legacy", "linux-6.12"], cpus=2, memory="2G").to_frame()

Names (scenarios, policies, workloads) are what ``permalloc scenarios`` / ``policies`` /
``workloads`` list; a path names a file. Machine fields (``cpus``, ``memory``, ``numa_nodes``,
...) are keyword arguments, validated as ``permalloc spec --schema`` describes. Errors are
:class:`permalloc.PermallocError` with the one-line message the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from permalloc.errors import SpecError
from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.executor import executor_for
from permalloc.run.grid import DEFAULT_ARCH, Grid, expand, load_grid, scenario_for
from permalloc.run.modelfile import format_validation_error
from permalloc.run.registry import policies_for, resolve_policy
from permalloc.run.search import SearchResult, SearchSpace, load_space
from permalloc.run.search import search as _search
from permalloc.run.simulation import PolicyResult
from permalloc.run.sweep import RunRecord, SweepResult, run_sweep
from permalloc.run.tidy import frame
from permalloc.run.workloads import resolve_workload

__all__ = ["CompareResult", "SearchResult", "SweepResult", "compare", "run", "search", "sweep"]


@dataclass
class CompareResult:
    """Every policy's result on every seed: ``results[k][i]`` is policy ``i`` on seed ``k``."""

    scenario: str
    seeds: list[int]
    results: list[list[PolicyResult]]

    def to_frame(self) -> pd.DataFrame:
        """The tidy table: a row per policy × seed × metric (and per op kind × statistic)."""
        records = [RunRecord(key=f"{r.policy}@{seed}", labels={"scenario": self.scenario, "policy": r.policy,
                                                                "arch": r.arch, "workload": r.workload or "",
                                                                "seed": seed},
                             totals=r.totals, per_op=r.per_op, problems=r.problems)
                   for seed, row in zip(self.seeds, self.results) for r in row]
        return frame(records, [])


def _spec(arch: str, machine: dict[str, Any]) -> MachineSpec:
    try:
        return MachineSpec.model_validate({**machine, "arch": arch})
    except ValidationError as exc:
        raise SpecError(f"machine spec: {format_validation_error(exc)}") from None


def _policy(pm: Any, policy: str | PolicySpec) -> PolicySpec:
    return policy if isinstance(policy, PolicySpec) else resolve_policy(pm, str(policy))


def run(scenario: str, policy: str | PolicySpec = "default", *, arch: str | None = None,
        workload: str | None = None, strict: bool = False, **machine: Any) -> CompareResult:
    """One scenario under one policy (``permalloc run``)."""
    return compare(scenario, [policy], arch=arch, workload=workload, strict=strict, **machine)


def compare(scenario: str = "default", policies: Sequence[str | PolicySpec] | None = None, *,
            arch: str | None = None, seeds: int = 1, jobs: int = 1, workload: str | None = None,
            strict: bool = False, timeout: float | None = None, **machine: Any) -> CompareResult:
    """Several policies on one scenario and machine, on ``seeds`` seeds from ``machine['seed']``
    (``permalloc compare``); default: every built-in policy of the arch."""
    from permalloc.run.compare import compare_seeds

    pm = registry_manager()
    chosen = [_policy(pm, p) for p in policies] if policies else None
    arch = arch or (chosen[0].arch if chosen and chosen[0].arch else DEFAULT_ARCH)
    chosen = chosen or policies_for(pm, arch)
    spec = _spec(arch, machine)
    built, _hash = scenario_for(pm, {}, scenario, spec, chosen[0])
    load = resolve_workload(pm, workload) if workload else None
    seed_list = [spec.seed + k for k in range(seeds)]
    per_seed = compare_seeds(built, spec, chosen, seed_list, jobs=jobs, workload=load, timeout=timeout, strict=strict)
    return CompareResult(built.name, seed_list, per_seed)


def sweep(grid: str | Path | Grid, *, output: str | Path | None = None, jobs: int = 1, dask: str | None = None,
          timeout: float | None = None, strict: bool = False, base: str | Path | None = None,
          on_done: Callable[[Any, bool], None] | None = None, on_start: Callable[[str], None] | None = None,
          on_plans: Callable[[int], None] | None = None) -> SweepResult:
    """Every run of a grid (a file or a :class:`~permalloc.run.grid.Grid`; files it names are
    relative to ``base``, default: the grid file's folder) on local processes or Dask
    (``permalloc sweep``); with ``output``, results already there are not run again.
    ``on_plans(n)`` once the grid is expanded, ``on_done(plan, cached)`` after each run,
    ``on_start(text)`` when a Dask cluster is up."""
    if not isinstance(grid, Grid):
        base = base if base is not None else Path(grid).resolve().parent
        grid = load_grid(grid)
    plans = expand(registry_manager(), grid, base if base is not None else ".")
    if on_plans:
        on_plans(len(plans))
    executor = executor_for(jobs, dask, timeout, on_start)
    try:
        return run_sweep(grid, plans, executor, output, on_done=on_done, strict=strict)
    finally:
        executor.close()


def search(space: str | Path | SearchSpace, *, jobs: int = 1, dask: str | None = None,
           timeout: float | None = None, base: str | Path | None = None,
           on_done: Callable[[int], None] | None = None, on_start: Callable[[str], None] | None = None
           ) -> SearchResult:
    """A multi-objective search of a policy's settings (``permalloc search``)."""
    if not isinstance(space, SearchSpace):
        base = base if base is not None else Path(space).resolve().parent
        space = load_space(space)
    executor = executor_for(jobs, dask, timeout, on_start)
    try:
        return _search(space, base if base is not None else ".", executor, on_done=on_done)
    finally:
        executor.close()
