"""The buddy allocator of one zone: __rmqueue_smallest + expand, fallback stealing, merging."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc.model.buddy import MOVABLE, RECLAIMABLE, UNMOVABLE, Zone
from permalloc.model.memblock import buddy_blocks

TOP = 10
PB = 512


def zone(pages: int = 8 << 10, start: int = 0) -> Zone:
    """A zone whose pages were all freed at boot (memblock_free_all), MOVABLE pageblocks."""
    z = Zone("DMA32", 1, 0, start, start + pages, 11, 9)
    z.add_boot_run(start, pages >> TOP)
    return z


def test_order0_allocations_walk_a_block_upwards():
    z = zone()
    pfns = [z.rmqueue(0, MOVABLE) for _ in range(8)]
    assert pfns == list(range(8))  # expand keeps the lowest pages, halves go to the heads


def test_unmovable_request_steals_the_largest_block_and_its_pageblocks():
    z = zone()
    first = z.rmqueue(0, UNMOVABLE)
    assert first == 0
    # an order-10 block is taken whole: both of its pageblocks change type
    assert z.pageblock_mt(0) == UNMOVABLE and z.pageblock_mt(PB) == UNMOVABLE
    assert z.pageblock_mt(2 * PB) == MOVABLE
    # the rest of the stolen block serves the next unmovable requests
    assert [z.rmqueue(0, UNMOVABLE) for _ in range(3)] == [1, 2, 3]


def test_unmovable_pages_stay_in_few_pageblocks():
    z = zone(64 << 10)
    pfns = [z.rmqueue(0, UNMOVABLE) for _ in range(1500)]
    assert len({pfn // PB for pfn in pfns}) == 3  # 1500 pages need three pageblocks, no more


def test_partial_steal_claims_the_pageblock_when_half_is_free():
    z = zone()
    # leave only small movable blocks: take every top-order block, then give back a half
    blocks = [z.rmqueue(TOP, MOVABLE) for _ in range(8)]
    assert None not in blocks
    for pfn in range(0, PB // 2 + 8):  # free most of the first pageblock as order-0 pages
        z.free_one(pfn, 0, MOVABLE)
    got = z.rmqueue(0, UNMOVABLE)
    assert got is not None and got // PB == 0
    assert z.pageblock_mt(0) == UNMOVABLE  # free (>= 256) + alike pages claim it
    assert z.steals == 1


def test_freeing_merges_back_to_the_top_order():
    z = zone(1 << TOP)
    pfns = [z.rmqueue(0, MOVABLE) for _ in range(1 << TOP)]
    assert z.nr_free == 0
    for pfn in pfns:
        z.free_one(pfn, 0, MOVABLE)
    assert z.nr_free == 1 << TOP
    assert list(z.free_area[TOP][MOVABLE]) == [0]
    assert all(not z.free_area[o][mt].nr for o in range(TOP) for mt in (UNMOVABLE, MOVABLE, RECLAIMABLE))


def test_boot_edges_become_smaller_blocks():
    assert list(buddy_blocks(1, 2050, 11))[:3] == [(1, 0), (2, 1), (4, 2)]
    z = Zone("DMA", 0, 0, 1, 4096, 11, 9)
    for pfn, order in buddy_blocks(256, 4096, 11):
        z.add_boot_block(pfn, order)
    assert z.nr_free == 4096 - 256 and z.managed == 4096 - 256


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([UNMOVABLE, MOVABLE, RECLAIMABLE]), st.integers(0, 3), st.booleans()), max_size=120),
       st.integers(0, 2**32))
def test_pages_are_never_handed_out_twice_and_all_come_back(steps, salt):
    z = zone(16 << 10)
    held: dict[int, int] = {}
    for i, (mt, order, free) in enumerate(steps):
        if free and held:
            pfn = sorted(held)[(salt + i) % len(held)]
            z.free_one(pfn, held.pop(pfn), z.pageblock_mt(pfn))
            continue
        pfn = z.rmqueue(order, mt)
        assert pfn is not None and pfn % (1 << order) == 0
        for other, o in held.items():  # no overlap with anything handed out
            assert pfn + (1 << order) <= other or other + (1 << o) <= pfn
        held[pfn] = order
    assert z.nr_free + sum(1 << o for o in held.values()) == 16 << 10
    for pfn, order in held.items():
        z.free_one(pfn, order, z.pageblock_mt(pfn))
    assert z.nr_free == 16 << 10
    assert sum(z.free_area[TOP][mt].nr for mt in (UNMOVABLE, MOVABLE, RECLAIMABLE)) == 16  # fully merged


def test_deferred_pageblocks_whose_first_page_is_reserved_stay_unmovable():
    # deferred_free_range sets MOVABLE only at the pageblock-aligned pfns it frees
    z = Zone("DMA32", 1, 0, 0, 8 * PB, 11, 9)
    z.defer_pageblocks(2 * PB, [(2 * PB, 3 * PB + 7), (4 * PB + 100, 6 * PB + 1)])
    types = [z.pageblock_mt(b * PB + 5) for b in range(8)]
    assert types == [MOVABLE, MOVABLE, MOVABLE, MOVABLE, UNMOVABLE, MOVABLE, MOVABLE, UNMOVABLE]
    assert sorted(z.pageblocks_of(UNMOVABLE)) == [4, 7]
    # a page freed into a boot-unmovable block joins the unmovable lists
    z.free_one(4 * PB + 100, 0, z.pageblock_mt(4 * PB + 100))
    assert z.free_by_type()["unmovable"] == 1
    # a steal that makes the block MOVABLE again sticks
    z.set_pageblock_mt(4 * PB, MOVABLE)
    assert z.pageblock_mt(4 * PB) == MOVABLE and sorted(z.pageblocks_of(UNMOVABLE)) == [7]
    z.set_pageblock_mt(4 * PB, UNMOVABLE)
    assert z.pageblock_mt(4 * PB) == UNMOVABLE
