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
from .physmem import PhysMem
from .pcp import order_to_pindex

SWAP_CLUSTER_MAX = 32  # include/linux/swap.h: pages reclaimed per batch


class PageCache:
    def __init__(self, phys: PhysMem) -> None:
        self.phys = phys
        self._lru: deque[tuple[int, Zone | None, Run | None]] = deque()  # oldest first
        self.pages = 0
        phys.reclaim = self.reclaim

    def fill(self, npages: int, cpu: int) -> int:
        """Read ``npages`` of file data on ``cpu``; returns the pages added."""
        phys = self.phys
        top_pages = 1 << (phys.zones[0].max_order - 1) if phys.zones else 1
        added = 0
        while added < npages:
            left = npages - added
            if left >= top_pages:
                run = self._bulk(left // top_pages, cpu)
                if run is not None:
                    zone, taken = run
                    self._lru.append((-1, zone, taken))
                    added += taken.count * top_pages
                    continue
            pfn = phys.alloc(0, MOVABLE, cpu)
            assert pfn is not None
            self._lru.append((pfn, None, None))
            added += 1
        self.pages += added
        return added

    def _bulk(self, blocks: int, cpu: int) -> tuple[Zone, Run] | None:
        phys = self.phys
        for zone in phys.zonelist(phys.node_of_cpu(cpu), 99):
            if phys.pcp(cpu, zone).lists[order_to_pindex(MOVABLE, 0)]:
                return None  # the per-CPU list is served first
            top = zone.max_order - 1
            reserve = zone.lowmem_reserve[-1] if zone.lowmem_reserve else 0
            room = (zone.nr_free - zone.watermark["low"] - reserve) >> top
            if room <= 0:
                continue
            run = zone.take_front_run(MOVABLE, min(blocks, room))
            return (zone, run) if run is not None else None
        return None

    def drop(self, npages: int | None = None, cpu: int = 0) -> int:
        """Free up to ``npages`` (all by default), oldest first; returns the pages freed."""
        freed = 0
        limit = self.pages if npages is None else npages
        while self._lru and freed < limit:
            pfn, zone, run = self._lru.popleft()
            if run is None:
                self.phys.free(pfn, cpu)
                freed += 1
            else:
                assert zone is not None
                zone.free_top_run(run, MOVABLE)
                freed += run.count << (zone.max_order - 1)
        self.pages -= freed
        return freed

    def reclaim(self, want: int) -> int:
        """Direct reclaim: at least SWAP_CLUSTER_MAX pages from the LRU tail; 0 when empty."""
        return self.drop(max(want, SWAP_CLUSTER_MAX))
