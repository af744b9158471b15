"""A sweep's grid file and the runs it stands for.

A grid (TOML or JSON, validated here; ``permalloc sweep --schema`` prints its JSON schema)
crosses scenarios × workloads × machine cells × policies × seeds. A machine cell is the base
``machine`` with one value of every ``axes`` field; a policy is a name, a file or a variant,
crossed with every combination of ``policy_axes``. Each run is keyed by a hash of everything
that determines its result (:func:`run_key`), so the same run has the same key in every sweep
and on every executor.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from permalloc import __version__
from permalloc.errors import SpecError
from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import machine_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.modelfile import format_validation_error, load_model_file
from permalloc.run.provenance import document_hash, file_hash, plugins
from permalloc.run.registry import default_for, override_policy, resolve_policy, resolve_scenario, scenarios
from permalloc.run.scenario import Scenario
from permalloc.run.workloads import WorkloadSource, resolve_workload, spec_workload

DEFAULT_ARCH = "x86"  # as compare: a policy for no particular arch runs on x86 unless the grid names one
AXIS_FIELDS = tuple(name for name in MachineSpec.model_fields if name not in ("seed", "cost"))


class Grid(BaseModel):
    """A sweep: every combination of the lists below is one run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="what the sweep is called (default: the file's name)")
    description: str = Field("", description="the question it answers")
    scenarios: list[str] = Field(["default"], min_length=1,
                                 description="scenario names or files (relative to the grid file)")
    policies: list[str] = Field(min_length=1, description="policy names, files (relative to the grid file) or "
                                "variants NAME[FIELD=VALUE,...]")
    set: list[str] = Field([], description="FIELD=VALUE overrides of every policy, as compare --set")
    policy_axes: dict[str, list[Any]] = Field(
        {}, description="policy fields swept: every policy runs as the variant NAME[FIELD=VALUE,...] of each "
        "combination")
    workloads: list[str] = Field([], description="workload names or files; empty: each policy on its own kernel")
    machine: dict[str, Any] = Field({}, description="the machine spec every cell starts from (permalloc spec "
                                    "--schema); arch unset: each policy on its own arch")
    axes: dict[str, list[Any]] = Field({}, description=f"machine spec fields swept ({', '.join(AXIS_FIELDS)}): "
                                       "every combination is a cell")
    seeds: int | list[int] = Field(1, description="N: the machine's seed + 0 .. N-1; or the list of seeds")

    @field_validator("axes", "policy_axes")
    @classmethod
    def _axes(cls, axes: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        for name, values in axes.items():
            if not values:
                raise ValueError(f"axis {name!r} has no values")
            if info.field_name == "axes" and name not in AXIS_FIELDS:
                raise ValueError(f"{name!r} is not a machine field that can be swept; fields: {', '.join(AXIS_FIELDS)}")
            if info.field_name == "policy_axes" and (name not in PolicySpec.model_fields
                                                     or name in ("name", "description", "arch", "workload")):
                raise ValueError(f"{name!r} is not a policy field that can be swept (arch and workload: use "
                                 "axes.arch and workloads)")
        return axes

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: int | list[int]) -> int | list[int]:
        if isinstance(seeds, int) and seeds < 1:
            raise ValueError("seeds must be at least 1")
        if isinstance(seeds, list) and (not seeds or any(s < 0 for s in seeds) or len(set(seeds)) < len(seeds)):
            raise ValueError("seeds must be distinct whole numbers of at least 0, and at least one")
        return seeds

    def swept(self) -> list[str]:
        """The columns that tell the runs apart besides scenario, policy, arch, workload and seed."""
        return [*self.axes, *self.policy_axes]


def load_grid(path: str | Path) -> Grid:
    """A grid file; a bad one is a one-line SpecError naming the file and the field."""
    grid = load_model_file(path, Grid)
    return grid if grid.name else grid.model_copy(update={"name": Path(path).stem.removesuffix(".toml")})


@dataclass(frozen=True)
class Plan:
    """One run of a sweep: what it runs and the labels its rows carry."""

    key: str
    scenario: Scenario
    spec: MachineSpec
    policy: PolicySpec
    workload: WorkloadSource | None
    labels: dict[str, Any] = field(hash=False)

    @property
    def title(self) -> str:
        """The run as errors name it: ``run policy=rfc cpus=64 seed=2``."""
        return "run " + " ".join(f"{k}={v}" for k, v in self.labels.items())


def run_key(scenario_hash: str, spec: MachineSpec, policy: PolicySpec, workload_hash: str | None,
            plugin_list: Sequence[dict[str, str]]) -> str:
    """The hash of everything a run's result depends on: permalloc and its plugins, the
    scenario, the machine, the policy and the workload's bytes."""
    return document_hash({"permalloc": __version__, "plugins": list(plugin_list), "scenario": scenario_hash,
                          "machine": spec.model_dump(mode="json"), "policy": policy.model_dump(mode="json"),
                          "workload": workload_hash}).removeprefix("sha256:")[:32]


