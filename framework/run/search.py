"""Design search: the settings of a policy that trade the chosen metrics off best.

A search space (TOML or JSON; ``permalloc search --schema``) names a base policy, the fields
to vary (a list of values: categorical; ``{low, high, step, log}``: a number; ``options.KEY``
for a plugin option) and the metrics to minimise or maximise. optuna's NSGA-II sampler
(multi-objective, seeded) asks for a batch of trials at a time, the batch runs on an executor
(:mod:`permalloc.run.executor`) exactly as a sweep's runs do, and optuna is told the results
in the order it asked, so a search gives the same trials whatever the executor. Its Pareto
front is written as policy files that ``permalloc compare -p FILE`` runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from permalloc import strictjson
from permalloc.atomicfile import write_text
from permalloc.errors import SpecError
from permalloc.model.metrics import METRICS
from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.executor import Call, Executor, LocalExecutor
from permalloc.run.grid import DEFAULT_ARCH, relative, scenario_for
from permalloc.run.modelfile import format_validation_error, load_model_file
from permalloc.run.registry import override_policy, resolve_policy
from permalloc.run.sweep import execute
from permalloc.run.workloads import resolve_workload, spec_workload

OPTION = "options."  # a param named options.KEY sets the policy's plugin option KEY


class Numeric(BaseModel):
    """A number to search: whole when ``low``, ``high`` (and ``step``) are whole."""

    model_config = ConfigDict(extra="forbid")

    low: float
    high: float
    step: float | None = None
    log: bool = False


class SearchSpace(BaseModel):
    """What to vary, on what, and what to optimise."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="what the search is called (default: the file's name)")
    description: str = ""
    scenario: str = Field("default", description="scenario name or file (relative to the space file)")
    policy: str = Field(description="the policy whose fields are varied (name, file or variant)")
    set: list[str] = Field([], description="FIELD=VALUE overrides of the base policy")
    workload: str | None = Field(None, description="workload name or file (default: the policy's own)")
    machine: dict[str, Any] = Field({}, description="the machine spec (permalloc spec --schema)")
    params: dict[str, list[Any] | Numeric] = Field(
        min_length=1, description="policy fields (or options.KEY) to vary: a list of values, or {low, high, step, log}")
    objectives: dict[str, Literal["minimize", "maximize"]] = Field(
        min_length=1, description="metrics of the run totals and whether to minimize or maximize each")
    trials: int = Field(32, ge=1, le=100_000, description="runs the search makes")
    batch: int = Field(4, ge=1, le=1024, description="trials asked for at a time (run side by side); the trials "
                       "depend on it, not on the executor")
    seed: int = Field(0, ge=0, description="seed of the sampler")

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        for name, values in params.items():
            if not name.startswith(OPTION) and (name not in PolicySpec.model_fields or name in ("name", "description")):
                raise ValueError(f"{name!r} is not a policy field (or options.KEY) that can be searched")
            if isinstance(values, list) and not values:
                raise ValueError(f"param {name!r} has no values")
            if isinstance(values, Numeric) and not values.low < values.high:
                raise ValueError(f"param {name!r}: low must be below high")
        return params

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, objectives: dict[str, str]) -> dict[str, str]:
        for name in objectives:
            if name not in METRICS:
                raise ValueError(f"{name!r} is not a metric; metrics: {', '.join(METRICS)}")
        return objectives


def load_space(path: str | Path) -> SearchSpace:
    space = load_model_file(path, SearchSpace)
    return space if space.name else space.model_copy(update={"name": Path(path).stem})


def _suggest(trial: Any, name: str, values: list[Any] | Numeric) -> Any:
    if isinstance(values, list):
        return trial.suggest_categorical(name, values)
    whole = all(float(v).is_integer() for v in (values.low, values.high, values.step or 1))
    if whole:
        return trial.suggest_int(name, int(values.low), int(values.high), step=int(values.step or 1), log=values.log)
    return trial.suggest_float(name, values.low, values.high, step=values.step, log=values.log)


