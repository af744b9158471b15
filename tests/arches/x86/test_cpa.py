"""CPA on x86 (the core's set_memory engine and vfree, checked against the kernel notes).

docs/kernel-notes/mm-x86.md sections 1.6, 2 and 3 give the rules asserted here.
"""

from __future__ import annotations

import pytest

from permalloc import Machine, Perm

from .conftest import fresh_frontier, policy_for, x86


def _flushes(events, kinds=("flush_all", "flush_range")):
    return [(e.kind, e.source) for e in events if e.kind in kinds]


def _read_only(m: Machine, npages: int):
    """An R allocation (module_alloc RW+NX, then set_memory_ro), already split to 4 KiB."""
    a = m.perm.alloc(npages * 4096, "R")
    m.perm.write(a, 0, a.size)
    m.perm.finish(a)
    return a


def test_set_memory_runs_vm_unmap_aliases_first():
    m = x86()
    m.vmalloc.vfree(m.vmalloc.vmalloc(8192, "vmalloc", reset_perms=False))  # a lazy area, no flush
    assert m.vmalloc.pending_lazy == 1 and m.metrics.counters["shootdowns"] == 0
    seen = []
    m.trace = seen.append
    a = m.perm.alloc(4096, "R")
    m.perm.finish(a)
    # change_page_attr_set_clr: vm_unmap_aliases() before any PTE changes (6.1 l.1821); the
    # lazy list holds one 3-page area (guard included), <= 33 pages: a per-page range flush
    assert _flushes(seen)[0] == ("flush_range", "set_memory_ro/vm_unmap_aliases")
    assert m.vmalloc.pending_lazy == 0


def test_set_memory_ro_splits_the_alias_1g_2m_4k_and_forces_a_full_flush():
    m = x86()
    fresh_frontier(m, 1, gigabyte=True)
    seen = []
    m.trace = seen.append
    a = _read_only(m, 1)
    # two __split_large_page flushes (1G->2M, 2M->4K), then cpa_flush with force_flush_all
    assert _flushes(seen) == [
        ("flush_all", "set_memory_ro/alias/split_large_page"),
        ("flush_all", "set_memory_ro/alias/split_large_page"),
        ("flush_all", "set_memory_ro/cpa_flush"),
    ]
    pfn = m.pagetables.lookup(a.addr)[0].pfns[0]
    assert m.directmap.is_split(pfn) and m.directmap.perm(pfn) == Perm.R  # the alias is RO, 4 KiB


@pytest.mark.parametrize("npages, kind", [(33, "flush_range"), (34, "flush_all")])
def test_nx_only_change_flushes_per_page_up_to_the_ceiling_on_61(npages: int, kind: str):
    m = x86()
    a = _read_only(m, npages)
    dm_before = m.directmap.nondefault_pages()
    seen = []
    m.trace = seen.append
    m.perm.set_memory("set_memory_x", a.addr, npages)
    # 6.1: checkalias = 0 for NX-only masks (l.1836): no alias, so no forced full flush;
    # cpa_flush: per-page IPIs up to tlb_single_page_flush_ceiling (33), flush_tlb_all beyond
    assert _flushes(seen) == [(kind, "set_memory_x/cpa_flush")]
    assert not [e for e in seen if e.kind == "directmap_perm"]
    assert m.directmap.nondefault_pages() == dm_before
    m.perm.set_memory("set_memory_nx", a.addr, npages)
    m.perm.free(a)
    assert m.teardown() == []


def test_nx_only_change_forces_a_full_flush_on_612():
    m = x86(policy_for(kernel="6.12"))
    a = _read_only(m, 1)
    seen = []
    m.trace = seen.append
    m.perm.set_memory("set_memory_x", a.addr, 1)
    # 6.12: cpa_process_alias is entered (NX stripped) and sets force_flush_all (l.1755)
    assert _flushes(seen) == [("flush_all", "set_memory_x/cpa_flush")]
    assert not [e for e in seen if e.kind == "directmap_perm"]  # the direct map stays NX


def test_no_flush_when_nothing_changed():
    m = x86()
    a = m.perm.alloc(16384, "RX")
    m.perm.write(a, 0, 16384)
    m.perm.finish(a)
    before = m.metrics.counters["shootdowns"]
    m.perm.set_memory("set_memory_x", a.addr, 4)  # already executable: no CPA_FLUSHTLB
    m.perm.set_memory("set_memory_ro", a.addr, 4)  # already read-only, alias already RO
    assert m.metrics.counters["shootdowns"] == before


def test_rx_finish_on_612_is_one_set_memory_rox():
    m = x86(policy_for(kernel="6.12"))
    fresh_frontier(m, gigabyte=True)
    seen = []
    m.trace = seen.append
    a = m.perm.alloc(16384, "RX")
    m.perm.write(a, 0, 16384)
    m.perm.finish(a)
    # module_enable_text_rox: one CPA call; the alias splits (2) and one forced full flush
    assert [s for _, s in _flushes(seen)] == ["set_memory_rox/alias/split_large_page"] * 2 + ["set_memory_rox/cpa_flush"]


def test_vfree_with_reset_perms_flushes_once_plus_its_splits():
    m = x86()
    rx = m.perm.alloc(16384, "RX")
    m.perm.write(rx, 0, 16384)
    m.perm.finish(rx)
    seen = []
    m.trace = seen.append
    m.perm.free(rx)
    # vm_remove_mappings: the alias is already 4 KiB, so exactly one flush, full (dmap..module span)
    assert _flushes(seen) == [("flush_all", "vfree/vm_reset_perms")]
    assert m.directmap.nondefault_pages() == m.baseline['directmap_nondefault']  # set_direct_map_default_noflush: back to RW
    assert m.teardown() == []
    m = x86()
    fresh_frontier(m, 1, gigabyte=True)
    m.trace = seen.append
    rw = m.perm.alloc(4096, "RW")
    pfn = m.pagetables.lookup(rw.addr)[0].pfns[0]
    assert not m.directmap.is_split(pfn)  # data pages were never aliased: still under big leaves
    seen.clear()
    m.perm.free(rw)
    # set_direct_map_invalid_noflush splits them now (1G->2M->4K), each split a full flush
    assert [s for _, s in _flushes(seen)] == ["set_direct_map_invalid_noflush/split_large_page"] * 2 + ["vfree/vm_reset_perms"]
    assert m.teardown() == []
