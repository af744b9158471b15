"""Running one scenario under several policies, in parallel processes if asked.

Each policy runs on its own freshly built machine from the same spec (same seed), so the
results do not depend on how many processes run them or in which order they finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed

from pebble import ProcessPool

from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import PolicySpec
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import PolicyResult, run
from permalloc.run.timeout import die_with_parent, expired, time_limit
from permalloc.run.workloads import WorkloadSource, spec_workload

TIMELINE_POINTS = 200


def _run_one(
    scenario: Scenario, spec: MachineSpec, policy: PolicySpec, every: int, workload: WorkloadSource | None,
    samples: Sequence[str],
) -> PolicyResult:
    return run(scenario, spec, policy, timeline_every=every, workload=workload, samples=samples)


def compare(
    scenario: Scenario,
    spec: MachineSpec,
    policies: Sequence[PolicySpec],
    jobs: int = 1,
    on_done: Callable[[PolicyResult], None] | None = None,
    workload: WorkloadSource | None = None,
    timeout: float | None = None,
    samples: Sequence[str] = (),
) -> list[PolicyResult]:
    """Results in the order of ``policies``, whatever ``jobs`` is.

    Each policy runs on its own default workload (:func:`spec_workload`) unless
    ``workload`` forces one for all. ``timeout``: seconds each policy's run may take
    (:class:`~permalloc.run.timeout.RunTimeout` names the policy; its worker is killed).
    ``samples``: metrics whose per-op values each result keeps (for distribution plots)."""
    every = max(1, len(scenario.ops) // TIMELINE_POINTS)
    specs = [spec.model_copy(update={"arch": policy.arch or spec.arch}) for policy in policies]
    pm = registry_manager()
    loads = [workload or spec_workload(pm, policy, specs[i]) for i, policy in enumerate(policies)]
    results: dict[int, PolicyResult] = {}
    if jobs <= 1 or len(policies) == 1:
        for i, policy in enumerate(policies):
            with time_limit(timeout, f"policy {policy.name}"):
                results[i] = _run_one(scenario, specs[i], policy, every, loads[i], samples)
            if on_done:
                on_done(results[i])
        return [results[i] for i in range(len(policies))]
    pool = ProcessPool(max_workers=min(jobs, len(policies)), initializer=die_with_parent, initargs=[os.getpid()])
    try:
        futures = {pool.schedule(_run_one, args=[scenario, specs[i], p, every, loads[i], samples], timeout=timeout): i
                   for i, p in enumerate(policies)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except FutureTimeout:
                raise expired(f"policy {policies[i].name}", timeout or 0) from None
            if on_done:
                on_done(results[i])
    finally:
        pool.stop()  # a failed or interrupted compare kills the workers still running
        pool.join()
    return [results[i] for i in range(len(policies))]
