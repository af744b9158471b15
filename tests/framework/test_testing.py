"""The contract suite catches real faults: each is planted in a throwaway arch, and the suite's
own test (or check) must fail on it while it passes on the arches that keep the contract."""

from __future__ import annotations

import pytest

from permalloc import ArchInfo, InvariantViolation, Machine, MachineSpec, Perm, PermAllocation, hookimpl
from permalloc.arches import generic
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.mechanisms.tlbflush import IpiFlush
from permalloc.model.pages import PAGE_SHIFT, pages_for
from permalloc.plugin.policy import DEFAULT_POLICY
from permalloc.testing import ContractSuite, contract_machine, finish_checked, poke_checked


class FaultyArch:
    """generic with one step broken; each subclass breaks its own."""

    arch = "faulty"

    @property
    def name(self) -> str:  # the plugin's registration name
        return f"{self.arch}-plugin"

    @hookimpl
    def permalloc_arch_describe(self, spec: MachineSpec) -> ArchInfo:
        return ArchInfo(name=self.arch, description="a planted fault", page_offset=generic.PAGE_OFFSET,
                        ranges={"vmalloc": generic.VMALLOC, "module": generic.VMALLOC.model_copy(update={"name": "module"})})


def _set_memory(machine: Machine, name: str, alloc: PermAllocation, npages: int | None = None) -> None:
    machine.perm.set_memory(name, alloc.addr, pages_for(alloc.size) if npages is None else npages)


class XBeforeRo(FaultyArch):
    arch = "x-before-ro"

    @hookimpl
    def permalloc_finish(self, machine: Machine, alloc: PermAllocation) -> bool | None:
        if alloc.perm != Perm.RX:
            return None
        _set_memory(machine, "set_memory_x", alloc)  # executable while still writable
        _set_memory(machine, "set_memory_ro", alloc)
        return True


class XBeforeRoInPtes(FaultyArch):
    """The same order without set_memory_*: PTEs changed one at a time, nothing atomic."""

    arch = "x-before-ro-ptes"

    @hookimpl
    def permalloc_finish(self, machine: Machine, alloc: PermAllocation) -> bool | None:
        if alloc.perm != Perm.RX:
            return None
        mapping, index = machine.pagetables.lookup(alloc.addr)
        count = pages_for(alloc.size)
        machine.change_ptes(mapping, index, count, Perm.X, Perm.NONE, "grant_x_first")
        machine.change_ptes(mapping, index, count, Perm.NONE, Perm.W, "then_drop_w")
        machine.change_directmap(mapping.pfns[index:index + count], Perm.NONE, Perm.W, "directmap_ro")
        machine.flush_all("finish")
        return True


class FirstPageOnly(FaultyArch):
    arch = "first-page-only"

    @hookimpl
    def permalloc_finish(self, machine: Machine, alloc: PermAllocation) -> bool | None:
        if not alloc.perm & Perm.W:
            _set_memory(machine, "set_memory_ro", alloc, 1)
        if alloc.perm & Perm.X:
            _set_memory(machine, "set_memory_x", alloc, 1)
        return True


class PokeWritesNothing(FaultyArch):
    arch = "poke-writes-nothing"

    @hookimpl
    def permalloc_poke(self, machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool:
        return True  # "done"


class PokeWritesElsewhere(FaultyArch):
    arch = "poke-writes-elsewhere"

    @hookimpl
    def permalloc_poke(self, machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool:
        machine.text.poke(alloc.addr, length)  # forgets the offset
        return True


class LeakyPatcher(TextPatcher):
    """Makes the target page writable to patch it and never makes it read-only again."""

    name = "leaky"

    def write_sites(self, sites, source):
        for addr, length in sites:
            mapping, index = self.m.pagetables.lookup(addr)
            last = ((addr + length - 1) >> PAGE_SHIFT) - (addr >> PAGE_SHIFT)
            self.m.change_ptes(mapping, index, last + 1, Perm.W, Perm.NONE, f"{source}/make_writable")
        super().write_sites(sites, source)


class LeakyText(FaultyArch):
    arch = "leaky-text"

    @hookimpl
    def permalloc_arch_mechanisms(self, machine: Machine) -> ArchMechanisms:
        return ArchMechanisms(tlb=IpiFlush(33), text=LeakyPatcher(machine))


class FreeWithoutFlush(FaultyArch):
    arch = "free-without-flush"

    @hookimpl
    def permalloc_free(self, machine: Machine, alloc: PermAllocation) -> bool:
        area = alloc.backend["area"]
        area.reset_perms = False  # no VM_FLUSH_RESET_PERMS: the pages go back with their translations cached
        machine.vmalloc.vfree(area)
        return True


def suite_for(plugin: FaultyArch, keeps_wx: bool = False) -> ContractSuite:
    """The contract suite as an arch author would subclass it for ``plugin``."""
    cls = type(f"Suite_{plugin.arch}", (ContractSuite,), {"arch": plugin.arch, "plugins": [plugin],
                                                             "poke_keeps_wx": keeps_wx})
    return cls()


def test_the_faults_are_arches_and_generic_passes_the_same_checks():
    for plugin in (XBeforeRo(), FirstPageOnly(), LeakyText()):
        assert suite_for(plugin).new_machine(DEFAULT_POLICY).arch.name == plugin.arch
    suite = suite_for(FaultyArch())  # nothing broken: generic's steps
    for perm in (Perm.RX, Perm.R, Perm.RW):
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), perm)
    suite.test_rx_finish_never_passes_through_wx(suite.new_machine(DEFAULT_POLICY), 3 * 4096)
    suite.test_every_text_patching_path_keeps_wx(DEFAULT_POLICY, "text.live")


