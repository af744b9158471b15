"""The direct map: all of RAM mapped at PAGE_OFFSET with 1 GiB / 2 MiB / 4 KiB leaves.

Sparse: only leaves that were split and pages whose permission differs from the default
(RW, NX: PAGE_KERNEL) are stored. Splits are counted the way arch/x86/mm/pat/set_memory.c
counts them for /proc/meminfo (split_page_count -> DirectMap4k/2M/1G).
"""

from __future__ import annotations

from collections.abc import Iterable

from permalloc.model.pages import PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE, PMDS_PER_PUD, PUD_SIZE
from permalloc.model.perms import Perm

DEFAULT = int(Perm.RW)  # PAGE_KERNEL: present, writable, NX (plain ints: hot path)
_R = int(Perm.R)
# _NP: a not-present entry (NONE) stays not present unless the change sets R (present):
# set_memory_ro/rw/x/nx and CPA alias processing never set _PAGE_PRESENT, so the RW or X
# bit they set on a not-present alias makes nothing accessible.


class DirectMap:
    """Leaf sizes and per-page permissions of the linear map of RAM."""

    def __init__(self, npages: int, gbpages: bool) -> None:
        self.npages = npages
        self.gbpages = gbpages
        self.n2m = npages // PAGES_PER_PMD
        self.n1g = self.n2m // PMDS_PER_PUD if gbpages else 0
        self.split_1g: set[int] = set()  # 1 GiB leaves broken into 2 MiB leaves
        self.split_2m: set[int] = set()  # 2 MiB leaves broken into 4 KiB leaves
        self._perm: dict[int, int] = {}  # pfn -> permission bits, only where not DEFAULT
        self._block_perm: dict[int, int] = {}  # unsplit 2 MiB leaf -> permission bits, if not DEFAULT
        self.splits_1g = 0
        self.splits_2m = 0
        self.collapses_2m = 0

    # -- leaves -------------------------------------------------------------------------
    def _in_1g_leaf(self, block: int) -> bool:
        gb = block // PMDS_PER_PUD
        return gb < self.n1g and gb not in self.split_1g

    def leaf_size(self, pfn: int) -> int:
        block = pfn // PAGES_PER_PMD
        if block >= self.n2m or block in self.split_2m:
            return PAGE_SIZE
        return PUD_SIZE if self._in_1g_leaf(block) else PMD_SIZE

    def perm(self, pfn: int) -> int:
        block = pfn // PAGES_PER_PMD
        if block in self.split_2m or block >= self.n2m:
            return self._perm.get(pfn, DEFAULT)
        return self._block_perm.get(block, DEFAULT)

    def is_split(self, pfn: int) -> bool:
        return pfn // PAGES_PER_PMD in self.split_2m

    def _split_1g(self, block: int) -> int:
        gb = block // PMDS_PER_PUD
        if gb < self.n1g and gb not in self.split_1g:
            self.split_1g.add(gb)
            self.splits_1g += 1
            return 1
        return 0

    def _split_2m(self, block: int) -> int:
        if block >= self.n2m or block in self.split_2m:
            return 0
        self.split_2m.add(block)
        self.splits_2m += 1
        perm = self._block_perm.pop(block, DEFAULT)
        if perm != DEFAULT:
            base = block * PAGES_PER_PMD
            for pfn in range(base, base + PAGES_PER_PMD):
                self._perm[pfn] = perm
        return 1

    # -- changes --------------------------------------------------------------------------
    def change(self, pfns: Iterable[int], set_mask: Perm, clear_mask: Perm) -> tuple[list[int], int, int]:
        """Apply ``(perm | set) & ~clear`` to pages; split leaves as __change_page_attr does.

        A large leaf is kept when the request covers all of it with one resulting permission
        (try_preserve_large_page); otherwise it is split. Returns the PFNs whose permission
        changed and the number of 1 GiB and 2 MiB splits made.
        """
        set_mask, clear_mask = int(set_mask), int(clear_mask)
        by_block: dict[int, list[int]] = {}
        for pfn in pfns:
            by_block.setdefault(pfn // PAGES_PER_PMD, []).append(pfn)
        changed: list[int] = []
        s1g = s2m = 0
        for block, members in by_block.items():
            if block >= self.n2m or block in self.split_2m:
                changed.extend(self._change_pages(members, set_mask, clear_mask))
                continue
            old = self._block_perm.get(block, DEFAULT)
            new = (old | set_mask) & ~clear_mask if old or set_mask & _R else old  # see _NP
            if new == old:
                continue  # should_split_large_page: nothing to change, no split
            s1g += self._split_1g(block)
            if len(set(members)) == PAGES_PER_PMD:
                # try_preserve_large_page: the whole 2 MiB leaf changes alike; keep it.
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
        if first != DEFAULT:
            self._block_perm[block] = first
        self.collapses_2m += 1
        return True

    # -- /proc/meminfo --------------------------------------------------------------------
    def meminfo(self) -> dict[str, int]:
        """DirectMap4k / DirectMap2M / DirectMap1G in bytes (arch_report_meminfo)."""
        tail_4k = (self.npages - self.n2m * PAGES_PER_PMD) * PAGE_SIZE
        bytes_1g = (self.n1g - len(self.split_1g)) * PUD_SIZE
        leaves_2m = self.n2m - (self.n1g - len(self.split_1g)) * PMDS_PER_PUD - len(self.split_2m)
        return {
            "directmap_4k_bytes": len(self.split_2m) * PMD_SIZE + tail_4k,
            "directmap_2m_bytes": leaves_2m * PMD_SIZE,
            "directmap_1g_bytes": bytes_1g,
        }

    def nondefault_pages(self) -> int:
        """Pages whose permission is not the default (a leak check at teardown)."""
        return len(self._perm) + PAGES_PER_PMD * len(self._block_perm)
