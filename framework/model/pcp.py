"""Per-CPU page lists (struct per_cpu_pages, mm/page_alloc.c 6.1).

Each CPU keeps, per zone, lists of free pages indexed by order and migratetype
(order_to_pindex): orders 0..PAGE_ALLOC_COSTLY_ORDER for the three PCP types, and two
lists for pageblock-order (THP) pages. An empty list is refilled with ``batch`` pages taken
from the buddy allocator in one go (rmqueue_bulk, list_add_tail: physical order); a free puts
the page at the head (free_unref_page_commit) and, once the CPU holds ``high`` pages, gives a
batch back from the tails of the lists, round-robin (free_pcppages_bulk).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .buddy import MOVABLE, PCPTYPES

if TYPE_CHECKING:
    from .buddy import Zone

PAGE_ALLOC_COSTLY_ORDER = 3  # include/linux/mmzone.h
NR_LOWORDER_PCP_LISTS = PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 2  # 6.1.192 (and 6.12): one THP list for MOVABLE, one for the other types
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP
PCP_BATCH_SCALE_MAX = 5  # Debian config: CONFIG_PCP_BATCH_SCALE_MAX=5


def pcp_allowed_order(order: int, pageblock_order: int) -> bool:
    """pcp_allowed_order (CONFIG_TRANSPARENT_HUGEPAGE=y: pageblock order too)."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order


def order_to_pindex(mt: int, order: int) -> int:
    """order_to_pindex (6.1.192 l.733)."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (mt == MOVABLE)
    return PCPTYPES * order + mt


def pindex_to_order(pindex: int, pageblock_order: int) -> int:
    return pindex // PCPTYPES if pindex < NR_LOWORDER_PCP_LISTS else pageblock_order


def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def zone_batchsize(managed_pages: int, page_size: int = 4096) -> int:
    """zone_batchsize: ~0.1% of the zone or 1 MiB, /4, clamped to 2^n - 1."""
    batch = min(managed_pages >> 10, (1 << 20) // page_size)
    batch = max(batch // 4, 1)
    return _rounddown_pow_of_two(batch + batch // 2) - 1


def zone_highsize(low_wmark: int, batch: int, node_cpus: int) -> int:
    """zone_highsize with percpu_pagelist_high_fraction = 0: the zone's low watermark split
    over the node's CPUs, at least 4 batches (zone_pcp_update after boot: cpu_online = 0)."""
    high = low_wmark // max(node_cpus, 1)
    return max(high, batch << 2)


class PerCpuPages:
    """One CPU's lists for one zone. Lists hold PFNs; the left end is the list head."""

    __slots__ = ("lists", "count", "batch", "high", "free_factor")

    def __init__(self, batch: int, high: int) -> None:
        self.lists = [deque() for _ in range(NR_PCP_LISTS)]
        self.count = 0
        self.batch = batch
        self.high = high
        self.free_factor = 0

    def rmqueue(self, zone: Zone, order: int, mt: int, alloc_flags: int) -> int | None:
        """__rmqueue_pcplist: refill an empty list with rmqueue_bulk, take its first page."""
        pages = self.lists[order_to_pindex(mt, order)]
        if not pages:
            batch = self.batch
            if batch > 1:
                batch = max(batch >> order, 2)
            for _ in range(batch):  # rmqueue_bulk: list_add_tail, physical order
                pfn = zone.rmqueue(order, mt, alloc_flags)
                if pfn is None:
                    break
                pages.append(pfn)
                self.count += 1 << order
            if not pages:
                return None
        self.count -= 1 << order
        return pages.popleft()

    def free(self, zone: Zone, pfn: int, order: int, mt: int) -> None:
        """free_unref_page_commit: list head, then free_pcppages_bulk above ``high``."""
        pindex = order_to_pindex(mt, order)
        self.lists[pindex].appendleft(pfn)
        self.count += 1 << order
        free_high = bool(self.free_factor and order and order <= PAGE_ALLOC_COSTLY_ORDER)
        high = 0 if free_high else self.high  # nr_pcp_high (no reclaim in progress)
        if self.count >= high:
            self.free_bulk(zone, self._nr_pcp_free(high, free_high), pindex)

    def _nr_pcp_free(self, high: int, free_high: bool) -> int:
        """nr_pcp_free: at least batch, at most high - batch, doubling while only freeing."""
        if free_high:
            return self.count
        if high < self.batch:
            return 1
        min_nr_free, max_nr_free = self.batch, high - self.batch
        batch = self.batch << self.free_factor
        if batch < max_nr_free and self.free_factor < PCP_BATCH_SCALE_MAX:
            self.free_factor += 1
        return max(min_nr_free, min(batch, max_nr_free))

    def free_bulk(self, zone: Zone, count: int, pindex: int) -> None:
        """free_pcppages_bulk: from the list tails, round-robin from ``pindex``, to the buddy."""
        count = min(self.count, count)
        lo, hi = 0, NR_PCP_LISTS - 1
        pindex -= 1
        while count > 0:
            while True:
                pindex += 1
                if pindex > hi:
                    pindex = lo
                if self.lists[pindex]:
                    break
                if pindex == hi:
                    hi -= 1
                if pindex == lo:
                    lo += 1
            pages = self.lists[pindex]
            order = pindex_to_order(pindex, zone.pageblock_order)
            while count > 0 and pages:
                pfn = pages.pop()
                count -= 1 << order
                self.count -= 1 << order
                # 6.1: the migratetype cached at free time (page->index), which the list encodes
                mt = pindex % PCPTYPES if pindex < NR_LOWORDER_PCP_LISTS else zone.pageblock_mt(pfn)
                zone.free_one(pfn, order, mt)

    def drain(self, zone: Zone) -> None:
        """drain_pages_zone: everything back to the buddy."""
        if self.count:
            self.free_bulk(zone, self.count, 0)


def pcp_sizes(zone: Zone, node_cpus: int) -> tuple[int, int]:
    """(batch, high) as zone_set_pageset_high_and_batch sets them for ``zone``."""
    batch = max(1, zone_batchsize(zone.managed))
    return batch, zone_highsize(zone.watermark["low"], batch, node_cpus)

