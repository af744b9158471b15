"""Kernel page tables for module and vmalloc space: 4 KiB and 2 MiB leaves with permissions.

A :class:`Mapping` is one contiguous run of PTEs created by one vmap (one vm_struct). The
reverse map (PFN -> mapping) lets the W^X checker find every alias of a physical page.
"""

from __future__ import annotations

import bisect

from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD
from permalloc.model.perms import Perm


class Mapping:
    """PTEs of one vmap: ``pfns[i]`` mapped at ``start + i * PAGE_SIZE`` with ``perms[i]``."""

    __slots__ = ("start", "pfns", "perms", "huge_chunks", "owner")

    def __init__(self, start: int, pfns: list[int], perm: Perm, huge: bool, owner: str) -> None:
        self.start = start
        self.pfns = pfns
        self.perms = bytearray([int(perm)]) * len(pfns)
        # Indices of 2 MiB chunks still mapped by one PMD leaf.
        self.huge_chunks: set[int] = set(range(len(pfns) // PAGES_PER_PMD)) if huge else set()
        self.owner = owner

    @property
    def npages(self) -> int:
        return len(self.pfns)

    @property
    def end(self) -> int:
        return self.start + len(self.pfns) * PAGE_SIZE

    def perm(self, index: int) -> Perm:
        return Perm(self.perms[index])


class KernelPageTables:
    """All live vmaps, by address and by physical page."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._maps: dict[int, Mapping] = {}
        self.rmap: dict[int, tuple[Mapping, int]] = {}  # pfn -> (mapping, page index)
        self.huge_leaves = 0

    def map(self, start: int, pfns: list[int], perm: Perm, huge: bool = False, owner: str = "") -> Mapping:
        if start in self._maps:
            raise ValueError(f"address {start:#x} is already mapped")
        mapping = Mapping(start, pfns, perm, huge, owner)
        bisect.insort(self._starts, start)
        self._maps[start] = mapping
        rmap = self.rmap
        for i, pfn in enumerate(pfns):
            if pfn in rmap:
                raise ValueError(f"pfn {pfn:#x} already has a vmalloc alias at {rmap[pfn][0].start:#x}")
            rmap[pfn] = (mapping, i)
        self.huge_leaves += len(mapping.huge_chunks)
        return mapping

    def unmap(self, mapping: Mapping) -> None:
        del self._maps[mapping.start]
        del self._starts[bisect.bisect_left(self._starts, mapping.start)]
        rmap = self.rmap
        for pfn in mapping.pfns:
            del rmap[pfn]
        self.huge_leaves -= len(mapping.huge_chunks)
        mapping.huge_chunks = set()

    def lookup(self, addr: int) -> tuple[Mapping, int] | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        mapping = self._maps[self._starts[i]]
        if addr >= mapping.end:
            return None
        return mapping, (addr - mapping.start) >> PAGE_SHIFT

    def pages(self, start: int, end: int) -> list[tuple[int | None, int]]:
        """``(pfn, perm bits)`` of every virtual page of [start, end) as mapped now, ``(None, 0)``
        for a page nothing maps: one lookup per mapping crossed, not per page."""
        out: list[tuple[int | None, int]] = []
        va = start & ~(PAGE_SIZE - 1)
        while va < end:
            found = self.lookup(va)
            if found is None:
                out.append((None, 0))
                va += PAGE_SIZE
                continue
            mapping, i = found
            n = min(mapping.npages - i, (end - va + PAGE_SIZE - 1) >> PAGE_SHIFT)
            out.extend(zip(mapping.pfns[i : i + n], mapping.perms[i : i + n]))
            va += n << PAGE_SHIFT
        return out

    def change(self, mapping: Mapping, first: int, count: int, set_mask: Perm, clear_mask: Perm) -> tuple[list[int], int]:
        """Change PTE permissions; returns the changed page indices and 2 MiB leaves split.

        A 2 MiB leaf that is only partly covered, or that would end up with mixed
        permissions, is split first (as __change_page_attr does for any large leaf).
        """
        perms = mapping.perms
        changed = []
        s, c = int(set_mask), int(clear_mask)
        for i in range(first, first + count):
            old = perms[i]
            new = (old | s) & ~c
            if new != old:
                perms[i] = new
                changed.append(i)
        splits = 0
        if changed and mapping.huge_chunks:
            for chunk in {i // PAGES_PER_PMD for i in changed}:
                base = chunk * PAGES_PER_PMD
                if chunk in mapping.huge_chunks and len(set(perms[base : base + PAGES_PER_PMD])) > 1:
                    mapping.huge_chunks.discard(chunk)
                    self.huge_leaves -= 1
                    splits += 1
        return changed, splits

    def collapse(self, mapping: Mapping, first: int, count: int) -> list[int]:
        """Collapse the 2 MiB chunks overlapping pages [first, first+count) back into PMD leaves.

        Models set_memory.c:collapse_pmd_page (reached from cpa_collapse_large_pages): a chunk
        becomes one leaf when its 512 PTEs are present with one permission and map 512
        contiguous PFNs starting at a 2 MiB-aligned one. Only chunks of a PMD-aligned mapping
        are considered: a guard page ends every vmap, so a collapsible PMD lies inside one
        mapping, and only VM_ALLOW_HUGE_VMAP areas are PMD-aligned by construction. Returns
        the chunk indices collapsed.
        """
        if count <= 0 or mapping.start % (PAGES_PER_PMD * PAGE_SIZE):
            return []
        perms, pfns = mapping.perms, mapping.pfns
        collapsed = []
        last = min(first + count, mapping.npages) - 1
        for chunk in range(first // PAGES_PER_PMD, last // PAGES_PER_PMD + 1):
            base = chunk * PAGES_PER_PMD
            if chunk in mapping.huge_chunks or base + PAGES_PER_PMD > mapping.npages:
                continue
            head = pfns[base]
            if head % PAGES_PER_PMD or perms.count(perms[base], base, base + PAGES_PER_PMD) != PAGES_PER_PMD:
                continue
            if pfns[base : base + PAGES_PER_PMD] != list(range(head, head + PAGES_PER_PMD)):
                continue
            mapping.huge_chunks.add(chunk)
            self.huge_leaves += 1
            collapsed.append(chunk)
        return collapsed

    def __iter__(self):
        return iter(self._maps.values())

    def __len__(self) -> int:
        return len(self._maps)
