from __future__ import annotations

from permalloc import Machine, MachineSpec, Perm, PolicySpec
from permalloc.model.pages import PAGE_SIZE


def _setup(kernel: str = "6.1", pages: int = 4):
    m = Machine(MachineSpec(arch="generic", cpus=4, memory=1 << 30), PolicySpec(name="t", kernel=kernel))
    area = m.vmalloc.vmalloc(pages * PAGE_SIZE, "module", reset_perms=True)
    seen: list = []
    m.trace = seen.append
    return m, area, seen


def _flushes(seen):
    return [e.kind for e in seen if e.kind in ("flush_all", "flush_range")]


def test_nx_only_change_skips_the_alias_in_6_1():
    m, area, seen = _setup("6.1")
    m.cpa.change(area.addr, 4, Perm.X, Perm.NONE, "set_memory_x")
    assert _flushes(seen) == ["flush_range"]  # 4 pages <= 33: per-page IPI round
    assert not any(e.kind == "directmap_perm" for e in seen)


def test_6_12_forces_a_full_flush_even_for_nx_only():
    m, area, seen = _setup("6.12")
    m.cpa.change(area.addr, 4, Perm.X, Perm.NONE, "set_memory_x")
    assert _flushes(seen) == ["flush_all"]  # cpa_process_alias sets force_flush_all
    assert not any(e.kind == "directmap_perm" for e in seen)  # NX stripped from the alias


def test_ro_changes_alias_splits_and_flushes_fully():
    m, area, seen = _setup("6.1")
    leaves = {m.directmap.leaf_size(pfn) for pfn in area.pages}
    splits = len({pfn >> 9 for pfn in area.pages if m.directmap.leaf_size(pfn) > PAGE_SIZE})
    m.cpa.change(area.addr, 4, Perm.NONE, Perm.W, "set_memory_ro")
    # a split of each intact 2 MiB direct-map leaf (flush_tlb_all in __split_large_page),
    # then cpa_flush with force_flush_all
    assert _flushes(seen) == ["flush_all"] * (splits + 1)
    assert m.directmap.perm(area.pages[0]) == Perm.R
    assert {m.directmap.leaf_size(pfn) for pfn in area.pages} == {PAGE_SIZE} and leaves


def test_no_flush_when_nothing_changed():
    m, area, seen = _setup("6.1")
    assert not m.cpa.change(area.addr, 4, Perm.NONE, Perm.X, "set_memory_nx")  # already NX
    assert _flushes(seen) == []


def test_ceiling_33_pages():
    m, area, seen = _setup("6.1", pages=34)
    m.cpa.change(area.addr, 33, Perm.X, Perm.NONE, "set_memory_x")
    m.cpa.change(area.addr + 33 * PAGE_SIZE, 1, Perm.X, Perm.NONE, "set_memory_x")
    m2, area2, seen2 = _setup("6.1", pages=34)
    m2.cpa.change(area2.addr, 34, Perm.X, Perm.NONE, "set_memory_x")
    assert _flushes(seen) == ["flush_range", "flush_range"]
    assert _flushes(seen2) == ["flush_all"]


def test_empty_masks_do_not_even_unmap_aliases():
    m, area, seen = _setup("6.1")
    m.vmalloc.vfree(m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", reset_perms=False))
    m.cpa.change(area.addr, 4, Perm.NONE, Perm.NONE, "set_memory_4k")
    assert m.vmalloc.pending_lazy == 1
    m.cpa.change(area.addr, 4, Perm.X, Perm.NONE, "set_memory_x")
    assert m.vmalloc.pending_lazy == 0  # vm_unmap_aliases() purged it
