"""The boot memory map and memblock: what RAM a machine has and what boot reserved of it.

An arch turns its firmware map (x86: e820) into RAM ranges per NUMA node; boot reserves
the kernel image, the initrd and memblock allocations (which are top-down, mm/memblock.c:
memblock_find_in_range_node), and ``memblock_free_all`` hands the rest to the buddy
allocator in MAX_ORDER-aligned blocks (mm/memblock.c: __free_pages_memory), except the
part that CONFIG_DEFERRED_STRUCT_PAGE_INIT leaves to deferred_init_memmap, which frees it
later in the same order (mm/page_alloc.c: defer_init, deferred_init_maxorder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import OutOfMemory
from .pages import PAGE_SHIFT

SECTION_SIZE_BITS = 27  # arch/x86/include/asm/sparsemem.h (64-bit); arm64 with 4K pages too
PAGES_PER_SECTION = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT)
STRUCT_PAGE_SIZE = 64  # sizeof(struct page) on 64-bit (include/linux/mm_types.h)


@dataclass(frozen=True, slots=True)
class MemRange:
    """[start, end) bytes of one kind (``ram`` or a reserved kind) on one NUMA node."""

    start: int
    end: int
    kind: str = "ram"
    node: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class BootMemory:
    """What an arch's boot hands the core: the platform's firmware map, memblock.memory,
    early reservations, the zone limits, and where the kernel image and initrd were put."""

    platform: str
    firmware: list[MemRange]
    memory: list[MemRange]
    zones: list[tuple[str, int | None]]  # (zone name, end address; None: no limit), lowest first
    reserved: list[tuple[int, int, str]] = field(default_factory=list)  # (start, size, what)
    kernel_phys: int | None = None
    initrd: tuple[int, int] | None = None  # (start, size)
    max_order: int = 11  # MAX_ORDER: orders 0..10
    percpu_atom: int = 4096  # pcpu_embed_first_chunk's atom_size (PAGE_SIZE in mm/percpu.c's default)
    pageblock_order: int = 9
    dma_reserve: bool = False  # the arch charges reserved pages of the first zone to dma_reserve (x86)


@dataclass
class Reservation:
    start: int
    end: int
    what: str


@dataclass
class Memblock:
    """memblock.memory (page-aligned RAM per node) and memblock.reserved."""

    memory: list[MemRange]
    reserved: list[Reservation] = field(default_factory=list)

    def reserve(self, start: int, size: int, what: str) -> None:
        """memblock_reserve."""
        self.reserved.append(Reservation(start, start + size, what))
        self.reserved.sort(key=lambda r: r.start)

    def unreserve(self, start: int, end: int) -> None:
        """memblock_phys_free (free_reserved_area hands the range to the page allocator)."""
        kept: list[Reservation] = []
        for r in self.reserved:
            if r.end <= start or r.start >= end:
                kept.append(r)
                continue
            if r.start < start:
                kept.append(Reservation(r.start, start, r.what))
            if r.end > end:
                kept.append(Reservation(end, r.end, r.what))
        self.reserved = kept

    def free_ranges(self, node: int | None = None) -> Iterator[tuple[int, int]]:
        """for_each_free_mem_range: memory minus reserved, ascending (bytes)."""
        for mem in self.memory:
            if node is not None and mem.node != node:
                continue
            cursor = mem.start
            for res in self.reserved:
                if res.end <= cursor or res.start >= mem.end:
                    continue
                if res.start > cursor:
                    yield cursor, res.start
                cursor = max(cursor, res.end)
            if cursor < mem.end:
                yield cursor, mem.end

    def alloc(self, size: int, align: int, what: str, node: int | None = None,
              limit: int | None = None) -> int:
        """memblock_phys_alloc_range / memblock_alloc_try_nid: the highest free aligned range
        (top-down), on ``node`` if given, below ``limit`` if given."""
        best = None
        for start, end in self.free_ranges(node):
            if limit is not None:
                end = min(end, limit)
            addr = (end - size) // align * align
            if addr >= start and (best is None or addr > best):
                best = addr
        if best is None:
            raise OutOfMemory(f"memblock: no {size} bytes free for {what}")
        self.reserve(best, size, what)
        return best

    def reserved_bytes(self) -> int:
        return sum(r.end - r.start for r in self.reserved)


def buddy_blocks(start_pfn: int, end_pfn: int, max_order: int) -> Iterator[tuple[int, int]]:
    """__free_pages_memory: (pfn, order) blocks, the largest aligned one at each step."""
    pfn = start_pfn
    while pfn < end_pfn:
        order = min(max_order - 1, (pfn & -pfn).bit_length() - 1 if pfn else max_order - 1)
        while pfn + (1 << order) > end_pfn:
            order -= 1
        yield pfn, order
        pfn += 1 << order


def first_deferred_pfn(zone_ranges: list[tuple[int, int]]) -> int:
    """defer_init for the highest zone of a node: the first section-aligned PFN after one
    section's worth (PAGES_PER_SECTION) of present pages has been initialised.

    ``zone_ranges`` are the present [start_pfn, end_pfn) ranges of that zone, ascending.
    """
    seen = 0  # present pages before the candidate (nr_initialised counts each pfn, then checks)
    for start, end in zone_ranges:
        pfn = -(-start // PAGES_PER_SECTION) * PAGES_PER_SECTION
        while pfn < end:
            if seen + (pfn - start) >= PAGES_PER_SECTION:
                return pfn
            pfn += PAGES_PER_SECTION
        seen += end - start
    return zone_ranges[-1][1] if zone_ranges else 0
