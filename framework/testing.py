"""Reusable tests of the perm_alloc contract: subclass :class:`ContractSuite` for an arch.

Every arch (built-in or third-party) runs the same suite::

    from permalloc.testing import ContractSuite

    class TestMyArchContract(ContractSuite):
        arch = "myarch"

It needs pytest and hypothesis (``pip install permalloc[test]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from permalloc.errors import ContractError
from permalloc.machine import Machine
from permalloc.mechanisms.cpa import SET_MEMORY
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE
from permalloc.model.perms import Perm
from permalloc.model.spec import MachineSpec
from permalloc.plugin.contract import LIFETIMES, PermAllocation, State
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec
from permalloc.run.registry import policies_for

if TYPE_CHECKING:
    from permalloc.run.workloads import WorkloadSource

SIZES = st.one_of(st.integers(1, 3 * PAGE_SIZE), st.sampled_from([16384, 65536, 200_000]))
PERMS = st.sampled_from([Perm.RX, Perm.R, Perm.RW])
LIFETIME_HINTS = st.sampled_from(LIFETIMES)


def contract_spec(arch: str, seed: int = 0, memory: int | str = 1 << 30, cpus: int = 4, **fields: Any) -> MachineSpec:
    """The machine the suite's tests run on: small (1 GiB, 4 CPUs), seed 0; ``fields`` are
    any other :class:`MachineSpec` fields."""
    return MachineSpec(arch=arch, cpus=cpus, memory=memory, seed=seed, **fields)


def contract_machine(arch: str, policy: PolicySpec, seed: int = 0, memory: int | str = 1 << 30, cpus: int = 4,
                     strict: bool = True, plugins: Sequence[Any] = (), workload: WorkloadSource | None = None,
                     **fields: Any) -> Machine:
    """A machine of :func:`contract_spec` under ``policy``, with ``plugins`` registered."""
    return Machine(contract_spec(arch, seed, memory, cpus, **fields), policy, plugins=plugins, strict=strict,
                   workload=workload)


# -- the machine's text-patching paths -------------------------------------------------------
def _text_poke(m: Machine, a: PermAllocation, offset: int, length: int) -> None:
    m.text.poke(a.addr + offset, length)


def _text_copy(m: Machine, a: PermAllocation, offset: int, length: int) -> None:
    m.text.copy(a.addr, a.size)  # a whole image, as a staged load is copied


def _text_live(m: Machine, a: PermAllocation, offset: int, length: int) -> None:
    sites = [(a.addr + offset, length)]
    if a.size >= 64 + 2:
        sites.append((a.addr + 64, 2))  # a second site: one batch of two
    m.text.live(sorted(set(sites)))


def _text_queue(m: Machine, a: PermAllocation, offset: int, length: int) -> None:
    sites = sorted({(a.addr + offset, length), (a.addr + a.size - 2, 2)})
    m.text.queue(sites, wait=True)


#: How a run writes live text: the contract's ``poke`` (the arch's permalloc_poke), and each
#: entry point of the machine's text mechanism (``machine.text``: textpatch.py, or x86's
#: text_poke) that consumers call directly.
PATCH_PATHS: dict[str, Callable[[Machine, PermAllocation, int, int], None]] = {
    "poke": lambda m, a, offset, length: m.perm.poke(a, offset, length),
    "text.poke": _text_poke,
    "text.copy": _text_copy,
    "text.live": _text_live,
    "text.queue": _text_queue,
}


def churn(machine: Machine, rounds: int = 40, patch: str = "poke",
          check: Callable[[Machine, PermAllocation], None] | None = None) -> dict[str, Any]:
    """A fixed mixed workload; returns the totals (used for determinism checks).

    Every RX allocation is patched once after finish through ``patch`` (a key of
    :data:`PATCH_PATHS`); ``check(machine, alloc)`` runs after each patch."""
    live: list[PermAllocation] = []
    rng = machine.rng
    patcher = PATCH_PATHS[patch]
    for i in range(rounds):
        size = rng.choice([512, 4096, 16384, 70000])
        perm = rng.choice([Perm.RX, Perm.R, Perm.RW])
        a = machine.perm.alloc(size, perm)
        machine.perm.write(a, 0, size)
        machine.perm.finish(a)
        if perm == Perm.RX:
            patcher(machine, a, 0, min(5, size))
            if check is not None:
                check(machine, a)
        live.append(a)
        if i % 3 == 2:
            machine.perm.free(live.pop(rng.randrange(len(live))))
    for a in live:
        machine.perm.free(a)
    machine.perm.shrink(1 << 30)
    return machine.metrics.totals(machine.gauges())


# -- checks on the event log -------------------------------------------------------------------
@contextlib.contextmanager
def watching(machine: Machine, see: Callable[[ev.Event], None]) -> Iterator[list[ev.Event]]:
    """Show every event that ``machine`` emits inside the block to ``see`` (as it is emitted,
    so that ``see`` can look at the machine's state then) and collect them."""
    seen: list[ev.Event] = []
    previous = machine.trace

    def trace(event: ev.Event) -> None:
        if previous is not None:
            previous(event)
        seen.append(event)
        see(event)

    machine.trace = trace
    try:
        yield seen
    finally:
        machine.trace = previous


def pages_of(machine: Machine, alloc: PermAllocation) -> list[tuple[int, int | None, Perm | None]]:
    """``(virtual page, pfn, perm)`` of every page of ``alloc``'s final address range as mapped
    now (``None, None`` for a page not mapped)."""
    first = alloc.addr >> PAGE_SHIFT
    return [(first + i, pfn, None if pfn is None else Perm(perm))
            for i, (pfn, perm) in enumerate(machine.pagetables.pages(alloc.addr, alloc.end))]


def _wx_pages(machine: Machine, pfns: set[int]) -> list[int]:
    return sorted(pfn for pfn in pfns if all(machine.page_access(pfn)))


def finish_checked(machine: Machine, alloc: PermAllocation) -> list[ev.Event]:
    """``machine.perm.finish(alloc)``, checked on its event log; returns the events.

    * the ``set_memory_*`` calls on the allocation's pages, applied in order to the
      permissions the pages had before finish, never make a page W+X (an arch that does
      set_memory_x before set_memory_ro is caught at the set_memory_x);
    * at every point where a kernel operation is complete (an event outside
      ``machine.atomic``, a ``settled`` event), no page of the allocation and no page an event
      of the finish touched is writable and executable through any alias;
    * after finish every page of the allocation is mapped with exactly ``alloc.perm``, and no
      writable alias of an executable page is left.
    """
    simulated = {vpn: perm for vpn, _, perm in pages_of(machine, alloc) if perm is not None}
    touched: set[int] = {pfn for _, pfn, _ in pages_of(machine, alloc) if pfn is not None}
    # the first fault found; raised after finish (an AssertionError raised inside the arch's
    # hook would reach the test as that plugin's PluginError)
    problems: list[str] = []

    def see(event: ev.Event) -> None:
        if problems:
            return
        if event.pfns:
            touched.update(event.pfns)
        if event.kind == ev.SET_MEMORY and event.source in SET_MEMORY:
            set_mask, clear_mask = SET_MEMORY[event.source]
            first = event.addr >> PAGE_SHIFT
            for vpn in range(first, first + event.n):
                if vpn in simulated:
                    perm = (simulated[vpn] | set_mask) & ~clear_mask
                    if perm.is_wx and perm & Perm.R and not problems:
                        problems.append(
                            f"finish of a {alloc.perm} allocation at {alloc.addr:#x}: {event.source} at "
                            f"{event.addr:#x} makes page {vpn << PAGE_SHIFT:#x} {perm} (W+X: drop W before granting X)")
                    simulated[vpn] = perm
        if machine.atomic_depth == 0 and not problems:
            wx = _wx_pages(machine, touched | {pfn for _, pfn, _ in pages_of(machine, alloc) if pfn is not None})
            if wx:
                problems.append(f"finish of a {alloc.perm} allocation at {alloc.addr:#x}: after {event.kind} "
                                f"({event.source or 'no source'}) pfn {wx[0]:#x} is writable and executable")

    with watching(machine, see) as events:
        try:
            machine.perm.finish(alloc)
        except Exception as exc:
            if problems:
                raise AssertionError(problems[0]) from exc
            raise
    assert not problems, problems[0]
    wrong = [(vpn, perm) for vpn, _, perm in pages_of(machine, alloc) if perm != alloc.perm]
    assert not wrong, (f"after finish, page {wrong[0][0] << PAGE_SHIFT:#x} of a {alloc.perm} allocation at "
                       f"{alloc.addr:#x} is mapped {wrong[0][1]} ({len(wrong)} page(s) not {alloc.perm})")
    wx = _wx_pages(machine, {pfn for _, pfn, _ in pages_of(machine, alloc) if pfn is not None})
    assert not wx, f"after finish, pfn {wx[0]:#x} of the allocation at {alloc.addr:#x} has a writable alias"
    return events


def _covered(intervals: list[tuple[int, int]], start: int, end: int) -> bool:
    cursor = start
    for lo, hi in sorted(intervals):
        if lo > cursor:
            break
        cursor = max(cursor, hi)
    return cursor >= end


def poke_checked(machine: Machine, alloc: PermAllocation, offset: int, length: int,
                 in_place: bool = False) -> list[ev.Event]:
    """``machine.perm.poke(alloc, offset, length)``, checked on its event log: the poked bytes
    were written, through the arch's text patching mechanism (``text_poke`` / ``text_write``
    events over those bytes and their physical pages) or, with ``in_place`` (an arch whose
    poke makes the pages writable, as generic's does), by plain stores; returns the events."""
    with watching(machine, lambda event: None) as events:
        machine.perm.poke(alloc, offset, length)
    start, end = alloc.addr + offset, alloc.addr + offset + length
    kinds = (ev.TEXT_POKE, ev.TEXT_WRITE, ev.STORE) if in_place else (ev.TEXT_POKE, ev.TEXT_WRITE)
    writes = [e for e in events if e.kind in kinds]
    how = "text patching or a store" if in_place else "the arch's text patching mechanism"
    assert writes, f"poke of [{start:#x}, {end:#x}) wrote nothing through {how} (events: " \
        f"{', '.join(sorted({e.kind for e in events})) or 'none'})"
    assert _covered([(e.addr, e.addr + e.n) for e in writes], start, end), (
        f"poke of [{start:#x}, {end:#x}): the writes through {how} do not cover the poked bytes")
    pokes = [e for e in writes if e.kind != ev.STORE]
    if pokes and not [e for e in writes if e.kind == ev.STORE]:
        poked = {pfn for _, pfn, _ in pages_of(machine, alloc)[offset >> PAGE_SHIFT:((offset + length - 1) >> PAGE_SHIFT) + 1]}
        written = {pfn for e in pokes for pfn in e.pfns or ()}
        assert poked <= written, f"poke of [{start:#x}, {end:#x}) patched other physical pages than the allocation's"
    return events


def no_writable_alias(machine: Machine, alloc: PermAllocation) -> None:
    """No page of ``alloc`` is writable and executable through any alias."""
    wx = _wx_pages(machine, {pfn for _, pfn, _ in pages_of(machine, alloc) if pfn is not None})
    assert not wx, f"pfn {wx[0]:#x} of the {alloc.perm} allocation at {alloc.addr:#x} is writable and executable"


def invariants_report(machine: Machine) -> dict[str, Any]:
    """What the invariants plugins say of ``machine``: the ``wx_violations`` and
    ``contract_violations`` counters, the W^X checker's own figures (``wx_pages_now``: pages
    W+X at this moment) and the contract observer's first violations (``violations``: one line
    each, naming the plugin and hook)."""
    extra: dict[str, Any] = {}
    for part in machine.hook.permalloc_result_extra(machine=machine):
        extra.update(part or {})
    return {"wx_violations": machine.metrics.counters["wx_violations"],
            "contract_violations": machine.metrics.counters["contract_violations"],
            **extra["invariants"], **extra["contract"]}


def contract_kept(machine: Machine) -> None:
    """No finish, change or free of ``machine`` left an allocation off the contract (the
    contract observer's ``contract_violations``; a strict machine raises at the step instead)."""
    report = invariants_report(machine)
    assert report["contract_violations"] == 0, "; ".join(report["violations"])


class ContractSuite:
    """The contract every arch must keep. Set ``arch``; optionally ``policies``, ``plugins``
    (plugin objects to register on every machine, e.g. an arch not installed as a package)
    and ``poke_keeps_wx``."""

    arch: ClassVar[str] = "generic"
    #: The policies every test runs under; None: every policy the arch can run, as
    #: ``permalloc compare --arch ARCH`` chooses them (:func:`permalloc.run.registry.policies_for`).
    policies: ClassVar[Sequence[PolicySpec] | None] = [DEFAULT_POLICY]
    plugins: ClassVar[Sequence[Any]] = ()
    #: False for an arch whose ``permalloc_poke`` makes the page writable in place instead of
    #: writing through its text patching mechanism (generic: set_memory_rw, store,
    #: set_memory_ro, a W+X window the invariants count); every other step, and every path
    #: of the machine's text mechanism, must keep W^X regardless.
    poke_keeps_wx: ClassVar[bool] = True

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        # every policy of the subclass's list (pytest calls this hook on test classes too)
        if "policy" in metafunc.fixturenames:
            cls = type(self)
            chosen = cls.policies if cls.policies is not None else policies_for(registry_manager(cls.plugins), cls.arch)
            metafunc.parametrize("policy", chosen, ids=[p.name for p in chosen])

    def new_machine(self, policy: PolicySpec, **kwargs: Any) -> Machine:
        kwargs.setdefault("strict", self.poke_keeps_wx)
        return contract_machine(self.arch, policy, plugins=self.plugins, **kwargs)

    @pytest.fixture
    def machine(self, policy: PolicySpec) -> Machine:
        return self.new_machine(policy)

    def test_arch_is_selected(self, machine: Machine) -> None:
        assert machine.arch.name == self.arch

    @pytest.mark.parametrize("perm", [Perm.RX, Perm.R, Perm.RW])
    def test_lifecycle_keeps_wx_and_leaks_nothing(self, machine: Machine, perm: Perm) -> None:
        a = machine.perm.alloc(20000, perm)
        assert a.state is State.STAGING and a.size == 20000 and a.perm == perm
        assert a.allocated >= 20000
        machine.perm.write(a, 0, 20000)
        # no step of finish is W+X, every page ends at exactly ``perm``, no writable alias
        finish_checked(machine, a)
        assert a.state is State.LIVE
        assert machine.metrics.counters["wx_violations"] == 0
        if perm == Perm.RX:
            # the poked bytes are written, through the arch's text mechanism if it keeps W^X
            poke_checked(machine, a, 100, 5, in_place=not self.poke_keeps_wx)
            expected = 0 if self.poke_keeps_wx else 1  # the one page poked in place
            assert machine.metrics.counters["wx_violations"] == expected
        machine.perm.free(a)
        assert a.state is State.FREED
        contract_kept(machine)
        assert machine.teardown() == []

    @pytest.mark.parametrize("size", [1, PAGE_SIZE + 1, 3 * PAGE_SIZE])
    def test_rx_finish_never_passes_through_wx(self, machine: Machine, size: int) -> None:
        a = machine.perm.alloc(size, Perm.RX)
        machine.perm.write(a, 0, size)
        finish_checked(machine, a)
        for offset, length in ((0, 1), (size - 1, 1), (0, min(size, 5))):
            poke_checked(machine, a, offset, length, in_place=not self.poke_keeps_wx)
        machine.perm.free(a)
        assert machine.teardown() == []

    @pytest.mark.parametrize("path", [p for p in PATCH_PATHS if p != "poke"])
    def test_every_text_patching_path_keeps_wx(self, policy: PolicySpec, path: str) -> None:
        # consumers (jump labels, ftrace, static calls, bpf_prog_pack) write live text through
        # machine.text directly: each of its paths must leave no page W+X at any moment
        m = self.new_machine(policy, strict=False, seed=5)
        churn(m, rounds=24, patch=path, check=no_writable_alias)
        report = invariants_report(m)
        assert report["wx_violations"] == 0, f"{path}: {report}"
        assert report["wx_pages_now"] == 0, f"{path}: {report}"
        contract_kept(m)
        assert m.teardown() == []

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
        contract_kept(machine)
        assert machine.teardown() == []

    def test_same_seed_same_metrics(self, policy: PolicySpec) -> None:
        first = churn(self.new_machine(policy, seed=7, strict=False))
        second = churn(self.new_machine(policy, seed=7, strict=False))
        assert first == second
        assert first["shootdowns"] > 0 or first["local_flushes"] > 0

    def test_stateful(self, policy: PolicySpec) -> None:
        run_state_machine(self.arch, policy, self.poke_keeps_wx, plugins=self.plugins)


def run_state_machine(arch: str, policy: PolicySpec, poke_keeps_wx: bool = True, max_examples: int = 25,
                      plugins: Sequence[Any] = ()) -> None:
    """Random alloc/write/finish/change/poke/free/shrink sequences: no W^X violation but those
    of in-place pokes, no contract violation, exact accounting, nothing leaked."""

    class ContractMachine(RuleBasedStateMachine):
        staged = Bundle("staged")
        live = Bundle("live")

        def __init__(self) -> None:
            super().__init__()
            self.m = contract_machine(arch, policy, seed=3, strict=False, plugins=plugins)
            self.wx_allowed = 0  # violations an in-place poke may cause
            self.boot = set(self.m.perm.live)  # what the booted kernel holds (its own BPF program)
        @rule(target=staged, size=SIZES, perm=PERMS, lifetime=LIFETIME_HINTS)
        def alloc(self, size: int, perm: Perm, lifetime: str) -> PermAllocation:
            return self.m.perm.alloc(size, perm, lifetime=lifetime)

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
        def contract(self) -> None:
            contract_kept(self.m)

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
        # a page of the freed kernel image would bring its high-map alias along: skip those
        plain = not any(alias.covers(pfn) for alias in m.aliases)
        if plain and pfn % 512 <= 512 - npages and m.directmap.leaf_size(pfn) >= want:
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
