"""The buddy allocator of one zone (mm/page_alloc.c, Linux 6.1; 6.12 behaves the same here).

Free blocks live on ``free_area[order].free_list[migratetype]`` (:mod:`.freelist`); every
pageblock (2^pageblock_order pages) has a migratetype: MOVABLE where memmap_init_range or
deferred_free_range set it at boot, UNMOVABLE (0, the zeroed pageblock bitmap) where deferred
init never did (see :meth:`Zone.defer_pageblocks`). Allocation takes the smallest block of the wanted
migratetype and splits it (``__rmqueue_smallest`` + ``expand``); when the wanted lists are
empty it steals the *largest* block of a fallback type and, for unmovable and reclaimable
requests, the rest of its pageblock (``__rmqueue_fallback``, ``steal_suitable_fallback``).
Freeing merges buddies back up (``__free_one_page``). That is what keeps the kernel's
unmovable allocations in few pageblocks, and so what decides how many direct-map leaves
``set_memory_*`` on them splits.

Sparse: a block is a PFN in a dict or inside a run of untouched blocks; per pageblock only
the migratetype (when not MOVABLE), its explicit free blocks and its movable pages in use.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from itertools import chain

from .freelist import FreeList, Run

# include/linux/mmzone.h: enum migratetype (CONFIG_CMA off in Debian, CONFIG_MEMORY_ISOLATION
# on but nothing isolates pageblocks in a simulated run)
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC = 0, 1, 2, 3
PCPTYPES = 3  # MIGRATE_PCPTYPES: the types with per-CPU lists
MIGRATETYPES = 4
MIGRATETYPE_NAMES = ("unmovable", "movable", "reclaimable", "highatomic")

# mm/page_alloc.c (6.1 l.2621): fallbacks[MIGRATE_TYPES][3]
FALLBACKS = {
    UNMOVABLE: (RECLAIMABLE, MOVABLE),
    MOVABLE: (RECLAIMABLE, UNMOVABLE),
    RECLAIMABLE: (UNMOVABLE, MOVABLE),
}

# alloc flags the simulation uses (mm/internal.h)
ALLOC_NOFRAGMENT = 0x100


class Zone:
    """One zone: its span, free areas, pageblock types and counters.

    ``max_order`` is MAX_ORDER (orders 0 .. max_order-1; 11 on x86-64 6.1, where 6.12 calls
    the top order MAX_PAGE_ORDER = 10), ``pageblock_order`` is 9 with 4 KiB pages on x86-64
    and arm64 (include/linux/pageblock-flags.h: HUGETLB_PAGE_ORDER).
    """

    def __init__(self, name: str, index: int, node: int, start_pfn: int, end_pfn: int,
                 max_order: int, pageblock_order: int) -> None:
        self.name = name
        self.uid = 0  # position among all zones of the machine (set by the boot code)
        self.index = index  # zone_idx: DMA < DMA32 < Normal
        self.node = node
        self.start_pfn = start_pfn
        self.end_pfn = end_pfn
        self.max_order = max_order
        self.pageblock_order = pageblock_order
        self.pageblock_pages = 1 << pageblock_order
        self.free_area = [[FreeList() for _ in range(MIGRATETYPES)] for _ in range(max_order)]
        self._free: dict[int, tuple[int, int]] = {}  # explicit free block pfn -> (order, mt)
        self._pb_mt: dict[int, int] = {}  # pageblock -> migratetype, where not its boot type
        self._boot_unmovable: list[tuple[int, int]] = []  # [first, end) pageblocks left UNMOVABLE at boot
        self._boot_starts: list[int] = []
        self._pb_free: dict[int, set[int]] = {}  # pageblock -> its explicit free blocks below pageblock order
        self._pb_movable: dict[int, int] = {}  # pageblock -> movable pages in use (PageLRU / __PageMovable)
        self.nr_free = 0  # NR_FREE_PAGES
        self.managed = 0  # managed_pages: pages given to the buddy allocator
        self.present = 0
        self.watermark = {"min": 0, "low": 0, "high": 0}
        self.lowmem_reserve: list[int] = []
        self.steals = 0  # pageblocks whose type changed in steal_suitable_fallback / change_pageblock_range

    # -- pageblocks -------------------------------------------------------------------------
    def pageblock(self, pfn: int) -> int:
        return pfn >> self.pageblock_order

    def _boot_mt(self, block: int) -> int:
        i = bisect_right(self._boot_starts, block) - 1
        return UNMOVABLE if i >= 0 and block < self._boot_unmovable[i][1] else MOVABLE

    def pageblock_mt(self, pfn: int) -> int:
        """get_pfnblock_migratetype."""
        block = pfn >> self.pageblock_order
        found = self._pb_mt.get(block)
        return found if found is not None else self._boot_mt(block)

    def set_pageblock_mt(self, pfn: int, mt: int) -> None:
        block = pfn >> self.pageblock_order
        if self.pageblock_mt(pfn) != mt:
            self.steals += 1
        if mt == self._boot_mt(block):
            self._pb_mt.pop(block, None)
        else:
            self._pb_mt[block] = mt

    def defer_pageblocks(self, first_pfn: int, free: list[tuple[int, int]]) -> None:
        """Pageblock types of the deferred part [first_pfn, end_pfn) of the zone.

        memmap_init_range stops at the first deferred pfn (defer_init), and deferred init
        (mm/page_alloc.c: deferred_init_memmap -> deferred_free_range) walks only the free
        ranges, setting MIGRATE_MOVABLE at each pageblock-aligned pfn it frees. A pageblock
        whose first pfn is reserved then (kernel image, initrd, memmap, other memblock
        allocations) keeps the zeroed bitmap's type, UNMOVABLE: its free tail and whatever is
        freed into it later (free_initrd_mem, free_initmem) go to the unmovable lists.
        ``free`` is the deferred free ranges [start, end) in pfns, ascending."""
        shift = self.pageblock_order
        block, end = -(-first_pfn >> shift), -(-self.end_pfn >> shift)
        for start, stop in free:
            covered = -(-start >> shift), -(-stop >> shift)  # blocks whose first pfn is in [start, stop)
            if covered[0] > block:
                self._boot_unmovable.append((block, covered[0]))
            block = max(block, covered[1])
        if block < end:
            self._boot_unmovable.append((block, end))
        self._boot_starts = [first for first, _ in self._boot_unmovable]

    def pageblocks_of(self, mt: int) -> Iterator[int]:
        """Pageblocks (by index) of a type other than MOVABLE."""
        boot = (b for first, end in self._boot_unmovable for b in range(first, end)
                if mt == UNMOVABLE and b not in self._pb_mt)
        return chain((block for block, t in self._pb_mt.items() if t == mt), boot)

    def count_movable(self, pfn: int, npages: int) -> None:
        """Movable pages of [pfn, pfn+npages) came into (npages > 0) or left (< 0) use."""
        block = pfn >> self.pageblock_order
        left = self._pb_movable.get(block, 0) + npages
        if left:
            self._pb_movable[block] = left
        else:
            self._pb_movable.pop(block, None)

    # -- free lists -------------------------------------------------------------------------
    def _add(self, pfn: int, order: int, mt: int, tail: bool) -> None:
        area = self.free_area[order][mt]
        (area.add_tail if tail else area.add_head)(pfn)
        self._free[pfn] = (order, mt)
        if order < self.pageblock_order:
            self._pb_free.setdefault(pfn >> self.pageblock_order, set()).add(pfn)

    def _del(self, pfn: int, order: int, mt: int) -> None:
        if not self.free_area[order][mt].remove(pfn):
            raise AssertionError(f"{self.name}: block {pfn:#x} order {order} not on the {MIGRATETYPE_NAMES[mt]} list")
        if self._free.pop(pfn, None) is not None and order < self.pageblock_order:
            members = self._pb_free[pfn >> self.pageblock_order]
            members.discard(pfn)
            if not members:
                del self._pb_free[pfn >> self.pageblock_order]

    def free_block(self, pfn: int, order: int) -> int | None:
        """The migratetype list holding free block ``pfn`` of ``order`` (page_is_buddy), or None."""
        found = self._free.get(pfn)
        if found is not None:
            return found[1] if found[0] == order else None
        if order == self.max_order - 1:
            for mt in range(MIGRATETYPES):
                area = self.free_area[order][mt]
                if area.has_runs() and area.contains(pfn):
                    return mt
        return None

    def _first(self, order: int, mt: int) -> int | None:
        return self.free_area[order][mt].first()

    def add_boot_run(self, first: int, count: int) -> None:
        """memblock_free_all -> __free_pages_core(page, MAX_ORDER-1) for ``count`` aligned top-order
        blocks in address order, each added to the tail (FPI_TO_TAIL) of its pageblock's type."""
        order = self.max_order - 1
        self.free_area[order][MOVABLE].add_run(first, 1 << order, count)
        self.nr_free += count << order
        self.managed += count << order

    def add_boot_block(self, pfn: int, order: int) -> None:
        """__free_pages_core for one block that is not top-order (range edges): merges, to the tail."""
        self.managed += 1 << order
        self.free_one(pfn, order, self.pageblock_mt(pfn), to_tail=True)

    # -- allocation -------------------------------------------------------------------------
    def _expand(self, pfn: int, low: int, high: int, mt: int) -> None:
        """expand(): keep the lowest 2^low pages, give back the upper halves (list head)."""
        while high > low:
            high -= 1
            self._add(pfn + (1 << high), high, mt, tail=False)

    def rmqueue_smallest(self, order: int, mt: int) -> int | None:
        """__rmqueue_smallest: the first block of the smallest order >= ``order`` of type ``mt``."""
        for current in range(order, self.max_order):
            pfn = self._first(current, mt)
            if pfn is None:
                continue
            self._del(pfn, current, mt)
            self._expand(pfn, order, current, mt)
            self.nr_free -= 1 << order
            return pfn
        return None

    def _can_steal(self, order: int, start_mt: int) -> bool:
        """can_steal_fallback (page_group_by_mobility_disabled is false above ~256 MiB)."""
        return (order >= self.pageblock_order or order >= self.pageblock_order // 2
                or start_mt in (RECLAIMABLE, UNMOVABLE))

    def _find_suitable_fallback(self, order: int, mt: int) -> tuple[int, bool] | None:
        """find_suitable_fallback(area, order, mt, only_stealable=false)."""
        for fallback in FALLBACKS[mt]:
            if self.free_area[order][fallback].nr:
                return fallback, self._can_steal(order, mt)
        return None

    def rmqueue_fallback(self, order: int, start_mt: int, alloc_flags: int) -> bool:
        """__rmqueue_fallback: move a block of a fallback type to ``start_mt``'s list."""
        min_order = order
        if order < self.pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
            min_order = self.pageblock_order
        # "Find the largest available free page in the other list"
        for current in range(self.max_order - 1, min_order - 1, -1):
            found = self._find_suitable_fallback(current, start_mt)
            if found is None:
                continue
            fallback_mt, can_steal = found
            if not can_steal and start_mt == MOVABLE and current > order:
                # find_smallest: the smallest block that has a fallback
                for current in range(order, self.max_order):
                    found = self._find_suitable_fallback(current, start_mt)
                    if found is not None:
                        fallback_mt, can_steal = found
                        break
            pfn = self._first(current, fallback_mt)
            assert pfn is not None
            self._steal_suitable_fallback(pfn, current, fallback_mt, start_mt, can_steal)
            return True
        return False

    def _steal_suitable_fallback(self, pfn: int, order: int, list_mt: int, start_mt: int, whole_block: bool) -> None:
        """steal_suitable_fallback (6.1 l.2791). Watermark boosting only wakes kswapd: not modelled."""
        old_block_type = self.pageblock_mt(pfn)
        if old_block_type == HIGHATOMIC:
            self._move(pfn, order, list_mt, start_mt)
            return
        if order >= self.pageblock_order:
            # "Take ownership for orders >= pageblock_order": change_pageblock_range
            for block_pfn in range(pfn, pfn + (1 << order), self.pageblock_pages):
                self.set_pageblock_mt(block_pfn, start_mt)
            self._move(pfn, order, list_mt, start_mt)
            return
        if not whole_block:
            self._move(pfn, order, list_mt, start_mt)
            return
        free_pages, movable_pages = self._move_freepages_block(pfn, start_mt)
        if start_mt == MOVABLE:
            alike = movable_pages
        elif old_block_type == MOVABLE:
            alike = self.pageblock_pages - (free_pages + movable_pages)
        else:
            alike = 0
        if not free_pages:
            self._move(pfn, order, list_mt, start_mt)
            return
        if free_pages + alike >= self.pageblock_pages >> 1:
            self.set_pageblock_mt(pfn, start_mt)

    def _move(self, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
        """move_to_free_list: list_move_tail to the ``new_mt`` list."""
        self._del(pfn, order, old_mt)
        self._add(pfn, order, new_mt, tail=True)

    def _move_freepages_block(self, pfn: int, mt: int) -> tuple[int, int]:
        """move_freepages_block: every free block of the pageblock to ``mt``'s list tails, in
        address order; returns (free pages moved, movable pages in use in the block)."""
        block = pfn >> self.pageblock_order
        start, last = block << self.pageblock_order, ((block + 1) << self.pageblock_order) - 1
        # "Do not cross zone boundaries"
        if not self.start_pfn <= start < self.end_pfn:
            start = pfn
        if not self.start_pfn <= last < self.end_pfn:
            return 0, 0
        moved = 0
        for member in sorted(m for m in self._pb_free.get(block, ()) if m >= start):
            member_order, member_mt = self._free[member]
            self._move(member, member_order, member_mt, mt)
            moved += 1 << member_order
        return moved, self._pb_movable.get(block, 0)

    def rmqueue(self, order: int, mt: int, alloc_flags: int = 0) -> int | None:
        """__rmqueue: smallest of the wanted type, else fall back and retry."""
        while True:
            pfn = self.rmqueue_smallest(order, mt)
            if pfn is not None:
                return pfn
            if not self.rmqueue_fallback(order, mt, alloc_flags):
                return None

    # -- freeing ----------------------------------------------------------------------------
    def free_one(self, pfn: int, order: int, mt: int, to_tail: bool = False) -> None:
        """__free_one_page: merge with free buddies up to MAX_ORDER-1, then list head or tail."""
        self.nr_free += 1 << order
        buddy = pfn
        while order < self.max_order - 1:
            buddy = pfn ^ (1 << order)
            if not (self.start_pfn <= buddy < self.end_pfn):
                break
            buddy_mt = self.free_block(buddy, order)
            if buddy_mt is None:
                break
            if order >= self.pageblock_order:
                # Do not merge across pageblocks of non-mergeable types (isolate, highatomic)
                other = self.pageblock_mt(buddy)
                if mt != other and (mt >= PCPTYPES or other >= PCPTYPES):
                    break
            self._del(buddy, order, buddy_mt)
            pfn &= buddy
            order += 1
        if not to_tail:
            to_tail = self._buddy_merge_likely(pfn, buddy, order)
        self._add(pfn, order, mt, tail=to_tail)

    def _buddy_merge_likely(self, pfn: int, buddy: int, order: int) -> bool:
        """buddy_merge_likely: put the block at the tail when its higher-order buddy is free."""
        if order >= self.max_order - 2:
            return False
        higher = buddy & pfn
        return self.free_block(higher ^ (1 << (order + 1)), order + 1) is not None

    # -- bulk (page cache) -----------------------------------------------------------------
    def take_front_run(self, mt: int, blocks: int) -> Run | None:
        """Up to ``blocks`` whole top-order blocks from the head of ``mt``'s list when the head is
        a run of untouched blocks and no smaller block of ``mt`` is free (then
        __rmqueue_smallest would split exactly these, in this order)."""
        top = self.max_order - 1
        if any(self.free_area[o][mt].nr for o in range(top)):
            return None
        run = self.free_area[top][mt].take_front_run(blocks)
        if run is not None:
            self.nr_free -= run.count << top
        return run

    def take_block(self, pfn: int, order: int, mt: int) -> None:
        """Remove free block ``pfn`` of ``order`` from ``mt``'s list whole (no split)."""
        self._del(pfn, order, mt)
        self.nr_free -= 1 << order

    def free_top_run(self, run: Run, mt: int) -> None:
        """__free_one_page of each top-order block of ``run`` in turn: no merging at the top
        order and buddy_merge_likely is false there, so each goes to the list head."""
        self.free_area[self.max_order - 1][mt].add_run(run.first, run.step, run.count, head=True)
        self.nr_free += run.count << (self.max_order - 1)

    # -- reports ----------------------------------------------------------------------------
    def free_by_type(self) -> dict[str, int]:
        """Free pages per migratetype list (as /proc/pagetypeinfo sums them)."""
        out = {}
        for mt in range(MIGRATETYPES):
            out[MIGRATETYPE_NAMES[mt]] = sum(self.free_area[o][mt].nr << o for o in range(self.max_order))
        return out

    def has_free(self, order: int) -> bool:
        """A free block of at least ``order`` in the PCPTYPES or HIGHATOMIC lists
        (the high-order part of __zone_watermark_ok)."""
        return any(self.free_area[o][mt].nr for o in range(order, self.max_order) for mt in range(MIGRATETYPES))