def variant(base: PolicySpec, name: str, chosen: dict[str, Any]) -> PolicySpec:
    """``base`` with the chosen values, named ``name``; a value the policy refuses is an error naming it."""
    fields = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in chosen.items()
              if not k.startswith(OPTION)]
    policy = override_policy(base, fields, f"search {name}")
    options = {k.removeprefix(OPTION): v for k, v in chosen.items() if k.startswith(OPTION)}
    described = ", ".join(f"{k}={v}" for k, v in chosen.items())
    try:
        return PolicySpec.model_validate({**policy.model_dump(), "name": name, "options": {**policy.options, **options},
                                          "description": f"{base.name} with {described} (permalloc search)"})
    except ValidationError as exc:
        raise SpecError(f"search: {format_validation_error(exc)}") from None


@dataclass
class SearchResult:
    """Every trial (params, objectives) and the Pareto front among them."""

    space: SearchSpace
    trials: pd.DataFrame  # a row per trial: number, the params, the objectives, pareto
    policies: dict[int, PolicySpec]  # by trial number

    @property
    def front(self) -> pd.DataFrame:
        return self.trials[self.trials["pareto"]]

    def to_frame(self) -> pd.DataFrame:
        """A row per trial: ``trial``, each param, each objective, ``pareto``."""
        return self.trials.copy()


def search(space: SearchSpace, base: str | Path = ".", executor: Executor | None = None,
           on_done: Callable[[int], None] | None = None) -> SearchResult:
    """Run ``space.trials`` trials, ``space.batch`` at a time on ``executor``; results in trial order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pm = registry_manager()
    base = Path(base)
    policy = override_policy(resolve_policy(pm, relative(base, space.policy)), space.set, "search set")
    arch = space.machine.get("arch", policy.arch or DEFAULT_ARCH)
    try:
        spec = MachineSpec.model_validate({**space.machine, "arch": arch})
    except ValidationError as exc:
        raise SpecError(f"machine: {format_validation_error(exc)}") from None
    scenario, _hash = scenario_for(pm, {}, relative(base, space.scenario), spec, policy)
    workload = resolve_workload(pm, relative(base, space.workload)) if space.workload else spec_workload(pm, policy, spec)
    executor = executor or LocalExecutor()
    metrics = list(space.objectives)
    study = optuna.create_study(directions=list(space.objectives.values()),
                                sampler=optuna.samplers.NSGAIISampler(seed=space.seed))
    policies: dict[int, PolicySpec] = {}
    rows: list[dict[str, Any]] = []
    while len(rows) < space.trials:
        batch = [study.ask() for _ in range(min(space.batch, space.trials - len(rows)))]
        for trial in batch:
            chosen = {name: _suggest(trial, name, values) for name, values in space.params.items()}
            policies[trial.number] = variant(policy, f"{space.name}-{trial.number}", chosen)
        calls = [Call(t.number, execute, (f"trial {t.number} ({policies[t.number].description})", scenario, spec,
                                          policies[t.number], workload, False), f"trial {t.number}") for t in batch]
        results = dict(executor.run(calls))
        for trial in batch:  # told in the order asked: the same trials whatever finished first
            totals = results[trial.number]["totals"]
            values = [float(totals[m]) for m in metrics]
            study.tell(trial, values)
            rows.append({"trial": trial.number, **trial.params, **dict(zip(metrics, values))})
            if on_done:
                on_done(trial.number)
    front = {t.number for t in study.best_trials}
    table = pd.DataFrame(rows)
    table["pareto"] = table["trial"].isin(front)
    return SearchResult(space, table, policies)


def write_search(result: SearchResult, out: str | Path) -> list[Path]:
    """``trials.csv``, ``front.csv`` and a policy file per point of the front (``policies/NAME.json``)."""
    out = Path(out)
    (out / "policies").mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in (("trials.csv", result.trials), ("front.csv", result.front)):
        write_text(out / name, table.to_csv(index=False))
        written.append(out / name)
    for number in result.front["trial"]:
        policy = result.policies[int(number)]
        path = out / "policies" / f"{policy.name}.json"
        write_text(path, strictjson.dumps(policy.model_dump(mode="json"), policy.name, indent=2) + "\n")
        written.append(path)
    return written
