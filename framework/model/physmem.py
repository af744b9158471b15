"""Physical memory as the page allocator serves it: nodes, zones, zonelists, watermarks and
per-CPU lists around the buddy allocator of each zone (mm/page_alloc.c, Linux 6.1).

Entry points mirror the kernel's: :meth:`PhysMem.alloc` is ``alloc_pages(gfp, order)``
(get_page_from_freelist over the zonelist with the low watermark, then the slow path's
min watermark after reclaiming page cache), :meth:`PhysMem.alloc_bulk` is the order-0
loop of mm/vmalloc.c:vm_area_alloc_pages around ``__alloc_pages_bulk``, and
:meth:`PhysMem.free` is ``__free_pages`` (free_unref_page for the orders the per-CPU lists
take). Every call names the CPU it runs on: per-CPU lists are per CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ..errors import OutOfMemory
from .buddy import ALLOC_NOFRAGMENT, MOVABLE, PCPTYPES, Zone
from .pcp import PerCpuPages, pcp_allowed_order, pcp_sizes

# mm/page_alloc.c: sysctl_lowmem_reserve_ratio (DMA 256, DMA32 256, Normal 32)
LOWMEM_RESERVE_RATIO = {"DMA": 256, "DMA32": 256, "Normal": 32}
WATERMARK_SCALE_FACTOR = 10  # mm/page_alloc.c: watermark_scale_factor
BULK_MAX = 100  # mm/vmalloc.c: vm_area_alloc_pages, "hard-coded and is 100 pages per call"


def min_free_kbytes(lowmem_kbytes: int) -> int:
    """calculate_min_free_kbytes: int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144]."""
    return max(128, min(math.isqrt(lowmem_kbytes * 16), 262144))


def node_of_cpu(cpu: int, cpus: int, nodes: int) -> int:
    """CPUs are numbered node by node, as ACPI SRAT lists them on the platforms modelled."""
    per_node = max(1, -(-cpus // nodes))
    return min(cpu // per_node, nodes - 1)


class PhysMem:
    """Every zone of every node, and the per-CPU lists of the CPUs that used them."""

    def __init__(self, nodes: list[list[Zone]], cpus: int, page_size: int = 4096) -> None:
        self.nodes = nodes  # node -> its populated zones, lowest zone first
        self.zones = [zone for zones in nodes for zone in zones]
        self.cpus = cpus
        self.page_size = page_size
        self._pcp: dict[tuple[int, int], PerCpuPages] = {}  # (cpu, zone id) -> lists
        self._pcp_sizes: dict[int, tuple[int, int]] = {}  # zone id -> (batch, high)
        self._allocated: dict[int, tuple[int, int]] = {}  # pfn -> (order, migratetype) of blocks handed out
        self.reclaim: Callable[[int], int] | None = None  # frees page cache; returns pages freed
        self.allocated_pages = 0
        self.min_free_kbytes = 0
        self._zonelists: dict[tuple[int, int], list[Zone]] = {}
        self._starts = sorted((zone.start_pfn, i) for i, zone in enumerate(self.zones))

    # -- topology ---------------------------------------------------------------------------
    def node_of_cpu(self, cpu: int) -> int:
        return node_of_cpu(cpu, self.cpus, len(self.nodes))

    def zone_of(self, pfn: int) -> Zone:
        for start, i in reversed(self._starts):
            if pfn >= start:
                zone = self.zones[i]
                if pfn < zone.end_pfn:
                    return zone
                break
        raise ValueError(f"pfn {pfn:#x} is in no zone")

    def zonelist(self, node: int, highest_zone: int) -> list[Zone]:
        """build_zonelists: the local node's zones from the highest allowed down, then the
        other nodes' (by distance; with no SLIT every remote node is equally far: by number)."""
        key = (node, highest_zone)
        zones = self._zonelists.get(key)
        if zones is None:
            order = [node] + [n for n in range(len(self.nodes)) if n != node]
            zones = self._zonelists[key] = [z for n in order for z in reversed(self.nodes[n]) if z.index <= highest_zone]
        return zones

    # -- watermarks -------------------------------------------------------------------------
    def setup_watermarks(self) -> None:
        """init_per_zone_wmark_min (postcore initcall), then khugepaged's
        set_recommended_min_free_kbytes (subsys initcall, THP=always on Debian): the final
        min_free_kbytes, watermarks, lowmem_reserve and per-CPU batch/high."""
        kb = self.page_size >> 10
        self.min_free_kbytes = min_free_kbytes(self._free_buffer_pages() * kb)
        self._set_watermarks()
        # mm/khugepaged.c: set_recommended_min_free_kbytes
        nr_zones = len({(z.node, z.name) for z in self.zones})
        pageblock = self.zones[0].pageblock_pages if self.zones else 512
        recommended = pageblock * nr_zones * 2 + pageblock * nr_zones * PCPTYPES * PCPTYPES
        recommended = min(recommended, self._free_buffer_pages() // 20)
        if recommended * kb > self.min_free_kbytes:
            self.min_free_kbytes = recommended * kb
        self._set_watermarks()

    def _free_buffer_pages(self) -> int:
        """nr_free_buffer_pages: managed pages above the high watermark, zones up to Normal."""
        return sum(max(z.managed - z.watermark["high"], 0) for z in self.zones)

    def _set_watermarks(self) -> None:
        """__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve, zone_pcp_update."""
        kb = self.page_size >> 10
        lowmem = sum(z.managed for z in self.zones)
        pages_min = self.min_free_kbytes // kb
        for zone in self.zones:
            tmp = pages_min * zone.managed // lowmem if lowmem else 0
            step = max(tmp >> 2, zone.managed * WATERMARK_SCALE_FACTOR // 10000)
            zone.watermark = {"min": tmp, "low": tmp + step, "high": tmp + 2 * step}
        for zones in self.nodes:
            top = max((z.index for z in zones), default=0)
            for zone in zones:
                ratio = LOWMEM_RESERVE_RATIO.get(zone.name, 0)
                reserve = [0] * (top + 1)
                upper = 0
                for j in range(zone.index + 1, top + 1):
                    upper += sum(z.managed for z in zones if z.index == j)
                    reserve[j] = upper // ratio if ratio and zone.managed else 0
                zone.lowmem_reserve = reserve
        node_cpus = [sum(1 for c in range(self.cpus) if self.node_of_cpu(c) == n) for n in range(len(self.nodes))]
        for zone in self.zones:
            self._pcp_sizes[zone.uid] = pcp_sizes(zone, node_cpus[zone.node])
        for (_cpu, zid), pcp in self._pcp.items():
            pcp.batch, pcp.high = self._pcp_sizes[zid]

    def _watermark_ok(self, zone: Zone, order: int, mark: int, highest_zone: int, extra: int = 0) -> bool:
        """__zone_watermark_ok (no highatomic reserve, no ALLOC_RESERVES)."""
        reserve = zone.lowmem_reserve[highest_zone] if highest_zone < len(zone.lowmem_reserve) else 0
        free = zone.nr_free - ((1 << order) - 1)
        if free <= mark + extra + reserve:
            return False
        return order == 0 or zone.has_free(order)

    # -- per-CPU lists ----------------------------------------------------------------------
    def pcp(self, cpu: int, zone: Zone) -> PerCpuPages:
        zid = zone.uid
        lists = self._pcp.get((cpu, zid))
        if lists is None:
            batch, high = self._pcp_sizes.get(zid, (1, 0))  # boot_pageset: batch 1, high 0
            lists = self._pcp[(cpu, zid)] = PerCpuPages(batch, high)
        return lists

    def drain_all(self) -> None:
        """drain_all_pages(NULL)."""
        by_uid = {zone.uid: zone for zone in self.zones}
        for (_cpu, zid), pcp in self._pcp.items():
            pcp.drain(by_uid[zid])

    # -- allocation -------------------------------------------------------------------------
    def _nofragment(self, preferred: Zone) -> int:
        """alloc_flags_nofragment: Normal zone with a populated DMA32 below it (or one node)."""
        if preferred.name != "Normal":
            return 0
        zones = self.nodes[preferred.node]
        if len(self.nodes) > 1 and not any(z.name == "DMA32" for z in zones):
            return 0
        return ALLOC_NOFRAGMENT

    def _rmqueue(self, zone: Zone, order: int, mt: int, cpu: int, flags: int) -> int | None:
        if pcp_allowed_order(order, zone.pageblock_order):
            pcp = self.pcp(cpu, zone)
            pcp.free_factor >>= 1  # rmqueue_pcplist: "On allocation, reduce the number of pages that are batch freed"
            return pcp.rmqueue(zone, order, mt, flags)
        return zone.rmqueue(order, mt, flags)  # rmqueue_buddy

    def _get_page_from_freelist(self, order: int, mt: int, cpu: int, highest_zone: int, mark_name: str,
                                node: int | None = None) -> int | None:
        zones = self.zonelist(self.node_of_cpu(cpu) if node is None else node, highest_zone)
        if not zones:
            return None
        flags = self._nofragment(zones[0])
        while True:
            for zone in zones:
                if flags & ALLOC_NOFRAGMENT and len(self.nodes) > 1 and zone.node != zones[0].node:
                    break  # "If moving to a remote node, retry but allow fragmenting fallbacks"
                if not self._watermark_ok(zone, order, zone.watermark[mark_name], highest_zone):
                    continue
                pfn = self._rmqueue(zone, order, mt, cpu, flags)
                if pfn is not None:
                    return pfn
            if not flags & ALLOC_NOFRAGMENT:
                return None
            flags &= ~ALLOC_NOFRAGMENT

    def alloc(self, order: int, mt: int, cpu: int, highest_zone: int = 99, may_fail: bool = False,
              node: int | None = None) -> int | None:
        """alloc_pages(gfp, order) on ``cpu``: the fast path with the low watermark; then the
        slow path: reclaim (page cache) and the min watermark. Raises OutOfMemory unless
        ``may_fail`` (__GFP_NORETRY, as huge vmalloc asks). ``node`` is alloc_pages_node's
        preferred node (default: the CPU's, numa_node_id()); the pages still come through
        ``cpu``'s per-CPU lists of that node's zones."""
        pfn = self._get_page_from_freelist(order, mt, cpu, highest_zone, "low", node)
        if pfn is None:
            pfn = self._get_page_from_freelist(order, mt, cpu, highest_zone, "min", node)
        while pfn is None and self.reclaim is not None and not may_fail and self.reclaim(1 << order):
            pfn = self._get_page_from_freelist(order, mt, cpu, highest_zone, "min", node)
        if pfn is None:
            if may_fail:
                return None
            raise OutOfMemory(f"memory: no free order-{order} block ({self.free_pages()} pages free)")
        self.took(pfn, order, mt)
        return pfn

    def alloc_bulk(self, count: int, mt: int, cpu: int, highest_zone: int = 99) -> list[int]:
        """mm/vmalloc.c:vm_area_alloc_pages for order 0: __alloc_pages_bulk in calls of at most
        100 pages from one zone's per-CPU list, falling back to alloc_page one by one."""
        pfns: list[int] = []
        while len(pfns) < count:
            want = min(BULK_MAX, count - len(pfns))
            got = self._alloc_pages_bulk(want, mt, cpu, highest_zone)
            pfns.extend(got)
            if len(got) != want:
                break
        while len(pfns) < count:
            pfn = self.alloc(0, mt, cpu, highest_zone)
            assert pfn is not None
            pfns.append(pfn)
        return pfns

    def _alloc_pages_bulk(self, want: int, mt: int, cpu: int, highest_zone: int) -> list[int]:
        """__alloc_pages_bulk: the first zone whose low watermark + nr_pages is met."""
        if want == 1:
            pfn = self.alloc(0, mt, cpu, highest_zone)
            return [pfn] if pfn is not None else []
        for zone in self.zonelist(self.node_of_cpu(cpu), highest_zone):
            if len(self.nodes) > 1 and zone.node != self.node_of_cpu(cpu):
                break  # remote node: "goto failed" (single-page path)
            if self._watermark_ok(zone, 0, zone.watermark["low"], highest_zone, extra=want):
                break
        else:
            zone = None
        if zone is None or (len(self.nodes) > 1 and zone.node != self.node_of_cpu(cpu)):
            pfn = self.alloc(0, mt, cpu, highest_zone)
            return [pfn] if pfn is not None else []
        pcp = self.pcp(cpu, zone)
        got: list[int] = []
        for _ in range(want):
            pfn = pcp.rmqueue(zone, 0, mt, 0)
            if pfn is None:
                break
            self.took(pfn, 0, mt)
            got.append(pfn)
        return got

    def took(self, pfn: int, order: int, mt: int) -> None:
        if pfn in self._allocated:
            raise AssertionError(f"pfn {pfn:#x} handed out twice")
        self._allocated[pfn] = (order, mt)
        self.allocated_pages += 1 << order
        if mt == MOVABLE:
            self.zone_of(pfn).count_movable(pfn, 1 << order)

    def split(self, pfn: int) -> None:
        """mm/page_alloc.c: split_page: an order-N allocation becomes 2^N order-0 pages, each
        freed on its own."""
        order, mt = self._allocated.pop(pfn)
        for page in range(pfn, pfn + (1 << order)):
            self._allocated[page] = (0, mt)

    # -- freeing ----------------------------------------------------------------------------
    def free(self, pfn: int, cpu: int) -> int:
        """__free_pages(page, order): per-CPU list for the orders it takes, else the buddy.
        Returns the pages freed."""
        found = self._allocated.pop(pfn, None)
        if found is None:
            raise ValueError(f"free of pfn {pfn:#x}, which is not allocated")
        order, gfp_mt = found
        self.allocated_pages -= 1 << order
        zone = self.zone_of(pfn)
        if gfp_mt == MOVABLE:
            zone.count_movable(pfn, -(1 << order))
        mt = zone.pageblock_mt(pfn)  # free_unref_page_prepare: get_pfnblock_migratetype
        if pcp_allowed_order(order, zone.pageblock_order):
            self.pcp(cpu, zone).free(zone, pfn, order, mt)  # free_unref_page
        else:
            zone.free_one(pfn, order, mt)  # __free_pages_ok -> free_one_page
        return 1 << order

    def give(self, pfn: int, cpu: int) -> None:
        """A page that was never handed out (boot memory) joins the allocator: __free_page."""
        zone = self.zone_of(pfn)
        self.pcp(cpu, zone).free(zone, pfn, 0, zone.pageblock_mt(pfn))

    def free_many(self, pfns: Iterable[int], cpu: int) -> None:
        for pfn in pfns:
            self.free(pfn, cpu)

    def is_allocated(self, pfn: int) -> bool:
        return pfn in self._allocated

    # -- reports ----------------------------------------------------------------------------
    def free_pages(self) -> int:
        return sum(z.nr_free for z in self.zones) + sum(p.count for p in self._pcp.values())

    def managed_pages(self) -> int:
        return sum(z.managed for z in self.zones)