def relative(base: Path, name: str) -> str:
    """A file named in the grid is relative to the grid's folder; a name stays a name."""
    candidate = base / name
    return str(candidate) if ("/" in name or name.endswith((".json", ".toml"))) and candidate.exists() else name


def _seeds(grid: Grid, base_seed: int) -> list[int]:
    return list(grid.seeds) if isinstance(grid.seeds, list) else [base_seed + k for k in range(grid.seeds)]


def _axis_label(spec: MachineSpec, name: str) -> Any:
    """A swept machine field as its column shows it: numbers as numbers (memory in bytes)."""
    value = spec.model_dump(mode="json")[name]
    return ",".join(sorted(value)) if isinstance(value, list) else value


def _policies(pm: pluggy.PluginManager, grid: Grid, base: Path) -> list[tuple[PolicySpec, dict[str, Any]]]:
    out = []
    names, values = list(grid.policy_axes), list(grid.policy_axes.values())
    for name in grid.policies:
        policy = override_policy(resolve_policy(pm, relative(base, name)), grid.set, "grid set")
        for combo in itertools.product(*values):
            sets = [f"{k}={_toml_text(v)}" for k, v in zip(names, combo)]
            variant = policy
            if sets:
                variant = override_policy(policy, sets, f"grid policy_axes {','.join(sets)}").model_copy(
                    update={"name": f"{policy.name}[{','.join(sets)}]"})
            out.append((variant, dict(zip(names, combo))))
    return out


def _toml_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _cells(grid: Grid) -> Iterator[dict[str, Any]]:
    names = list(grid.axes)
    for combo in itertools.product(*grid.axes.values()):
        yield dict(zip(names, combo))


def expand(pm: pluggy.PluginManager, grid: Grid, base: str | Path = ".") -> list[Plan]:
    """Every run of ``grid`` in a fixed order (scenario, workload, cell, policy, seed); a file
    it names is relative to ``base``. A policy for another arch than a cell's is left out of
    that cell; a policy left out of every cell, or a bad value, is an error naming it."""
    base = Path(base)
    chosen = _policies(pm, grid, base)
    loads: list[WorkloadSource | None] = [resolve_workload(pm, relative(base, w)) for w in grid.workloads] or [None]
    workload_hashes: dict[Path, str] = {}
    scenario_cache: dict[tuple[str, str], tuple[Scenario, str]] = {}
    plugin_list = plugins()
    plans: list[Plan] = []
    ran: set[str] = set()
    for scenario_name, workload, cell in itertools.product(grid.scenarios, loads, list(_cells(grid))):
        for policy, policy_labels in chosen:
            arch = cell.get("arch", grid.machine.get("arch", policy.arch or DEFAULT_ARCH))
            if policy.arch and policy.arch != arch:
                continue
            try:
                spec = MachineSpec.model_validate({**grid.machine, **cell, "arch": arch})
            except ValidationError as exc:
                raise SpecError(f"machine {cell or grid.machine}: {format_validation_error(exc)}") from None
            scenario, scenario_hash = scenario_for(pm, scenario_cache, relative(base, scenario_name), spec, policy)
            load = workload or spec_workload(pm, policy, spec)
            load_hash = None
            if load is not None:
                load_hash = workload_hashes.get(load.path) or workload_hashes.setdefault(load.path, file_hash(load.path))
            for seed in _seeds(grid, spec.seed):
                run_spec = spec.model_copy(update={"seed": seed})
                labels = {"scenario": scenario.name, "policy": policy.name, "arch": arch,
                          "workload": load.name if load else "",
                          **{name: _axis_label(run_spec, name) for name in grid.axes}, **policy_labels, "seed": seed}
                key = run_key(scenario_hash, run_spec, policy, load_hash, plugin_list)
                plans.append(Plan(key, scenario, run_spec, policy, load, labels))
                ran.add(policy.name)
    for policy, _labels in chosen:
        if policy.name not in ran:
            raise SpecError(f"policy {policy.name!r} is for arch {policy.arch!r}, which no cell of the grid has")
    keys = [plan.key for plan in plans]
    if len(set(keys)) < len(keys):
        twice = next(plan for plan in plans if keys.count(plan.key) > 1)
        raise SpecError(f"{twice.title} is in the grid twice (two entries give the same run)")
    return plans


def scenario_for(pm: pluggy.PluginManager, cache: dict[tuple[str, str], tuple[Scenario, str]], name: str,
              spec: MachineSpec, policy: PolicySpec) -> tuple[Scenario, str]:
    """The scenario and its content hash; ``default`` is the parts the arch's plugins can run."""
    arch = spec.arch if name == "default" else ""
    if (name, arch) not in cache:
        if name == "default" and "default" in scenarios(pm):
            scenario, _notes = default_for(pm, machine_manager(spec, policy)[0])
        else:
            scenario = resolve_scenario(pm, name)
        cache[name, arch] = scenario, document_hash(scenario.model_dump(mode="json"))
    return cache[name, arch]
