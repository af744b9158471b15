"""The direct map: RAM mapped at PAGE_OFFSET with 1 GiB / 2 MiB / 4 KiB leaves.

The leaves a machine boots with come from its arch (x86: init_memory_mapping, see
arches/x86/bootmap.py) as ranges of one leaf size; holes (the PCI hole, reserved firmware
areas) are not mapped. Sparse: only leaves split since boot and pages whose permission is
not the default (RW, NX: PAGE_KERNEL) are stored. The DirectMap4k/2M/1G counters follow
arch/x86/mm/pat/set_memory.c: direct_pages_count[], set by update_page_count at boot and
moved by split_page_count / collapse; :meth:`DirectMap.count_split` lets an arch count a
split of another mapping there as the kernel does (x86 counts the kernel's high mapping).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

from .pages import PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE, PMDS_PER_PUD, PUD_SIZE
from .perms import Perm

DEFAULT = int(Perm.RW)  # PAGE_KERNEL: present, writable, NX (plain ints: hot path)
_R = int(Perm.R)
# _NP: a not-present entry (NONE) stays not present unless the change sets R (present):
# set_memory_ro/rw/x/nx and CPA alias processing never set _PAGE_PRESENT, so the RW or X
# bit they set on a not-present alias makes nothing accessible.

PAGES_PER_PUD = PUD_SIZE // PAGE_SIZE
LEAF_4K, LEAF_2M, LEAF_1G = 1, PAGES_PER_PMD, PAGES_PER_PUD


def simple_leaves(ranges: Iterable[tuple[int, int]], gbpages: bool) -> list[tuple[int, int, int]]:
    """The largest aligned leaves that fit each [start_pfn, end_pfn) range (split_mem_range
    without x86's top-down chunking): 4 KiB edges, 2 MiB, and 1 GiB where allowed."""
    out: list[tuple[int, int, int]] = []
    for start, end in ranges:
        sizes = (LEAF_1G, LEAF_2M) if gbpages else (LEAF_2M,)
        _split(start, end, sizes, out)
    return sorted(out)


def _split(start: int, end: int, sizes: Sequence[int], out: list[tuple[int, int, int]]) -> None:
    if start >= end:
        return
    if not sizes:
        out.append((start, end, LEAF_4K))
        return
    size = sizes[0]
    lo, hi = -(-start // size) * size, end // size * size
    if lo >= hi:
        _split(start, end, sizes[1:], out)
        return
    _split(start, lo, sizes[1:], out)
    out.append((lo, hi, size))
    _split(hi, end, sizes[1:], out)


class DirectMap:
    """Leaf sizes and per-page permissions of the linear map of RAM."""

    def __init__(self, leaves: Sequence[tuple[int, int, int]], counts: Mapping[int, int] | None = None) -> None:
        """``leaves``: sorted, disjoint [start_pfn, end_pfn, leaf_pages) ranges as mapped at boot;
        ``counts``: the boot direct_pages_count[] by leaf size (default: the leaves counted once)."""
        self._starts = [start for start, _, _ in leaves]
        self._leaves = list(leaves)
        self.mapped_pages = sum(end - start for start, end, _ in leaves)
        self.count = {LEAF_4K: 0, LEAF_2M: 0, LEAF_1G: 0}  # direct_pages_count[], in leaves
        if counts is None:
            for start, end, leaf in leaves:
                self.count[leaf] += (end - start) // leaf
        else:
            self.count.update(counts)
        self.split_1g: set[int] = set()  # 1 GiB leaves broken into 2 MiB leaves (by GiB index)
        self.split_2m: set[int] = set()  # 2 MiB leaves broken into 4 KiB leaves (by 2 MiB index)
        self._perm: dict[int, int] = {}  # pfn -> permission bits, only where not DEFAULT
        self._block_perm: dict[int, int] = {}  # unsplit 2 MiB leaf -> permission bits, if not DEFAULT
        self.splits_1g = 0
        self.splits_2m = 0
        self.collapses_2m = 0

    # -- leaves -------------------------------------------------------------------------
    def boot_leaf(self, pfn: int) -> int:
        """The leaf size (in pages) ``pfn`` was mapped with at boot; 0 if it is not mapped."""
        i = bisect.bisect_right(self._starts, pfn) - 1
        if i < 0:
            return 0
        start, end, leaf = self._leaves[i]
        return leaf if pfn < end else 0

    def is_mapped(self, pfn: int) -> bool:
        return self.boot_leaf(pfn) != 0

    def _large(self, block: int) -> int:
        """The leaf holding 2 MiB block ``block`` now: LEAF_1G, LEAF_2M or LEAF_4K."""
        leaf = self.boot_leaf(block * PAGES_PER_PMD)
        if leaf <= LEAF_4K or block in self.split_2m:
            return LEAF_4K
        if leaf == LEAF_1G and block // PMDS_PER_PUD not in self.split_1g:
            return LEAF_1G
        return LEAF_2M

    def leaf_size(self, pfn: int) -> int:
        """Bytes covered by the leaf that maps ``pfn``."""
        return self._large(pfn // PAGES_PER_PMD) * PAGE_SIZE

    def perm(self, pfn: int) -> int:
        block = pfn // PAGES_PER_PMD
        if pfn not in self._perm and block not in self._block_perm:
            return DEFAULT  # the common case, whatever the leaf: no need to look it up
        if self._large(block) == LEAF_4K:
            return self._perm.get(pfn, DEFAULT)
        return self._block_perm.get(block, DEFAULT)

    def is_split(self, pfn: int) -> bool:
        return pfn // PAGES_PER_PMD in self.split_2m

    def count_split(self, leaf: int) -> None:
        """split_page_count(level): one ``leaf`` (LEAF_2M or LEAF_1G) became 512 smaller ones."""
        smaller = LEAF_4K if leaf == LEAF_2M else LEAF_2M
        if self.count[leaf] == 0:  # "if (direct_pages_count[level] == 0) return;"
            return
        self.count[leaf] -= 1
        self.count[smaller] += 512
        if leaf == LEAF_2M:
            self.splits_2m += 1
        else:
            self.splits_1g += 1

    def _split_1g(self, block: int) -> int:
        gb = block // PMDS_PER_PUD
        if self.boot_leaf(block * PAGES_PER_PMD) == LEAF_1G and gb not in self.split_1g:
            self.split_1g.add(gb)
            self.count_split(LEAF_1G)
            return 1
        return 0

    def _split_2m(self, block: int) -> int:
        if self._large(block) == LEAF_4K:
            return 0
        self.split_2m.add(block)
        self.count_split(LEAF_2M)
        perm = self._block_perm.pop(block, DEFAULT)
        if perm != DEFAULT:
            base = block * PAGES_PER_PMD
            for pfn in range(base, base + PAGES_PER_PMD):
                self._perm[pfn] = perm
        return 1

    # -- changes --------------------------------------------------------------------------
    def change(self, pfns: Iterable[int], set_mask: Perm, clear_mask: Perm) -> tuple[list[int], int, int]:
        """Apply ``(perm | set) & ~clear`` to pages; split leaves as __change_page_attr does.

        A large leaf is kept when the request leaves its permission as it is, or covers all
        of it with one resulting permission (__should_split_large_page); otherwise it is
        split (a 1 GiB leaf 1G -> 2M, then the 2 MiB one). Returns the PFNs whose permission
        changed and the number of 1 GiB and 2 MiB splits made.
        """
        set_mask, clear_mask = int(set_mask), int(clear_mask)
        by_block: dict[int, list[int]] = {}
        for pfn in pfns:
            by_block.setdefault(pfn // PAGES_PER_PMD, []).append(pfn)
        changed: list[int] = []
        s1g = s2m = 0
        for block, members in by_block.items():
            if self._large(block) == LEAF_4K:
                changed.extend(self._change_pages(members, set_mask, clear_mask))
                continue
            old = self._block_perm.get(block, DEFAULT)
            new = (old | set_mask) & ~clear_mask if old or set_mask & _R else old  # see _NP
            if new == old:
                continue  # "the large page can be preserved and no updates are required"
            s1g += self._split_1g(block)
            if len(set(members)) == PAGES_PER_PMD:
                # the request covers the whole 2 MiB leaf with one result: keep it
                if new == DEFAULT:
                    self._block_perm.pop(block, None)
                else:
                    self._block_perm[block] = new
                changed.extend(members)
                continue
            s2m += self._split_2m(block)
            changed.extend(self._change_pages(members, set_mask, clear_mask))
        return changed, s1g, s2m

    def _change_pages(self, pfns: list[int], set_mask: int, clear_mask: int) -> list[int]:
        changed = []
        for pfn in pfns:
            old = self._perm.get(pfn, DEFAULT)
            new = (old | set_mask) & ~clear_mask if old or set_mask & _R else old  # see _NP
            if new != old:
                if new == DEFAULT:
                    del self._perm[pfn]
                else:
                    self._perm[pfn] = new
                changed.append(pfn)
        return changed

    def try_collapse(self, block: int) -> bool:
        """Merge a split 2 MiB range back into one leaf when all 512 entries agree.

        Models collapse_pmd_page (arch/x86/mm/pat/set_memory.c, after 6.12). Note that
        set_memory_rox's CPA_COLLAPSE walks only the primary range (cpa_collapse_large_pages
        from cpa_flush); the direct-map alias of module memory is never collapsed by it, so
        no modelled path calls this (docs/kernel-notes/rox-cache.md).
        """
        if block not in self.split_2m:
            return False
        base = block * PAGES_PER_PMD
        first = self._perm.get(base, DEFAULT)
        if any(self._perm.get(pfn, DEFAULT) != first for pfn in range(base + 1, base + PAGES_PER_PMD)):
            return False
        for pfn in range(base, base + PAGES_PER_PMD):
            self._perm.pop(pfn, None)
        self.split_2m.discard(block)
        self.count[LEAF_2M] += 1
        self.count[LEAF_4K] -= PAGES_PER_PMD
        if first != DEFAULT:
            self._block_perm[block] = first
        self.collapses_2m += 1
        return True

    # -- /proc/meminfo --------------------------------------------------------------------
    def meminfo(self) -> dict[str, int]:
        """DirectMap4k / DirectMap2M / DirectMap1G in bytes (arch_report_meminfo)."""
        return {
            "directmap_4k_bytes": self.count[LEAF_4K] * PAGE_SIZE,
            "directmap_2m_bytes": self.count[LEAF_2M] * PMD_SIZE,
            "directmap_1g_bytes": self.count[LEAF_1G] * PUD_SIZE,
        }

    def nondefault_pages(self) -> int:
        """Pages whose permission is not the default (a leak check at teardown)."""
        return len(self._perm) + PAGES_PER_PMD * len(self._block_perm)


class LinearAlias:
    """Another linear mapping of a range of RAM (x86: the kernel's high mapping of its own
    image, arch/x86/mm/pat/set_memory.c: cpa_process_alias), with leaves and permissions
    like the direct map's. ``counted``: its splits move the DirectMap counters, as x86's
    split_page_count does for every address virt_addr_valid accepts."""

    def __init__(self, name: str, first_pfn: int, npages: int, base: int, leaves: Sequence[tuple[int, int, int]],
                 counted: bool) -> None:
        self.name = name
        self.first_pfn = first_pfn
        self.npages = npages
        self.base = base
        self.map = DirectMap(leaves)
        self.counted = counted

    def covers(self, pfn: int) -> bool:
        return self.first_pfn <= pfn < self.first_pfn + self.npages

    def addr(self, pfn: int) -> int:
        return self.base + ((pfn - self.first_pfn) << 12)

    def pfn(self, addr: int) -> int:
        return self.first_pfn + ((addr - self.base) >> 12)
