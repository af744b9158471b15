"""RFC optimisation 4: allocations of one permission packed into 2 MiB-mapped regions.

The cover letter: "4. 2MB module space mappings. It would be nice if the virtual mappings of
the same permission types could be placed next to each other so that they could share 2MB
mappings. [...] Often a bunch of modules are loaded at boot. If we placed the long lived
"core sections" of these modules sequentially into the 2MB blocks, there is probably a good
chance we could get some decent utilization out of one."

Assumptions (modelled on bpf_prog_pack, kernel/bpf/core.c 6.1 l.888-1030, the kernel's own
packing of same-permission allocations):
* A region is 2 MiB of VA, 2 MiB-aligned, in the requested range (module or vmalloc), backed
  by one order-9 block and mapped at the final permission with one PMD leaf
  (vmap_pages_range with PMD_SHIFT: x86 arch_vmap_pmd_supported = PSE). It is counted in
  the ``huge_mappings`` gauge while its leaf is intact.
* Its pages: for R/RX a whole block of the block cache when optimisation 1 is on, else a
  block from the page allocator filled with int3 through the direct map (alloc_new_pack's
  bpf_fill_ill_insns, l.901) and taken out of the direct map in bulk with one flush
  (dmalias.unmap). RW regions keep their direct map (it is data).
* Slots are whole pages, first fit. A slot is live at its final permission from ``alloc``:
  its content goes through a staging buffer and text_poke_copy whatever ``text_loading``
  says, since a leaf shared with live neighbours cannot be made writable for one of them
  without splitting it (set_memory.c:__should_split_large_page splits any partial change).
  RW slots are written in place.
* A freed RX slot is filled with int3 by text_poke_set (bpf_prog_pack_free ->
  bpf_arch_text_invalidate, l.1018); a slot whose permission was changed is set back to the
  region's first (that set_memory_* has split the leaf). An empty region is released
  (bpf_prog_pack_free frees an empty pack, l.1025-1028) unless optimisation 3 keeps live
  mappings; then it waits for the shrinker or teardown.
* Requests larger than 2 MiB are not packed.
* With ``huge_pack_by_lifetime`` the packs are kept per (permission, lifetime) instead of per
  permission: the caller's ``lifetime`` hint (``long``: module core sections; ``short``: init
  sections, BPF JIT images; ``unknown``) picks the group, so a short-lived allocation never
  shares a leaf with a long-lived one and the packs of short-lived ones can empty and be
  released. (The cover letter's idea of packing the long lived core sections together; its
  grouping by lifetime is an assumption of this model.) Without it every region's group is
  None and all lifetimes share.
"""

from __future__ import annotations

from permalloc import Machine, Perm
from permalloc.mechanisms.vmalloc import VmArea
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD

from . import dmalias
from .blockcache import BlockCache

_ALL = (1 << PAGES_PER_PMD) - 1


class Region:
    def __init__(self, range_name: str, perm: Perm, area: VmArea, block: int, source: str,
                 lifetime: str | None = None) -> None:
        self.range_name = range_name
        self.perm = perm
        self.lifetime = lifetime  # the lifetime group with huge_pack_by_lifetime, else None (all share)
        self.area = area
        self.block = block
        self.source = source  # "cache" (block cache) or "buddy"
        self.used = 0  # bitmask of pages in use

    @property
    def empty(self) -> bool:
        return not self.used

    def find(self, npages: int) -> int | None:
        """The first of ``npages`` free slots in a row (first fit), or None."""
        run = ~self.used & _ALL  # bit i: slots i .. i+width-1 are all free
        width = 1
        while width < npages and run:
            step = min(width, npages - width)
            run &= run >> step
            width += step
        return (run & -run).bit_length() - 1 if run else None

    def mark(self, first: int, npages: int, used: bool) -> None:
        bits = ((1 << npages) - 1) << first
        self.used = self.used | bits if used else self.used & ~bits


