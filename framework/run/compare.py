"""Running one scenario under several policies, in parallel processes if asked.

Each policy runs on its own freshly built machine from the same spec (same seed), so the
results do not depend on how many processes run them or in which order they finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.executor import Call, LocalExecutor
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import PolicyResult, run
from permalloc.run.workloads import WorkloadSource, spec_workload

TIMELINE_POINTS = 200


def _run_one(
    scenario: Scenario, spec: MachineSpec, policy: PolicySpec, every: int, workload: WorkloadSource | None,
    strict: bool = False, samples: Sequence[str] = (),
) -> PolicyResult:
    return run(scenario, spec, policy, timeline_every=every, workload=workload, strict=strict, samples=samples)


def workloads_for(spec: MachineSpec, policies: Sequence[PolicySpec], workload: WorkloadSource | None = None
                  ) -> list[WorkloadSource | None]:
    """What each policy runs on: ``workload`` for all, else each policy's own (:func:`spec_workload`)."""
    pm = registry_manager()
    return [workload or spec_workload(pm, policy, spec.model_copy(update={"arch": policy.arch or spec.arch}))
            for policy in policies]


def compare(
    scenario: Scenario,
    spec: MachineSpec,
    policies: Sequence[PolicySpec],
    jobs: int = 1,
    on_done: Callable[[PolicyResult], None] | None = None,
    workload: WorkloadSource | None = None,
    timeout: float | None = None,
    workloads: Sequence[WorkloadSource | None] | None = None,
    strict: bool = False,
    samples: Sequence[str] = (),
) -> list[PolicyResult]:
    """Results in the order of ``policies``, whatever ``jobs`` is.

    Each policy runs on its own default workload (:func:`spec_workload`) unless
    ``workload`` forces one for all or ``workloads`` names one per policy. ``timeout``:
    seconds each policy's run may take (:class:`~permalloc.run.timeout.RunTimeout` names
    the policy; its worker is killed). ``strict``: the first W^X violation, contract
    violation or leak is an error (``Machine(strict=True)``). ``samples``: metrics whose
    per-op values each result keeps (for distribution plots)."""
    return compare_seeds(scenario, spec, policies, [spec.seed], jobs, on_done, workload, timeout, workloads, strict,
                         samples)[0]


def compare_seeds(
    scenario: Scenario,
    spec: MachineSpec,
    policies: Sequence[PolicySpec],
    seeds: Sequence[int],
    jobs: int = 1,
    on_done: Callable[[PolicyResult], None] | None = None,
    workload: WorkloadSource | None = None,
    timeout: float | None = None,
    workloads: Sequence[WorkloadSource | None] | None = None,
    strict: bool = False,
    samples: Sequence[str] = (),
) -> list[list[PolicyResult]]:
    """:func:`compare` on each of ``seeds`` (the spec's seed replaced): one list of results per
    seed, in the order of ``seeds``; every (seed, policy) run is one job of the same pool."""
    every = max(1, len(scenario.ops) // TIMELINE_POINTS)
    loads = list(workloads) if workloads is not None else workloads_for(spec, policies, workload)
    label = (lambda k, p: f"policy {p.name}") if len(seeds) == 1 else (lambda k, p: f"policy {p.name} seed {seeds[k]}")
    calls = [Call((k, i), _run_one, (scenario, spec.model_copy(update={"arch": policy.arch or spec.arch, "seed": seed}),
                                     policy, every, loads[i], strict, samples), label(k, policy))
             for k, seed in enumerate(seeds) for i, policy in enumerate(policies)]
    results: dict[tuple[int, int], PolicyResult] = {}
    for key, result in LocalExecutor(jobs, timeout).run(calls):  # a failed compare kills the workers still running
        results[key] = result
        if on_done:
            on_done(result)
    return [[results[k, i] for i in range(len(policies))] for k in range(len(seeds))]
