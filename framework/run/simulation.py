"""Running a scenario on a machine under a policy, and the result of a run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from permalloc.errors import PermallocError, SpecError
from permalloc.machine import Machine
from permalloc.model.events import Event
from permalloc.model.spec import MachineSpec
from permalloc.plugin.contract import PermAllocation
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.scenario import Scenario, op_types, run_handler
from permalloc.run.workloads import WorkloadSource, spec_workload


class PhaseStart(BaseModel):
    """Where a phase of the scenario began in a run: its first op and the simulated time then."""

    model_config = ConfigDict(extra="forbid")

    name: str
    op: int
    t_ms: float


class PolicyResult(BaseModel):
    """The outcome of one scenario under one policy (one entry of ``results`` in the JSON)."""

    model_config = ConfigDict(extra="forbid")

    policy: str
    arch: str
    workload: str | None = None  # the name of the workload it ran on (None: no workload registered)
    totals: dict[str, int | float]
    per_op: dict[str, dict[str, Any]]
    extra: dict[str, Any] = {}
    timeline: list[dict[str, float]] = []
    phases: list[PhaseStart] = []
    problems: list[str] = []
    # per op kind, every op's change of the metrics asked for (run(samples=...)); never in the JSON
    samples: dict[str, dict[str, list[float]]] = {}


class RunContext:
    """What op handlers get: the machine, the scenario's allocations by id, and ``measure``."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.allocs: dict[str, PermAllocation] = {}
        self.op_index = -1
        self.op_name = ""
        self.task_cpu = machine.cpu  # the CPU of the task running the scenario
        self.tasks: list[tuple[str, int]] = []  # processes entered with spawn_process (id, parent CPU)
        self._stack: list[list[Any]] = []  # [kind, snapshot at (re)start, accumulated deltas]

    def alloc(self, alloc_id: str) -> PermAllocation:
        try:
            return self.allocs[alloc_id]
        except KeyError:
            raise self.error(f"no live allocation with id {alloc_id!r}") from None

    def error(self, message: str) -> SpecError:
        return SpecError(f"ops[{self.op_index}] ({self.op_name}): {message}")

    def _snapshot(self) -> list[float]:
        return self.machine.metrics.snapshot(self.machine.gauges())

    @contextlib.contextmanager
    def measure(self, kind: str) -> Iterator[None]:
        """Record the metrics of the enclosed work as one sample of ``kind``.

        Nested measures are exclusive: a dependency loaded inside a module load counts as its
        own ``module_load`` and not also in its parent's sample.
        """
        now = self._snapshot()
        if self._stack:
            parent = self._stack[-1]
            parent[2] = [acc + n - s for acc, n, s in zip(parent[2], now, parent[1])]
        self._stack.append([kind, now, [0.0] * len(now)])
        try:
            yield
        finally:
            _, start, acc = self._stack.pop()
            end = self._snapshot()
            self.machine.metrics.record_op(kind, [a + e - s for a, e, s in zip(acc, end, start)])
            if self._stack:
                self._stack[-1][1] = end


def run(
    scenario: Scenario,
    spec: MachineSpec,
    policy: PolicySpec,
    *,
    strict: bool = False,
    plugins: Sequence[Any] = (),
    trace: Callable[[Event], None] | None = None,
    timeline_every: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workload: WorkloadSource | None = None,
    samples: Sequence[str] = (),
) -> PolicyResult:
    """Run ``scenario`` on a new machine; free everything and check for leaks afterwards.

    ``workload`` defaults to the policy's (:func:`~permalloc.run.workloads.spec_workload`).
    ``samples``: metrics whose every per-op value the result keeps (``PolicyResult.samples``)."""
    if workload is None:
        workload = spec_workload(registry_manager(plugins), policy, spec)
    machine = Machine(spec, policy, plugins=plugins, strict=strict, workload=workload)
    machine.trace = trace
    registry = op_types(machine.pm)
    ops = scenario.validated(registry)
    ctx = RunContext(machine)
    timeline: list[dict[str, float]] = []
    phase_at = {phase.start: phase.name for phase in scenario.phases}
    phases: list[PhaseStart] = []
    for index, op in enumerate(ops):
        if index in phase_at:
            phases.append(PhaseStart(name=phase_at[index], op=index, t_ms=machine.now_ms))
        optype = registry[op.op]
        ctx.op_index = machine.op_index = index
        ctx.op_name = op.op
        if op.cpu is not None and op.cpu >= spec.cpus:
            raise SpecError(f"ops[{index}] ({op.op}): cpu {op.cpu} does not exist; the machine has {spec.cpus} CPUs")
        machine.cpu = op.cpu if op.cpu is not None else ctx.task_cpu
        try:
            if optype.self_measured:
                run_handler(optype, ctx, op)
            else:
                with ctx.measure(optype.metrics_kind):
                    run_handler(optype, ctx, op)
        except PermallocError as exc:
            if str(exc).startswith("ops["):
                raise
            raise type(exc)(f"ops[{index}] ({op.op}): {exc}") from exc
        if timeline_every and (index % timeline_every == 0 or index == len(ops) - 1):
            gauges = machine.gauges()
            timeline.append({"op": index, "t_ms": machine.now_ms, **gauges,
                             "shootdowns": machine.metrics.counters["shootdowns"]})
        if progress is not None:
            progress(index + 1, len(ops))
    totals = machine.metrics.totals(machine.gauges())
    per_op = machine.metrics.per_op()
    extra: dict[str, Any] = {}
    for part in machine.hook.permalloc_result_extra(machine=machine):
        extra.update(part or {})
    for alloc in list(ctx.allocs.values()):
        machine.perm.free(alloc)
    problems = machine.teardown()
    return PolicyResult(
        policy=policy.name, arch=spec.arch, workload=workload.name if workload else None, totals=totals,
        per_op=per_op, extra=extra, timeline=timeline, phases=phases, problems=problems,
        samples=machine.metrics.samples(samples) if samples else {},
    )
