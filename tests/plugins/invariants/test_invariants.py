from __future__ import annotations

import pytest

from permalloc import InvariantViolation, Machine, MachineSpec, Perm
from permalloc.model.pages import PAGE_SIZE


def _machine(strict: bool) -> Machine:
    return Machine(MachineSpec(arch="generic", cpus=2, memory=1 << 30), strict=strict)


def test_rwx_mapping_counts_one_violation_per_page():
    m = _machine(strict=False)
    area = m.vmalloc.vmalloc(3 * PAGE_SIZE, "vmalloc", Perm.RW)
    m.cpa.change(area.addr, 3, Perm.X, Perm.NONE, "set_memory_x")  # RW+X
    assert m.metrics.counters["wx_violations"] == 3
    m.cpa.change(area.addr, 3, Perm.NONE, Perm.X, "set_memory_nx")  # they leave the state...
    m.cpa.change(area.addr, 3, Perm.X, Perm.NONE, "set_memory_x")  # ...and enter it again
    assert m.metrics.counters["wx_violations"] == 6
    m.cpa.change(area.addr, 3, Perm.NONE, Perm.X, "set_memory_nx")
    m.vmalloc.vfree(area)


def test_alias_change_without_primary_change_leaves_a_stale_writable_entry():
    # set_memory.c: CPA_FLUSHTLB is set by primary PTE changes only; a direct-map alias
    # made RO under an already-RO vmalloc PTE is not flushed, and an NX-only range flush
    # later covers the vmalloc addresses, not the direct map.
    m = _machine(strict=False)
    area = m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", Perm.R)
    m.cpa.change(area.addr, 1, Perm.NONE, Perm.W, "set_memory_ro")
    m.cpa.change(area.addr, 1, Perm.X, Perm.NONE, "set_memory_x")
    assert m.metrics.counters["wx_violations"] == 1


def test_executable_page_writable_through_the_direct_map_is_caught():
    m = _machine(strict=True)
    area = m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", Perm.R)  # RO alias, direct map still RW
    with pytest.raises(InvariantViolation, match="W\\^X: 1 page"):
        m.cpa.change(area.addr, 1, Perm.X, Perm.NONE, "set_memory_x")


def test_stale_executable_translation_of_a_freed_page_is_caught():
    m = _machine(strict=False)
    area = m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", Perm.RW, reset_perms=False)
    m.cpa.change(area.addr, 1, Perm.NONE, Perm.W, "set_memory_ro")
    m.cpa.change(area.addr, 1, Perm.X, Perm.NONE, "set_memory_x")
    assert m.metrics.counters["wx_violations"] == 0
    pfn = area.pages[0]
    m.vmalloc.vfree(area)  # no VM_FLUSH_RESET_PERMS: lazily unmapped, X stays cached
    m.directmap.change([pfn], Perm.W, Perm.NONE)  # what the buddy allocator would hand out
    assert m.page_access(pfn) == (True, True)
    m.vmalloc.purge()
    assert m.page_access(pfn) == (True, False)


def test_teardown_reports_leaks():
    m = _machine(strict=False)
    m.perm.alloc(4096, "RX")
    problems = m.teardown()
    assert any("still live" in p for p in problems)
    assert any("physical page" in p for p in problems)
    strict = _machine(strict=True)
    strict.vmalloc.vmalloc(PAGE_SIZE, "vmalloc")
    with pytest.raises(InvariantViolation, match="leak at teardown"):
        strict.teardown()