def set_back(machine: Machine, addr: int, npages: int, current: Perm, target: Perm) -> None:
    """set_memory_* from ``current`` to ``target``, dropping rights before granting any."""
    calls = []
    if current & Perm.X and not target & Perm.X:
        calls.append("set_memory_nx")
    if current & Perm.W and not target & Perm.W:
        calls.append("set_memory_ro")
    if target & Perm.W and not current & Perm.W:
        calls.append("set_memory_rw")
    if target & Perm.X and not current & Perm.X:
        calls.append("set_memory_x")
    for name in calls:
        machine.perm.set_memory(name, addr, npages)


class HugePacks:
    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.regions: list[Region] = []
        self.created = 0
        self.released = 0

    def alloc(self, perm: Perm, range_name: str, npages: int, blocks: BlockCache | None,
              lifetime: str | None = None) -> tuple[Region, int] | None:
        """A slot of ``npages`` in a region of ``perm`` (and of the ``lifetime`` group: None
        unless packing by lifetime); None to fall back to 4 KiB mappings."""
        if npages > PAGES_PER_PMD:
            return None
        for region in self.regions:
            if region.perm == perm and region.range_name == range_name and region.lifetime == lifetime:
                first = region.find(npages)
                if first is not None:
                    region.mark(first, npages, True)
                    return region, first
        region = self._new_region(perm, range_name, blocks, lifetime)
        if region is None:
            return None
        region.mark(0, npages, True)
        return region, 0

    def _new_region(self, perm: Perm, range_name: str, blocks: BlockCache | None,
                    lifetime: str | None = None) -> Region | None:
        m = self.m
        source = "perm_alloc/pack"
        if blocks is not None and not perm & Perm.W:
            block = blocks.take_block(perm, source)
            origin = "cache"
        else:
            block = m.alloc_block(source=source)
            origin = "buddy"
        if block is None:
            return None  # like __vmalloc_node_range: fall back to order-0 pages, 4 KiB PTEs
        pfns = list(range(block, block + PAGES_PER_PMD))
        if origin == "buddy" and not perm & Perm.W:
            if perm & Perm.X:
                m.emit(ev.NOTE, 1, source=f"{source}/int3_fill_via_directmap")
            dmalias.unmap(m, pfns, source)
        area = m.vmalloc.vmap(pfns, range_name, perm, huge=True, source=source)
        region = Region(range_name, perm, area, block, origin, lifetime)
        self.regions.append(region)
        self.created += 1
        return region

    def slot_addr(self, region: Region, first: int) -> int:
        return region.area.addr + (first << PAGE_SHIFT)

    def free(self, region: Region, first: int, npages: int, loaded: bool, keep_empty: bool,
             blocks: BlockCache | None) -> None:
        m = self.m
        addr = self.slot_addr(region, first)
        mapping = region.area.mapping
        assert mapping is not None
        current = Perm(mapping.perms[first])
        if current != region.perm:
            set_back(m, addr, npages, current, region.perm)
        if loaded and region.perm & Perm.X:
            # bpf_prog_pack_free -> bpf_arch_text_invalidate -> text_poke_set(0xcc)
            m.text.copy(addr, npages * PAGE_SIZE, source="pack_free/text_poke_set")
        region.mark(first, npages, False)
        if region.empty and not keep_empty:
            self.release(region, blocks)

    def release(self, region: Region, blocks: BlockCache | None) -> None:
        """Unmap an empty region (lazily) and give its block back."""
        m = self.m
        mapping = region.area.mapping
        assert mapping is not None
        stale = 0
        for perm in set(mapping.perms):
            stale |= perm
        self.regions.remove(region)
        self.released += 1
        m.vmalloc.vunmap(region.area, source="pack_release/vunmap")
        if region.source == "cache":
            assert blocks is not None
            blocks.give_back_block(region.block, stale)
            return
        pfns = list(range(region.block, region.block + PAGES_PER_PMD))
        if not region.perm & Perm.W:
            dmalias.release(m, pfns, "pack_release")  # stale aliases flushed once, NP -> RW
        m.free_block(region.block, source="pack_release")

    def release_empty(self, blocks: BlockCache | None) -> int:
        empty = [r for r in self.regions if r.empty]
        freed = sum(PAGES_PER_PMD for r in empty if r.source == "buddy")
        for region in empty:
            self.release(region, blocks)
        return freed  # pages given back to the page allocator
