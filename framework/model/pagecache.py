"""The page cache: file pages the machine holds (movable, on the LRU).

Reads fill it with order-0 movable pages (GFP_HIGHUSER_MOVABLE through the per-CPU lists);
``drop_caches`` and reclaim free it oldest first (mm/vmscan.c: shrink_inactive_list takes
the LRU tail). When the buddy lists' head is a run of untouched top-order blocks and no
smaller movable block is free, a large fill takes whole blocks from that run at once, which
is exactly what __rmqueue_smallest would split page by page (sparse: a run per fill).
"""

from __future__ import annotations

from collections import deque

from .buddy import MOVABLE, Zone
from .freelist import Run
from .pcp import order_to_pindex
from .physmem import PhysMem

SWAP_CLUSTER_MAX = 32  # include/linux/swap.h: pages reclaimed per batch


class PageCache:
    def __init__(self, phys: PhysMem) -> None:
        self.phys = phys
        self._lru: deque[tuple[int, Zone | None, Run | None]] = deque()  # oldest first
        self.pages = 0
        self.explicit = 0  # of which single blocks the allocator tracks (the rest are whole runs)
        phys.reclaim = self.reclaim

    def fill(self, npages: int, cpu: int) -> int:
        """Read ``npages`` of file data on ``cpu``; returns the pages added.

        Order-0 movable allocations through the per-CPU list take, in the end, exactly these
        pages: what the CPU's movable list holds, every smaller free movable block of the
        zone (__rmqueue_smallest splits the smallest first), then whole top-order blocks from
        the head of the list. A large fill takes the last two in bulk; the rest goes page by
        page through the allocator, which leaves the per-CPU list as the kernel would.
        """
        phys = self.phys
        added = 0
        while added < npages:
            left = npages - added
            zone = self._bulk_zone(cpu, left)
            got = self._take_bulk(zone, left) if zone is not None else 0
            if got:
                added += got
                continue
            pfn = phys.alloc(0, MOVABLE, cpu)
            assert pfn is not None
            self._lru.append((pfn, None, None))
            added += 1
            self.explicit += 1
        self.pages += added
        return added

    def _bulk_zone(self, cpu: int, left: int) -> Zone | None:
        """The zone a large fill may take in bulk from: the first of the zonelist above its
        low watermark, when this CPU's movable list for it is empty."""
        phys = self.phys
        for zone in phys.zonelist(phys.node_of_cpu(cpu), 99):
            top = zone.max_order - 1
            if left < (1 << top) or phys.pcp(cpu, zone).lists[order_to_pindex(MOVABLE, 0)]:
                return None
            reserve = zone.lowmem_reserve[-1] if zone.lowmem_reserve else 0
            if zone.nr_free - (1 << top) > zone.watermark["low"] + reserve:
                return zone
        return None

    def _take_bulk(self, zone: Zone, left: int) -> int:
        """Whole free movable blocks, smallest order first, then top-order blocks from the
        list head (a run at once), while the zone stays above its low watermark."""
        reserve = zone.lowmem_reserve[-1] if zone.lowmem_reserve else 0
        room = zone.nr_free - zone.watermark["low"] - reserve
        taken = 0
        top = zone.max_order - 1
        for order in range(zone.max_order):
            area = zone.free_area[order][MOVABLE]
            while area.nr and taken + (1 << order) <= min(left, room):
                if order == top:
                    run = zone.take_front_run(MOVABLE, (min(left, room) - taken) >> top)
                    if run is not None:
                        self._lru.append((-1, zone, run))
                        taken += run.count << top
                        continue
                pfn = area.first()
                assert pfn is not None
                zone.take_block(pfn, order, MOVABLE)
                self.phys.took(pfn, order, MOVABLE)
                self._lru.append((pfn, None, None))
                taken += 1 << order
                self.explicit += 1 << order
            if area.nr and order < top:
                break  # the rest of this order does not fit: page by page from here
        return taken

    def drop(self, npages: int | None = None, cpu: int = 0) -> int:
        """Free up to ``npages`` (all by default), oldest first; returns the pages freed."""
        freed = 0
        limit = self.pages if npages is None else npages
        while self._lru and freed < limit:
            pfn, zone, run = self._lru.popleft()
            if run is None:
                pages = self.phys.free(pfn, cpu)
                freed += pages
                self.explicit -= pages
            else:
                assert zone is not None
                zone.free_top_run(run, MOVABLE)
                freed += run.count << (zone.max_order - 1)
        self.pages -= freed
        return freed

    def reclaim(self, want: int) -> int:
        """Direct reclaim: at least SWAP_CLUSTER_MAX pages from the LRU tail; 0 when empty."""
        return self.drop(max(want, SWAP_CLUSTER_MAX))
