"""The direct map as x86-64 builds it at boot (arch/x86/mm/init.c, init_64.c; 6.1 = 6.12 here).

init_mem_mapping maps the ISA range [0, 1 MiB) first, then memory_map_top_down maps RAM
from the top down in chunks that grow (2 MiB, then by 2^(PMD_SHIFT-PAGE_SHIFT-1) each
time, get_new_step_size), each chunk through init_range_memory_mapping ->
init_memory_mapping -> split_mem_range (4 KiB head, 2 MiB, 1 GiB, 2 MiB, 4 KiB tail) ->
adjust_range_page_size_mask (a 4 KiB or 2 MiB piece gets the bigger size when the whole
aligned 2 MiB / 1 GiB around it is memblock memory) -> kernel_physical_mapping_init
(phys_pud_init / phys_pmd_init / phys_pte_init). Those walk whole PUDs and PMDs: a 1 GiB or
2 MiB leaf maps its whole aligned range, an existing leaf is kept and *counted again*
(``if (!after_bootmem) pages++``), which is how the kernel's DirectMap counters come out.

The result is a list of (start_pfn, end_pfn, leaf_pages) ranges and the boot
direct_pages_count[] (update_page_count), which can exceed what is mapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from permalloc.model.directmap import LEAF_1G, LEAF_2M, LEAF_4K
from permalloc.model.memblock import MemRange

PAGE_SHIFT, PMD_SHIFT = 12, 21
PMD_PAGES, PUD_PAGES = 1 << 9, 1 << 18
ISA_END_PFN = 0x100000 >> PAGE_SHIFT  # arch/x86/include/asm/e820/types.h: ISA_END_ADDRESS


def _down(x: int, a: int) -> int:
    return x // a * a


def _up(x: int, a: int) -> int:
    return -(-x // a) * a


class _Tables:
    """The PUD/PMD/PTE occupancy of the direct map while boot builds it (sparse)."""

    def __init__(self) -> None:
        self.pud: dict[int, str] = {}  # GiB index -> "1G" leaf or "table"
        self.pmd: dict[int, str] = {}  # 2 MiB index -> "2M" leaf or "table" (inside "table" GiBs)
        self.pte: set[int] = set()  # mapped 4 KiB pfns (inside "table" PMDs)
        self.count = {LEAF_4K: 0, LEAF_2M: 0, LEAF_1G: 0}  # direct_pages_count[]

    def pud_init(self, start: int, end: int, mask: int) -> None:
        """phys_pud_init over pfns [start, end)."""
        pages = 0
        for g in range(start // PUD_PAGES, (end - 1) // PUD_PAGES + 1):
            lo, hi = max(start, g * PUD_PAGES), min(end, (g + 1) * PUD_PAGES)
            state = self.pud.get(g)
            if state == "table":
                self.pmd_init(lo, hi, mask)
                continue
            if state == "1G":
                if mask & LEAF_1G:
                    pages += 1  # "use the existing mapping" (and count it again)
                continue  # (splitting a boot 1G leaf for a smaller mask is not reached here)
            if mask & LEAF_1G:
                pages += 1
                self.pud[g] = "1G"
                continue
            self.pud[g] = "table"
            self.pmd_init(lo, hi, mask)
        self.count[LEAF_1G] += pages

    def pmd_init(self, start: int, end: int, mask: int) -> None:
        """phys_pmd_init over pfns [start, end) inside one GiB."""
        pages = 0
        for m in range(start // PMD_PAGES, (end - 1) // PMD_PAGES + 1):
            lo, hi = max(start, m * PMD_PAGES), min(end, (m + 1) * PMD_PAGES)
            state = self.pmd.get(m)
            if state == "table":
                self.pte_init(lo, hi)
                continue
            if state == "2M":
                if mask & LEAF_2M:
                    pages += 1
                continue
            if mask & LEAF_2M:
                pages += 1
                self.pmd[m] = "2M"
                continue
            self.pmd[m] = "table"
            self.pte_init(lo, hi)
        self.count[LEAF_2M] += pages

    def pte_init(self, start: int, end: int) -> None:
        """phys_pte_init: 4 KiB PTEs for [start, end), existing ones counted again."""
        pages = 0
        for pfn in range(start, end):
            pages += 1
            self.pte.add(pfn)
        self.count[LEAF_4K] += pages

    def leaves(self) -> list[tuple[int, int, int]]:
        """The mapped ranges by leaf size, merged."""
        items: list[tuple[int, int, int]] = []
        for g, state in self.pud.items():
            if state == "1G":
                items.append((g * PUD_PAGES, (g + 1) * PUD_PAGES, LEAF_1G))
        for m, state in self.pmd.items():
            if state == "2M":
                items.append((m * PMD_PAGES, (m + 1) * PMD_PAGES, LEAF_2M))
        items.extend((pfn, pfn + 1, LEAF_4K) for pfn in self.pte)
        items.sort()
        merged: list[tuple[int, int, int]] = []
        for start, end, leaf in items:
            if merged and merged[-1][1] == start and merged[-1][2] == leaf:
                merged[-1] = (merged[-1][0], end, leaf)
            else:
                merged.append((start, end, leaf))
        return merged


def _is_memory(memory: Sequence[tuple[int, int]], start: int, end: int) -> bool:
    """memblock_is_region_memory: [start, end) lies inside one memblock.memory range."""
    return any(lo <= start and end <= hi for lo, hi in memory)


def _split_mem_range(start: int, end: int, sizes: int, memory: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """split_mem_range + adjust_range_page_size_mask: [start, end) pfns -> (start, end, mask)."""
    ranges: list[tuple[int, int, int]] = []
    pfn, limit = start, end
    head_end = min(_up(pfn, PMD_PAGES), limit)
    if pfn < head_end:
        ranges.append((pfn, head_end, 0))
        pfn = head_end
    big_start, big_end = _up(pfn, PMD_PAGES), min(_up(pfn, PUD_PAGES), _down(limit, PMD_PAGES))
    if big_start < big_end:
        ranges.append((big_start, big_end, sizes & LEAF_2M))
        pfn = big_end
    g_start, g_end = _up(pfn, PUD_PAGES), _down(limit, PUD_PAGES)
    if g_start < g_end:
        ranges.append((g_start, g_end, sizes & (LEAF_2M | LEAF_1G)))
        pfn = g_end
    t_start, t_end = _up(pfn, PMD_PAGES), _down(limit, PMD_PAGES)
    if t_start < t_end:
        ranges.append((t_start, t_end, sizes & LEAF_2M))
        pfn = t_end
    if pfn < limit:
        ranges.append((pfn, limit, 0))
    adjusted = []
    for lo, hi, mask in ranges:
        if sizes & LEAF_2M and not mask & LEAF_2M and _is_memory(memory, _down(lo, PMD_PAGES), _up(hi, PMD_PAGES)):
            mask |= LEAF_2M
        if sizes & LEAF_1G and not mask & LEAF_1G and _is_memory(memory, _down(lo, PUD_PAGES), _up(hi, PUD_PAGES)):
            mask |= LEAF_1G
        adjusted.append((lo, hi, mask))
    return adjusted


def _get_new_step_size(step: int) -> int:
    """get_new_step_size: step << (PMD_SHIFT - PAGE_SHIFT - 1), in bytes -> here in pfns."""
    return step << (PMD_SHIFT - PAGE_SHIFT - 1)


def init_mem_mapping(ram: Sequence[MemRange], top_free_pmd: int, gbpages: bool) -> tuple[list[tuple[int, int, int]], dict[int, int]]:
    """The direct map after init_mem_mapping (arch/x86/mm/init.c 6.1 l.771).

    ``ram`` is memblock.memory; ``top_free_pmd`` the pfn of the highest free 2 MiB-aligned
    2 MiB block (memory_map_top_down's memblock_phys_alloc_range(PMD_SIZE, PMD_SIZE, ...));
    ``gbpages``: probe_page_size_mask's direct_gbpages && X86_FEATURE_GBPAGES.
    Returns the leaf ranges and direct_pages_count[].
    """
    memory = [(r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT) for r in ram]
    sizes = LEAF_2M | (LEAF_1G if gbpages else 0)  # probe_page_size_mask: PSE is on every x86-64
    tables = _Tables()
    end_pfn = max(hi for _, hi in memory)

    def init_memory_mapping(start: int, end: int) -> None:
        for lo, hi, mask in _split_mem_range(start, end, sizes, memory):
            tables.pud_init(lo, hi, mask)

    def init_range_memory_mapping(start: int, end: int) -> int:
        mapped = 0
        for lo, hi in memory:
            lo, hi = max(lo, start), min(hi, end)
            if lo < hi:
                init_memory_mapping(lo, hi)
                mapped += hi - lo
        return mapped

    # "the ISA range is always mapped regardless of memory holes"
    init_memory_mapping(0, ISA_END_PFN)
    # memory_map_top_down(ISA_END_ADDRESS, end)
    real_end = top_free_pmd + PMD_PAGES
    step = PMD_PAGES
    last_start = real_end
    mapped = 0
    while last_start > ISA_END_PFN:
        if last_start > step:
            start = max(_down(last_start - 1, step), ISA_END_PFN)
        else:
            start = ISA_END_PFN
        mapped += init_range_memory_mapping(start, last_start)
        last_start = start
        if mapped >= step:
            step = _get_new_step_size(step)
    if real_end < end_pfn:
        init_range_memory_mapping(real_end, end_pfn)
    return tables.leaves(), dict(tables.count)
