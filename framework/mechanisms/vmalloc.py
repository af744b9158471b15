"""mm/vmalloc.c: vmalloc, vfree, lazy vunmap purging and vm_unmap_aliases.

Areas are unmapped at once when freed but their virtual range stays reserved, and their
translations stay in the TLBs, until the lazy purge (``__purge_vmap_area_lazy``) flushes
the union of all lazily freed ranges in one go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from permalloc.errors import OutOfMemory
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE, align_up
from permalloc.model.perms import Perm

if TYPE_CHECKING:
    from permalloc.machine import Machine
    from permalloc.model.pagetable import Mapping

POINTER_SIZE = 8  # sizeof(struct page *) on 64-bit
_LAZY_BYTES = 32 << 20  # mm/vmalloc.c: lazy_max_pages(): 32 MiB of pages per log2(cpus)


def lazy_max_pages(cpus: int) -> int:
    """mm/vmalloc.c: lazy_max_pages = fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)."""
    return cpus.bit_length() * (_LAZY_BYTES >> PAGE_SHIFT)


class VmArea:
    """A vm_struct with its vmap_area: one vmalloc'ed block."""

    __slots__ = ("addr", "size", "va_size", "range_name", "mapping", "pages", "blocks", "reset_perms", "page_array")

    def __init__(self, addr: int, size: int, va_size: int, range_name: str) -> None:
        self.addr = addr
        self.size = size  # bytes mapped (page or 2 MiB rounded), without the guard page
        self.va_size = va_size  # bytes of address space reserved, guard page included
        self.range_name = range_name
        self.mapping: Mapping | None = None
        self.pages: list[int] = []  # pfns of order-0 pages we own
        self.blocks: list[int] = []  # first pfns of order-9 blocks we own
        self.reset_perms = False
        self.page_array: VmArea | None = None  # area->pages when it needs more than a page

    @property
    def pfns(self) -> list[int]:
        assert self.mapping is not None
        return self.mapping.pfns

    @property
    def npages(self) -> int:
        return self.size >> PAGE_SHIFT


