from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc import OutOfMemory
from permalloc.model.pages import PAGES_PER_PMD
from permalloc.model.physmem import PhysMem

GIB = 1 << 30


def test_unfragmented_order0_pages_fill_one_pageblock():
    mem = PhysMem(GIB, fragmentation=0.0, seed=1)
    pfns = [mem.alloc_page() for _ in range(PAGES_PER_PMD)]
    assert len({pfn // PAGES_PER_PMD for pfn in pfns}) == 1
    assert mem.allocated_pages == PAGES_PER_PMD


def test_fragmentation_scatters_order0_pages_over_pageblocks():
    mem = PhysMem(GIB, fragmentation=0.9, seed=1)
    blocks = {mem.alloc_page() // PAGES_PER_PMD for _ in range(64)}
    assert len(blocks) > 32  # most pages land in a different pageblock


def test_order9_block_is_whole_and_never_from_a_used_pageblock():
    mem = PhysMem(GIB, fragmentation=0.5, seed=2)
    used = {mem.alloc_page() // PAGES_PER_PMD for _ in range(100)}
    for _ in range(20):
        pfn = mem.alloc_block()
        assert pfn is not None and pfn % PAGES_PER_PMD == 0
        block = pfn // PAGES_PER_PMD
        assert block not in used and not mem.premixed(block)


def test_no_order9_block_when_every_pageblock_is_used():
    mem = PhysMem(GIB, fragmentation=1.0, seed=0)
    assert mem.alloc_block() is None


def test_free_and_double_free():
    mem = PhysMem(GIB, 0.2, 3)
    pfn = mem.alloc_page()
    mem.free_page(pfn)
    assert mem.allocated_pages == 0
    with pytest.raises(ValueError, match="double free"):
        mem.free_page(pfn)
    block = mem.alloc_block()
    with pytest.raises(ValueError):
        mem.free_page(block)
    mem.free_block(block)
    assert mem.allocated_pages == 0


def test_out_of_memory_is_reported():
    mem = PhysMem(4 << 20, 0.0, 0)
    for _ in range(mem.capacity):
        mem.alloc_page()
    with pytest.raises(OutOfMemory, match="out of physical pages"):
        mem.alloc_page()


def test_same_seed_same_pages():
    a, b = PhysMem(GIB, 0.4, 9), PhysMem(GIB, 0.4, 9)
    assert [a.alloc_page() for _ in range(300)] == [b.alloc_page() for _ in range(300)]
    assert [a.alloc_block() for _ in range(5)] == [b.alloc_block() for _ in range(5)]


def test_state_does_not_grow_with_ram():
    small, huge = PhysMem(16 * GIB, 0.3, 5), PhysMem(4 << 40, 0.3, 5)
    for mem in (small, huge):
        for _ in range(2000):
            mem.alloc_page()
    # only touched pageblocks are represented, whatever the RAM size
    assert len(huge._used) <= len(small._used) * 1.5 + 10


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 10_000)), max_size=200), st.floats(0, 1))
def test_alloc_free_sequences_keep_the_books(ops, frag):
    mem = PhysMem(GIB, frag, 11)
    pages, blocks = [], []
    for order9, pick in ops:
        if order9:
            pfn = mem.alloc_block()
            if pfn is not None:
                blocks.append(pfn)
        elif pick % 3 and pages:
            mem.free_page(pages.pop(pick % len(pages)))
        else:
            pages.append(mem.alloc_page())
    assert len(set(pages)) == len(pages)
    assert not {p // PAGES_PER_PMD for p in pages} & {b // PAGES_PER_PMD for b in blocks}
    assert mem.allocated_pages == len(pages) + PAGES_PER_PMD * len(blocks)
    for pfn in pages:
        mem.free_page(pfn)
    for pfn in blocks:
        mem.free_block(pfn)
    assert mem.allocated_pages == 0 and not mem._used and not mem._whole
