"""RFC optimisation 1: pages drawn from 2 MiB blocks unmapped from the direct map in bulk.

The cover letter: "1. Draw from 2MB physical pages that can be unmapped from the direct map
in contiguous chunks. In memory pressure situations a shrinker callback can free unused
pages from the cache. These can get re-mapped on the fly without any flush since the direct
map would be transitioning NP->RW. Since we can re-map the direct map cheaply, it's better
to unmap more than we need."

The RFC's arch/x86/mm/vmalloc.c is not in the Debian trees, so this module models the text
above with the kernel's own primitives. Assumptions:

* Refill: one order-9 block per missing 512 pages (alloc_pages(order 9)), filled with int3
  through its still-writable direct-map alias (as alloc_new_pack fills a BPF pack before it
  goes RO+X, kernel/bpf/core.c 6.1 l.901), then taken out of the direct map in bulk
  (set_memory.c:__set_pages_np(page, 512): the 2 MiB leaf is kept; a 1 GiB leaf around it
  is split 1G->2M, and that split flushes everything as every split does) and ONE flush,
  _vm_unmap_aliases(dm_start, dm_end, 1) ("one range flush plus vm_unmap_aliases per
  refill": a 2 MiB range is 512 pages > 33, so flush_tlb_kernel_range makes it a full flush).
* Order-0 fallback when no free block exists: alloc_page() per missing page, each taken out
  with set_direct_map_invalid_noflush (which splits the leaves around it, as CPA does), and
  the same single flush.
* Free: the vmalloc alias is unmapped lazily (no flush) and the page comes back here with
  the permissions of its stale translations. It is handed out again without any flush unless
  those conflict with the new mapping (stale X under a writable mapping, stale W under an
  executable one); then vm_unmap_aliases() runs first, which purges - and flushes - every
  lazily freed area at once, after which no page here has a stale alias.
* Shrinker (the ``pressure`` op): whole free blocks and free fallback pages go back to the
  page allocator. The RFC's "without any flush" holds for the direct map (NP->RW); the one
  flush it may cost is a vm_unmap_aliases() for stale vmalloc-alias TLB entries of cached
  pages, which must be gone before the buddy allocator hands the pages to anyone else. It
  runs only when one of the pages given back still has such an alias, and is then one
  flush for the whole shrink.
"""

from __future__ import annotations

from permalloc import Machine, Perm
from permalloc.model import events as ev
from permalloc.model.pages import PAGES_PER_PMD

from . import dmalias

_FULL = (1 << PAGES_PER_PMD) - 1


def conflicts(stale: int, perm: Perm) -> bool:
    """A stale translation that breaks W^X next to a new mapping with ``perm``."""
    return bool((stale & Perm.X and perm & Perm.W) or (stale & Perm.W and perm & Perm.X))