class Vmalloc:
    """The vmalloc allocator of one machine."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.lazy_max = lazy_max_pages(machine.spec.cpus)
        self.lazy_nr = 0
        self._purge_list: list[tuple[str, int, int]] = []  # (range, va start, va end)
        self.areas: dict[int, VmArea] = {}

    # -- address space ----------------------------------------------------------------------
    def _get_vm_area(self, size: int, range_name: str, align: int, guard: bool) -> VmArea:
        """__get_vm_area_node: reserve size (+ one guard page unless VM_NO_GUARD)."""
        va_size = size + (PAGE_SIZE if guard else 0)
        space = self.m.spaces[range_name]
        try:
            addr = space.alloc(va_size, align)
        except OutOfMemory:
            # alloc_vmap_area: on failure, purge lazily freed areas once and retry
            if not self.purge(source="alloc_vmap_area"):
                raise
            addr = space.alloc(va_size, align)
        area = VmArea(addr, size, va_size, range_name)
        self.areas[addr] = area
        return area

    # -- allocation -----------------------------------------------------------------------
    def vmalloc(
        self,
        size: int,
        range_name: str,
        perm: Perm = Perm.RW,
        align: int = PAGE_SIZE,
        reset_perms: bool = True,
        huge: bool = False,
        source: str = "vmalloc",
    ) -> VmArea:
        """__vmalloc_node_range: reserve, allocate pages, map them with ``perm``.

        ``huge`` asks for 2 MiB leaves (VM_ALLOW_HUGE_VMAP): the size is rounded to 2 MiB and
        pages come from order-9 blocks, falling back to order-0 pages as the kernel does
        when a block cannot be had.
        """
        if huge and self.m.arch.huge_vmap:
            size = align_up(size, PMD_SIZE)
            blocks: list[int] = []
            for _ in range(size // PMD_SIZE):
                pfn = self.m.alloc_block(source)
                if pfn is None:
                    for got in blocks:
                        self.m.free_block(got, source)
                    blocks = []
                    break
                blocks.append(pfn)
            if blocks:
                area = self._get_vm_area(size, range_name, max(align, PMD_SIZE), guard=True)
                area.blocks = blocks
                pfns = [b + i for b in blocks for i in range(PAGES_PER_PMD)]
                area.mapping = self.m.map(area.addr, pfns, perm, huge=True, source=source)
                area.reset_perms = reset_perms
                return area
        size = align_up(size, PAGE_SIZE)
        area = self._get_vm_area(size, range_name, align, guard=True)
        # __vmalloc_area_node: the page array (one pointer per page) is itself vmalloc'ed when
        # it needs more than a page ("if (array_size > PAGE_SIZE) area->pages = __vmalloc_node"),
        # before the pages; a smaller one comes from kmalloc (slab, not modelled)
        if (size >> PAGE_SHIFT) * POINTER_SIZE > PAGE_SIZE:
            area.page_array = self.vmalloc((size >> PAGE_SHIFT) * POINTER_SIZE, "vmalloc", Perm.RW,
                                           reset_perms=False, source=f"{source}/page_array")
        area.pages = self.m.alloc_pages(size >> PAGE_SHIFT, source)
        area.mapping = self.m.map(area.addr, area.pages, perm, source=source)
        area.reset_perms = reset_perms
        return area

    def vmap(self, pfns: list[int], range_name: str, perm: Perm, huge: bool = False,
             align: int = PAGE_SIZE, source: str = "vmap") -> VmArea:
        """vmap(): map pages the caller owns (they are not freed with the area)."""
        size = len(pfns) << PAGE_SHIFT
        area = self._get_vm_area(size, range_name, max(align, PMD_SIZE) if huge else align, guard=True)
        area.mapping = self.m.map(area.addr, pfns, perm, huge=huge, source=source)
        return area

    # -- freeing --------------------------------------------------------------------------
    def vfree(self, area: VmArea, source: str = "vfree") -> None:
        """vfree -> __vunmap/vm_remove_mappings: unmap lazily, reset perms, free the pages."""
        m = self.m
        assert area.mapping is not None
        pfns = area.mapping.pfns
        # remove_vm_area -> free_unmap_vmap_area: vunmap_range_noflush, then the va goes
        # on the lazy purge list (free_vmap_area_noflush).
        m.unmap(area.mapping, source=f"{source}/vunmap")
        self._lazy_free(area)
        if area.reset_perms:
            self._reset_perms(area, pfns, source)
        if area.blocks:
            for block in area.blocks:
                m.free_block(block, source)
        elif area.pages:
            m.free_pages(area.pages, source)
        if area.page_array is not None:  # __vunmap: kvfree(area->pages) after the pages
            self.vfree(area.page_array, source=f"{source}/page_array")
        if self.lazy_nr > self.lazy_max:
            # free_vmap_area_noflush schedules drain_vmap_work; modelled as purging now.
            self.purge(source="drain_vmap_area_work")

    def vunmap(self, area: VmArea, source: str = "vunmap") -> None:
        """vunmap(): remove a vmap() of caller-owned pages; the pages stay with the caller."""
        assert area.mapping is not None
        self.m.unmap(area.mapping, source=source)
        self._lazy_free(area)
        if self.lazy_nr > self.lazy_max:
            self.purge(source="drain_vmap_area_work")

    def _lazy_free(self, area: VmArea) -> None:
        del self.areas[area.addr]
        self._purge_list.append((area.range_name, area.addr, area.addr + area.va_size))
        self.lazy_nr += area.va_size >> PAGE_SHIFT

    def _reset_perms(self, area: VmArea, pfns: list[int], source: str) -> None:
        """VM_FLUSH_RESET_PERMS (mm/vmalloc.c: vm_remove_mappings in 6.1, vm_reset_perms later).

        Direct map to not-present, one flush that covers the vmalloc alias and the direct
        map (through _vm_unmap_aliases with flush_dmap), then the direct map back to default.
        Where the arch cannot set the direct map, only the flush is left.
        """
        m = self.m
        start = min(m.directmap_addr(pfn) for pfn in pfns)
        end = max(m.directmap_addr(pfn) for pfn in pfns) + PAGE_SIZE
        if not m.mechanisms.can_set_direct_map:
            self.unmap_aliases(start, end, flush=True, source=f"{source}/vm_reset_perms")
            return
        with m.atomic("vm_reset_perms"):
            m.change_directmap(pfns, Perm.NONE, Perm.RWX, source="set_direct_map_invalid_noflush")
            self.unmap_aliases(start, end, flush=True, source=f"{source}/vm_reset_perms")
            m.change_directmap(pfns, Perm.RW, Perm.X, source="set_direct_map_default_noflush")

    # -- purging --------------------------------------------------------------------------
    def unmap_aliases(self, start: int | None = None, end: int | None = None, flush: bool = False,
                      source: str = "vm_unmap_aliases") -> bool:
        """_vm_unmap_aliases: purge lazy areas (one flush over everything), else flush [start, end)
        only if ``flush``. Returns whether a flush happened. (Dirty vmap blocks of vm_map_ram
        are not modelled: no modelled user maps through them.)"""
        if self.purge(start, end, source):
            return True
        if flush and start is not None and end is not None:
            self.m.flush_kernel_range(start, end, source)
            return True
        return False

    def purge(self, start: int | None = None, end: int | None = None, source: str = "purge_vmap_area_lazy") -> bool:
        """__purge_vmap_area_lazy: one flush_tlb_kernel_range over the union, then free the ranges."""
        if not self._purge_list:
            return False
        lo = min(s for _, s, _ in self._purge_list)
        hi = max(e for _, _, e in self._purge_list)
        if start is not None:
            lo = min(lo, start)
        if end is not None:
            hi = max(hi, end)
        self.m.flush_kernel_range(lo, hi, source)
        for range_name, s, _ in self._purge_list:
            self.m.spaces[range_name].free(s)
        self._purge_list.clear()
        self.lazy_nr = 0
        return True

    @property
    def pending_lazy(self) -> int:
        return len(self._purge_list)