# -- set_memory ordering ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 4097, 3 * 4096])
def test_set_memory_x_before_set_memory_ro_is_caught(size):
    suite = suite_for(XBeforeRo())
    with pytest.raises(AssertionError, match=r"set_memory_x at 0x[0-9a-f]+ makes page 0x[0-9a-f]+ RWX"):
        suite.test_rx_finish_never_passes_through_wx(suite.new_machine(DEFAULT_POLICY), size)
    with pytest.raises(AssertionError, match="set_memory_x"):
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), Perm.RX)


def test_a_wx_moment_outside_set_memory_is_caught_on_the_event_log():
    # no set_memory_* call to read the order from: the state after each complete operation
    suite = suite_for(XBeforeRoInPtes())
    with pytest.raises(AssertionError, match=r"after pte_perm \(grant_x_first\) pfn 0x[0-9a-f]+ is writable and executable"):
        suite.test_rx_finish_never_passes_through_wx(suite.new_machine(DEFAULT_POLICY), 8192)


def test_a_final_permission_on_part_of_the_allocation_is_caught():
    suite = suite_for(FirstPageOnly())
    m = suite.new_machine(DEFAULT_POLICY)
    a = m.perm.alloc(20000, "RX")
    m.perm.write(a, 0, 20000)
    with pytest.raises(AssertionError, match=r"after finish, page 0x[0-9a-f]+ of a RX allocation .* is mapped RW "
                                             r"\(4 page\(s\) not RX\)"):
        finish_checked(m, a)
    # the first page alone was right: the old check (first page only) would have passed
    mapping, index = m.pagetables.lookup(a.addr)
    assert Perm(mapping.perms[index]) == Perm.RX
    with pytest.raises(AssertionError, match="of a R allocation .* is mapped RW"):  # read-only data too
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), Perm.R)


# -- poke writes through the arch's mechanism ---------------------------------------------------
def test_a_poke_that_writes_nothing_is_caught():
    suite = suite_for(PokeWritesNothing())
    with pytest.raises(AssertionError, match=r"poke of \[0x[0-9a-f]+, 0x[0-9a-f]+\) wrote nothing"):
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), Perm.RX)


def test_a_poke_at_the_wrong_bytes_is_caught():
    suite = suite_for(PokeWritesElsewhere(), keeps_wx=True)
    with pytest.raises(AssertionError, match="do not cover the poked bytes"):
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), Perm.RX)


def test_an_in_place_poke_is_not_a_text_patching_write():
    # generic pokes with set_memory_rw + store: accepted only where the suite is told so
    m = contract_machine("generic", DEFAULT_POLICY, strict=False)
    a = m.perm.alloc(8192, "RX")
    m.perm.write(a, 0, 8192)
    m.perm.finish(a)
    poke_checked(m, a, 10, 5, in_place=True)
    with pytest.raises(AssertionError, match="wrote nothing through the arch's text patching mechanism"):
        poke_checked(m, a, 10, 5)
    assert m.metrics.counters["wx_violations"] == 2  # the W+X window of each in-place poke


def test_x86_pokes_through_text_poke():
    m = contract_machine("x86", DEFAULT_POLICY)
    a = m.perm.alloc(8192, "RX")
    m.perm.write(a, 0, 8192)
    m.perm.finish(a)
    kinds = [e.kind for e in poke_checked(m, a, 4094, 5)]  # across a page boundary
    assert "text_poke" in kinds and "store" not in kinds


# -- W^X on every text patching path ------------------------------------------------------------
@pytest.mark.parametrize("path", ["text.poke", "text.copy", "text.live", "text.queue"])
def test_a_text_mechanism_that_leaves_a_writable_alias_is_caught(path):
    suite = suite_for(LeakyText())
    with pytest.raises(AssertionError, match="writable and executable"):
        suite.test_every_text_patching_path_keeps_wx(DEFAULT_POLICY, path)


# -- the contract observer ------------------------------------------------------------------------
def test_a_free_that_leaves_an_executable_translation_cached_fails_the_suite():
    suite = suite_for(FreeWithoutFlush())
    found = (r"plugin 'free-without-flush-plugin': permalloc_free left {} page\(s\) of allocation \d+ at \[0x\w+, "
             r"0x\w+\) given back to the page allocator with an executable translation still cached in a TLB")
    # counted on the suite's own machine (this arch pokes in place: not strict)...
    with pytest.raises(AssertionError, match=found.format(5)):
        suite.test_lifecycle_keeps_wx_and_leaks_nothing(suite.new_machine(DEFAULT_POLICY), Perm.RX)
    # ...raised at the free on a strict one
    with pytest.raises(InvariantViolation, match=found.format(1)):
        suite.test_writes_after_finish_are_refused(suite.new_machine(DEFAULT_POLICY, strict=True))