class BlockCache:
    """Pages whose direct-map alias is not present, grouped by 2 MiB block."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.blocks: dict[int, int] = {}  # first pfn of a block -> bitmask of pages free here
        self.singles: set[int] = set()  # free order-0 fallback pages
        self.singles_out: set[int] = set()  # fallback pages handed out
        self.stale: dict[int, int] = {}  # pfn -> permissions of its stale vmalloc translations
        self.refills = 0
        self.fallback_pages = 0

    # -- accounting -------------------------------------------------------------------------
    @property
    def free_pages(self) -> int:
        return sum(mask.bit_count() for mask in self.blocks.values()) + len(self.singles)

    @property
    def held_pages(self) -> int:
        """Pages owned by the cache, handed out or not."""
        return len(self.blocks) * PAGES_PER_PMD + len(self.singles) + len(self.singles_out)

    @property
    def handed_out(self) -> int:
        return self.held_pages - self.free_pages

    # -- refill -------------------------------------------------------------------------------
    def _grow(self, npages: int, whole_blocks: bool, source: str) -> int:
        """Add at least ``npages`` pages (whole blocks only if ``whole_blocks``); one flush.

        Returns the number of pages added (0 when no memory could be had).
        """
        m = self.m
        blocks: list[int] = []
        while len(blocks) * PAGES_PER_PMD < npages:
            pfn = m.alloc_block(source=f"{source}/refill")
            if pfn is None:
                break
            blocks.append(pfn)
        singles: list[int] = []
        missing = npages - len(blocks) * PAGES_PER_PMD
        if missing > 0 and not whole_blocks:
            singles = m.alloc_pages(missing, source=f"{source}/order0_fallback")
        pfns = [b + i for b in blocks for i in range(PAGES_PER_PMD)] + singles
        if not pfns:
            return 0
        if blocks:
            # alloc_new_pack-style fill with int3 while the direct map is still writable:
            # a memset through that alias, not a text_poke (no flush, no event cost).
            m.emit(ev.NOTE, len(blocks), source=f"{source}/int3_fill_via_directmap")
        dmalias.unmap(m, pfns, source=f"{source}/refill")
        self.stale.clear()  # the flush above purged every lazily freed vmalloc area
        for b in blocks:
            self.blocks[b] = _FULL
        self.singles.update(singles)
        self.refills += 1
        self.fallback_pages += len(singles)
        return len(pfns)

    def _make_safe(self, pfns: list[int], perm: Perm, source: str) -> None:
        """vm_unmap_aliases() before reuse if a stale translation conflicts with ``perm``."""
        if any(conflicts(self.stale.get(pfn, 0), perm) for pfn in pfns):
            self.m.vmalloc.unmap_aliases(source=f"{source}/vm_unmap_aliases")
            self.stale.clear()

    # -- handing out ----------------------------------------------------------------------------
    def take(self, npages: int, perm: Perm, source: str) -> list[int]:
        """``npages`` pages (not contiguous) that may be mapped with ``perm`` right away."""
        if self.free_pages < npages:
            self._grow(npages - self.free_pages, whole_blocks=False, source=source)
        # Best fit: the fullest block that still holds the request, so that pages of
        # permissioned allocations stay grouped physically (the RFC's point).
        fits = [b for b, mask in self.blocks.items() if mask.bit_count() >= npages]
        if fits:
            order = [min(fits, key=lambda b: (self.blocks[b].bit_count(), b))]
        else:
            order = sorted(self.blocks, key=lambda b: (self.blocks[b].bit_count(), b))
        pfns: list[int] = []
        for block in order:
            mask = self.blocks[block]
            while mask and len(pfns) < npages:
                bit = (mask & -mask).bit_length() - 1
                mask &= mask - 1
                pfns.append(block + bit)
            self.blocks[block] = mask
            if len(pfns) == npages:
                break
        while len(pfns) < npages:
            pfn = min(self.singles)
            self.singles.remove(pfn)
            self.singles_out.add(pfn)
            pfns.append(pfn)
        self._make_safe(pfns, perm, source)
        return pfns

    def take_block(self, perm: Perm, source: str) -> int | None:
        """A whole free block (for a 2 MiB mapping), or None when none can be had."""
        whole = sorted(b for b, mask in self.blocks.items() if mask == _FULL)
        clean = [b for b in whole if not any(conflicts(self.stale.get(b + i, 0), perm) for i in range(PAGES_PER_PMD))]
        if clean or whole:
            block = (clean or whole)[0]
        elif self._grow(PAGES_PER_PMD, whole_blocks=True, source=source):
            block = max(b for b, mask in self.blocks.items() if mask == _FULL)
        else:
            return None
        self.blocks[block] = 0
        self._make_safe(list(range(block, block + PAGES_PER_PMD)), perm, source)
        return block

    # -- giving back ----------------------------------------------------------------------------
    def give_back(self, pfns: list[int], stale: list[int] | bytes) -> None:
        """Pages whose vmalloc alias was unmapped lazily, with the perms it had (per page)."""
        for pfn, perm in zip(pfns, stale, strict=True):
            if perm & (Perm.W | Perm.X):
                self.stale[pfn] = self.stale.get(pfn, 0) | perm
            if pfn in self.singles_out:
                self.singles_out.remove(pfn)
                self.singles.add(pfn)
                continue
            block = pfn - pfn % PAGES_PER_PMD
            self.blocks[block] |= 1 << (pfn - block)

    def give_back_block(self, block: int, stale: int) -> None:
        self.give_back(list(range(block, block + PAGES_PER_PMD)), [stale] * PAGES_PER_PMD)

    # -- shrinker ----------------------------------------------------------------------------------
    def shrink(self, max_pages: int, source: str = "shrinker") -> int:
        """scan_objects: give whole free blocks and free fallback pages back; returns pages freed."""
        m = self.m
        blocks: list[int] = []
        singles: list[int] = []
        budget = max_pages
        for block in sorted(b for b, mask in self.blocks.items() if mask == _FULL):
            if budget < PAGES_PER_PMD:
                break
            blocks.append(block)
            budget -= PAGES_PER_PMD
        for pfn in sorted(self.singles):
            if budget <= 0:
                break
            singles.append(pfn)
            budget -= 1
        pfns = [b + i for b in blocks for i in range(PAGES_PER_PMD)] + singles
        if not pfns:
            return 0
        if any(self.stale.get(pfn) for pfn in pfns):
            # The one flush: stale vmalloc aliases of cached pages, before the buddy allocator
            # may hand them to anyone. The direct map itself goes NP -> RW without a flush.
            m.vmalloc.unmap_aliases(source=f"{source}/vm_unmap_aliases")
            self.stale.clear()
        dmalias.restore(m, pfns, source)
        for block in blocks:
            del self.blocks[block]
            m.free_block(block, source)
        if singles:
            self.singles.difference_update(singles)
            m.free_pages(singles, source)
        return len(pfns)
