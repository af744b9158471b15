"""Reusable tests of the perm_alloc contract: subclass :class:`ContractSuite` for an arch.

Every arch (built-in or third-party) runs the same suite::

    from permalloc.testing import ContractSuite

    class TestMyArchContract(ContractSuite):
        arch = "myarch"

It needs pytest and hypothesis (``pip install permalloc[test]``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from permalloc.errors import ContractError
from permalloc.machine import Machine
from permalloc.model.pages import PAGE_SIZE
from permalloc.model.perms import Perm
from permalloc.model.spec import MachineSpec
from permalloc.plugin.contract import PermAllocation, State
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec

SIZES = st.one_of(st.integers(1, 3 * PAGE_SIZE), st.sampled_from([16384, 65536, 200_000]))
PERMS = st.sampled_from([Perm.RX, Perm.R, Perm.RW])


def contract_machine(arch: str, policy: PolicySpec, seed: int = 0, memory: int = 1 << 30, cpus: int = 4,
                     strict: bool = True) -> Machine:
    return Machine(MachineSpec(arch=arch, cpus=cpus, memory=memory, seed=seed), policy, strict=strict)


def churn(machine: Machine, rounds: int = 40) -> dict[str, Any]:
    """A fixed mixed workload; returns the totals (used for determinism checks)."""
    live: list[PermAllocation] = []
    rng = machine.rng
    for i in range(rounds):
        size = rng.choice([512, 4096, 16384, 70000])
        perm = rng.choice([Perm.RX, Perm.R, Perm.RW])
        a = machine.perm.alloc(size, perm)
        machine.perm.write(a, 0, size)
        machine.perm.finish(a)
        if perm == Perm.RX:
            machine.perm.poke(a, 0, min(5, size))
        live.append(a)
        if i % 3 == 2:
            machine.perm.free(live.pop(rng.randrange(len(live))))
    for a in live:
        machine.perm.free(a)
    machine.perm.shrink(1 << 30)
    return machine.metrics.totals(machine.gauges())


class ContractSuite:
    """The contract every arch must keep. Set ``arch``; optionally ``policies``."""

    arch: ClassVar[str] = "generic"
    policies: ClassVar[list[PolicySpec]] = [DEFAULT_POLICY]
    #: False for an arch without text_poke, whose poke makes the page writable in place
    #: (a W+X window the invariants count); every other step must keep W^X regardless.
    poke_keeps_wx: ClassVar[bool] = True

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        # every policy of the subclass's list (pytest calls this hook on test classes too)
        if "policy" in metafunc.fixturenames:
            chosen = type(self).policies
            metafunc.parametrize("policy", chosen, ids=[p.name for p in chosen])

    @pytest.fixture
    def machine(self, policy: PolicySpec) -> Machine:
        return contract_machine(self.arch, policy, strict=self.poke_keeps_wx)

    def test_arch_is_selected(self, machine: Machine) -> None:
        assert machine.arch.name == self.arch

    @pytest.mark.parametrize("perm", [Perm.RX, Perm.R, Perm.RW])
    def test_lifecycle_keeps_wx_and_leaks_nothing(self, machine: Machine, perm: Perm) -> None:
        a = machine.perm.alloc(20000, perm)
        assert a.state is State.STAGING and a.size == 20000 and a.perm == perm
        assert a.allocated >= 20000
        machine.perm.write(a, 0, 20000)
        machine.perm.finish(a)
        assert a.state is State.LIVE
        # the final mapping has the final permission
        mapping, index = machine.pagetables.lookup(a.addr)
        assert Perm(mapping.perms[index]) == perm
        # and no alias of its pages is writable while executable
        for pfn in mapping.pfns[index : index + 5]:
            w, x = machine.page_access(pfn)
            assert not (w and x)
        assert machine.metrics.counters["wx_violations"] == 0
        if perm == Perm.RX:
            machine.perm.poke(a, 100, 5)
            expected = 0 if self.poke_keeps_wx else 1  # the one page poked in place
            assert machine.metrics.counters["wx_violations"] == expected
        machine.perm.free(a)
        assert a.state is State.FREED
        assert machine.teardown() == []

    def test_writes_after_finish_are_refused(self, machine: Machine) -> None:
        a = machine.perm.alloc(4096, Perm.RX)
        machine.perm.finish(a)
        with pytest.raises(ContractError):
            machine.perm.write(a, 0, 16)
        with pytest.raises(ContractError):
            machine.perm.finish(a)
        machine.perm.free(a)
        with pytest.raises(ContractError):
            machine.perm.free(a)

    def test_wx_permission_is_refused(self, machine: Machine) -> None:
        with pytest.raises(ContractError):
            machine.perm.alloc(4096, Perm.RWX)

    def test_ro_after_init(self, machine: Machine) -> None:
        a = machine.perm.alloc(8192, Perm.RW)
        machine.perm.write(a, 0, 8192)
        machine.perm.finish(a)
        machine.perm.change(a, Perm.R)
        mapping, index = machine.pagetables.lookup(a.addr)
        assert Perm(mapping.perms[index]) == Perm.R
        assert not machine.directmap.perm(mapping.pfns[index]) & Perm.W
        machine.perm.free(a)
        assert machine.teardown() == []

    def test_same_seed_same_metrics(self, policy: PolicySpec) -> None:
        first = churn(contract_machine(self.arch, policy, seed=7, strict=False))
        second = churn(contract_machine(self.arch, policy, seed=7, strict=False))
        assert first == second
        assert first["shootdowns"] > 0 or first["local_flushes"] > 0

    def test_stateful(self, policy: PolicySpec) -> None:
        run_state_machine(self.arch, policy, self.poke_keeps_wx)


def run_state_machine(arch: str, policy: PolicySpec, poke_keeps_wx: bool = True, max_examples: int = 25) -> None:
    """Random alloc/write/finish/change/poke/free/shrink sequences under strict invariants."""

    class ContractMachine(RuleBasedStateMachine):
        staged = Bundle("staged")
        live = Bundle("live")

        def __init__(self) -> None:
            super().__init__()
            self.m = contract_machine(arch, policy, seed=3, strict=False)
            self.wx_allowed = 0  # violations an in-place poke may cause
            self.boot = set(self.m.perm.live)  # what the booted kernel holds (its own BPF program)
        @rule(target=staged, size=SIZES, perm=PERMS)
        def alloc(self, size: int, perm: Perm) -> PermAllocation:
            return self.m.perm.alloc(size, perm)

        @rule(a=staged)
        def write(self, a: PermAllocation) -> None:
            if a.state is State.STAGING:
                self.m.perm.write(a, 0, a.size)

        @rule(target=live, a=consumes(staged))
        def finish(self, a: PermAllocation) -> PermAllocation:
            self.m.perm.finish(a)
            return a

        @rule(a=live, perm=PERMS)
        def change(self, a: PermAllocation, perm: Perm) -> None:
            if a.state is State.LIVE:
                self.m.perm.change(a, perm)

        @rule(a=live, data=st.data())
        def poke(self, a: PermAllocation, data: st.DataObject) -> None:
            if a.state is State.LIVE:
                offset = data.draw(st.integers(0, a.size - 1))
                before = self.m.metrics.counters["wx_violations"]
                self.m.perm.poke(a, offset, min(5, a.size - offset))
                if not poke_keeps_wx:
                    self.wx_allowed += self.m.metrics.counters["wx_violations"] - before

        @rule(a=consumes(live))
        def free_live(self, a: PermAllocation) -> None:
            self.m.perm.free(a)

        @rule(a=consumes(staged))
        def free_staged(self, a: PermAllocation) -> None:
            if a.state is not State.FREED:
                self.m.perm.free(a)

        @rule(pages=st.integers(0, 4096))
        def shrink(self, pages: int) -> None:
            self.m.perm.shrink(pages)

        @invariant()
        def wx_kept(self) -> None:
            assert self.m.metrics.counters["wx_violations"] == self.wx_allowed

        @invariant()
        def accounting(self) -> None:
            live = sum(a.size for key, a in self.m.perm.live.items() if key not in self.boot)
            assert self.m.metrics.live_requested == live

        def teardown(self) -> None:
            for key, a in list(self.m.perm.live.items()):
                if key not in self.boot:
                    self.m.perm.free(a)
            self.m.perm.shrink(1 << 40)
            assert self.m.teardown() == []

    ContractMachine.TestCase.settings = settings(
        max_examples=max_examples, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow], derandomize=True,
    )
    ContractMachine.TestCase().runTest()


def fresh_frontier(m: Machine, npages: int = 4, gigabyte: bool = False) -> None:
    """Make the next ``npages`` unmovable order-0 pages of the current CPU come from one 2 MiB
    direct-map leaf that is still intact (with ``gigabyte``: inside an intact 1 GiB leaf), as
    after the kernel's own allocations filled the pageblocks that boot split. Pages are taken
    and kept, as kernel memory, until the next one starts such a run; that one is given back
    to the head of the per-CPU list. Whole top-order blocks skip ahead to the next GiB."""
    held = m.state("system_ops.kernel", dict).setdefault("fresh_frontier", [])
    want = (1 << 30) if gigabyte else (2 << 20)
    while True:
        pfn = m.alloc_order(0, source="fresh_frontier")
        if pfn % 512 <= 512 - npages and m.directmap.leaf_size(pfn) >= want:
            m.free_order(pfn, 0, source="fresh_frontier")
            return
        held.append((pfn, 0))
        if gigabyte and m.directmap.leaf_size(pfn) < want:
            while True:  # take whole blocks until one lies in an intact GiB, give it back
                block = m.alloc_order(10, source="fresh_frontier")
                if m.directmap.leaf_size(block) >= want:
                    m.free_order(block, 10, source="fresh_frontier")
                    break
                held.append((block, 10))
