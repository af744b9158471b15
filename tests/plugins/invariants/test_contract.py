"""The contract observer: every built-in arch and policy keeps the contract on random
sequences of steps; a step taken inside a kernel operation is judged when it is complete.
(The planted faults it catches are tests/framework/test_faulty_plugins.py's.)"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permalloc import InvariantViolation, Machine, MachineSpec, Perm, PolicySpec, hookimpl
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import policies_for
from permalloc.testing import contract_machine, invariants_report

ARCHES = ("generic", "x86", "arm64")
# Upstream's execmem_cache_clean breaks the free contract (tests/arches/x86/test_roxcache.py pins it):
# the ROX cache runs here with its what-if clean.
ROX_WHAT_IF = {"x86.rox_cache_clean": "reset-perms"}


def _built_in(arch: str) -> list[PolicySpec]:
    chosen = []
    for policy in policies_for(registry_manager(), arch):
        if policy.rox_cache:
            policy = policy.model_copy(update={"options": {**policy.options, **ROX_WHAT_IF}})
        chosen.append(policy)
    return chosen


CASES = [(arch, policy) for arch in ARCHES for policy in _built_in(arch)]
STEP = st.tuples(st.sampled_from(["alloc", "finish", "change", "free"]), st.integers(0, 7),
                 st.sampled_from([Perm.RX, Perm.R, Perm.RW]), st.sampled_from([1, 4096, 5000, 16384, 70000]))


@pytest.mark.parametrize(("arch", "policy"), CASES, ids=[f"{arch}-{policy.name}" for arch, policy in CASES])
def test_every_built_in_policy_keeps_the_contract_on_random_steps(arch: str, policy: PolicySpec):
    m = contract_machine(arch, policy, strict=False)
    boot = set(m.perm.live)

    @settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(STEP, max_size=24))
    def run(steps):
        staged, live = [], []
        for step, pick, perm, size in steps:
            if step == "alloc":
                a = m.perm.alloc(size, perm)
                m.perm.write(a, 0, size)
                staged.append(a)
            elif step == "finish" and staged:
                a = staged.pop(pick % len(staged))
                m.perm.finish(a)
                live.append(a)
            elif step == "change" and live:
                m.perm.change(live[pick % len(live)], perm)
            elif step == "free" and (staged or live):
                pool = live if live and (pick % 2 or not staged) else staged
                m.perm.free(pool.pop(pick % len(pool)))
        for a in staged + live:
            m.perm.free(a)
        report = invariants_report(m)
        assert report["contract_violations"] == 0, report["violations"]

    run()
    m.perm.shrink(1 << 40)
    assert invariants_report(m)["contract_violations"] == 0
    assert set(m.perm.live) == boot and m.teardown() == []


class _AtomicConsumer:
    """Finishes inside one kernel operation and only then makes the text read-only and
    executable (a finish that does nothing itself, as the faulty arches' does)."""

    name = "atomic-consumer"

    @hookimpl(tryfirst=True)
    def permalloc_finish(self, machine: Machine, alloc) -> bool:
        return True


def _machine(strict: bool) -> Machine:
    return Machine(MachineSpec(arch="generic", cpus=2, memory=1 << 30), plugins=[_AtomicConsumer()], strict=strict)


def test_a_step_inside_a_kernel_operation_is_judged_when_it_is_complete():
    m = _machine(strict=True)
    a = m.perm.alloc(8192, "RX")
    m.perm.write(a, 0, 8192)
    with m.atomic("load"):
        m.perm.finish(a)  # RW here: not yet judged
        m.perm.set_memory("set_memory_ro", a.addr, 2)
        m.perm.set_memory("set_memory_x", a.addr, 2)
    assert m.metrics.counters["contract_violations"] == 0
    m.perm.free(a)
    b = m.perm.alloc(8192, "RX")
    m.perm.write(b, 0, 8192)
    with pytest.raises(InvariantViolation, match=r"plugin 'atomic-consumer': permalloc_finish left 2 page\(s\) of "
                                                 r"allocation \d+ at \[0x\w+, 0x\w+\) mapped RW \(asked RX\)"):
        m.perm.finish(b)  # outside a kernel operation: judged at once


def test_the_metric_counts_pages_and_the_extra_keeps_the_lines():
    m = _machine(strict=False)
    for _ in range(7):
        a = m.perm.alloc(4096, "RX")
        m.perm.finish(a)
        m.perm.free(a)
    report = invariants_report(m)
    assert report["contract_violations"] == 7 and len(report["violations"]) == 5  # the first five, one line each
    assert m.teardown() == []
