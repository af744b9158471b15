"""set_memory_rox's CPA_COLLAPSE: split 2 MiB leaves of the primary mapping merged back
(set_memory.c after 6.12: cpa_flush -> cpa_collapse_large_pages -> collapse_pmd_page)."""

from __future__ import annotations

import pytest

from permalloc import Machine, MachineSpec, Perm, PolicySpec
from permalloc.model.pages import PAGES_PER_PMD, PMD_SIZE


def _machine(kernel: str) -> Machine:
    spec = MachineSpec(arch="generic", cpus=4, memory=1 << 30)
    return Machine(spec, PolicySpec(name="t", kernel=kernel))


def _leaf(m: Machine, pfns: list[int] | None = None):
    """A PMD-aligned 2 MiB mapping of one order-9 block (or of ``pfns``), mapped RW+NX."""
    if pfns is None:
        block = m.alloc_block()
        pfns = list(range(block, block + PAGES_PER_PMD))
    area = m.vmalloc.vmap(pfns, "module", Perm.RW, huge=True)
    seen: list = []
    m.trace = seen.append
    return area, seen


def _kinds(seen, *kinds):
    return [(e.kind, e.source) for e in seen if e.kind in kinds]


def test_set_memory_rox_collapses_a_uniform_chunk_with_one_more_flush():
    m = _machine("7.3")
    area, seen = _leaf(m)
    m.cpa.change(area.addr, 4, Perm.NONE, Perm.W, "set_memory_ro")  # partial: splits the leaf
    assert m.pagetables.huge_leaves == 0
    seen.clear()
    m.cpa.set_memory("set_memory_rox", area.addr, PAGES_PER_PMD)  # all 512 pages end up R+X
    assert m.pagetables.huge_leaves == 1 and area.mapping.huge_chunks == {0}
    assert _kinds(seen, "flush_all", "vmap_collapse_2m") == [
        ("flush_all", "set_memory_rox/cpa_flush"),
        ("vmap_collapse_2m", "set_memory_rox/cpa_collapse_large_pages"),
        ("flush_all", "set_memory_rox/cpa_collapse_large_pages"),
    ]


def test_collapse_covers_the_whole_pmd_around_a_partial_range():
    # cpa_collapse_large_pages walks from addr & PMD_MASK: a ROX change of 4 pages merges
    # the PMD when the other 508 pages already agree
    m = _machine("7.3")
    area, _ = _leaf(m)
    m.cpa.set_memory("set_memory_rox", area.addr, PAGES_PER_PMD)
    m.cpa.set_memory("set_memory_nx", area.addr + 8 * 4096, 4)  # split
    m.cpa.set_memory("set_memory_rw", area.addr + 8 * 4096, 4)
    assert m.pagetables.huge_leaves == 0
    m.cpa.set_memory("set_memory_rox", area.addr + 8 * 4096, 4)
    assert m.pagetables.huge_leaves == 1


def test_no_collapse_while_permissions_are_mixed_or_for_other_calls():
    m = _machine("7.3")
    area, seen = _leaf(m)
    m.cpa.set_memory("set_memory_nx", area.addr, 1)  # no change (already NX): nothing
    m.cpa.set_memory("set_memory_ro", area.addr, 4)  # split
    seen.clear()
    m.cpa.set_memory("set_memory_rox", area.addr, 4)  # 4 pages R+X, 508 RW: mixed
    assert m.pagetables.huge_leaves == 0
    assert not _kinds(seen, "vmap_collapse_2m")
    m.cpa.set_memory("set_memory_ro", area.addr + 16 * 4096, PAGES_PER_PMD - 16)
    m.cpa.set_memory("set_memory_ro", area.addr + 4 * 4096, 12)
    m.cpa.set_memory("set_memory_x", area.addr, PAGES_PER_PMD)  # uniform now, but no CPA_COLLAPSE
    assert m.pagetables.huge_leaves == 0


def test_6_12_never_collapses():
    m = _machine("6.12")
    area, seen = _leaf(m)
    m.cpa.set_memory("set_memory_ro", area.addr, 4)
    m.cpa.set_memory("set_memory_rox", area.addr, PAGES_PER_PMD)
    assert m.pagetables.huge_leaves == 0
    assert not _kinds(seen, "vmap_collapse_2m")


@pytest.mark.parametrize("case", ["unaligned-pfn", "not-contiguous"])
def test_collapse_needs_contiguous_pfns_from_an_aligned_one(case):
    m = _machine("7.3")
    block = m.alloc_block()
    if case == "unaligned-pfn":
        pfns = list(range(block + 1, block + 1 + PAGES_PER_PMD))  # contiguous, from block + 1
    else:
        pfns = list(range(block, block + PAGES_PER_PMD))
        pfns[10], pfns[11] = pfns[11], pfns[10]
    area = m.vmalloc.vmap(pfns, "module", Perm.RW, align=PMD_SIZE)  # 4 KiB PTEs, PMD-aligned
    m.cpa.set_memory("set_memory_rox", area.addr, PAGES_PER_PMD)
    assert m.pagetables.huge_leaves == 0


def test_pagetables_collapse_only_considers_pmd_aligned_mappings():
    m = _machine("7.3")
    block = m.alloc_block()
    pfns = list(range(block, block + PAGES_PER_PMD))
    shifted = m.pagetables.map(PMD_SIZE + 4096, pfns[:256], Perm.RX)
    assert m.pagetables.collapse(shifted, 0, 256) == []
    m.pagetables.unmap(shifted)
    aligned = m.pagetables.map(4 * PMD_SIZE, pfns, Perm.RX)
    assert m.pagetables.collapse(aligned, 7, 1) == [0] and m.pagetables.huge_leaves == 1
    assert m.pagetables.collapse(aligned, 0, PAGES_PER_PMD) == []  # already a leaf
