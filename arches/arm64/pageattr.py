"""set_memory_* on arm64: arch/arm64/mm/pageattr.c change_memory_common (6.1 and 6.12 alike).

* Only vmalloc memory: [addr, addr + size) must lie in one VM area (find_vm_area, VM_ALLOC);
  anything else is -EINVAL, which the model reports as a contract error naming the call.
* With rodata=full (CONFIG_RODATA_FULL_DEFAULT_ENABLED=y in Debian) a change to or from
  read-only (set_mask or clear_mask == PTE_RDONLY: set_memory_ro / set_memory_rw) is applied
  first to the linear-map alias of *every* page of the area, one __change_memory_common per
  page: apply_to_page_range on that page, then flush_tlb_kernel_range of that page. The
  linear map is page-mapped (mmu.c: map_mem with NO_BLOCK_MAPPINGS when can_set_direct_map),
  so nothing splits. set_memory_x / set_memory_nx (PTE_PXN) leave the alias alone.
* then vm_unmap_aliases(), then the area's own PTEs and flush_tlb_kernel_range(start, end).
* set_memory_rox: arm64 does not define it; include/linux/set_memory.h's fallback is
  set_memory_ro then set_memory_x.
"""

from __future__ import annotations

from permalloc import Machine, Perm
from permalloc.errors import ContractError
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE


def set_memory(m: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str) -> None:
    """One set_memory_* call, as arm64 carries it out (set_memory_rox as its two calls)."""
    steps = []
    if (set_mask | clear_mask) & Perm.W:  # set_memory_ro / set_memory_rw: the PTE_RDONLY changes
        steps.append((set_mask & Perm.W, clear_mask & Perm.W))
    if (set_mask | clear_mask) & Perm.X:  # set_memory_x / set_memory_nx: PTE_PXN
        steps.append((set_mask & Perm.X, clear_mask & Perm.X))
    for step_set, step_clear in steps:
        change_memory_common(m, addr, npages, step_set, step_clear, source)


def change_memory_common(m: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm,
                         source: str) -> None:
    m.emit(ev.SET_MEMORY, npages, addr, source=source, masks=True)
    with m.atomic(source):
        start = addr & ~(PAGE_SIZE - 1)  # !PAGE_ALIGNED: WARN_ON_ONCE, and round down
        end = start + (npages << PAGE_SHIFT)
        found = m.pagetables.lookup(start)
        area = m.vmalloc.areas.get(found[0].start) if found is not None else None
        if area is None or end > area.addr + area.size:
            raise ContractError(f"{source}: {start:#x}+{npages} pages is not inside one vmalloc area "
                                "(arm64 change_memory_common: -EINVAL)")
        if npages == 0:
            return
        mapping = area.mapping
        if clear_mask & Perm.W or set_mask & Perm.W:  # rodata_full && PTE_RDONLY
            for pfn in mapping.pfns:
                va = m.directmap_addr(pfn)
                m.change_directmap([pfn], set_mask, clear_mask, f"{source}/linear_alias")
                m.flush_kernel_range(va, va + PAGE_SIZE, source=f"{source}/linear_alias")
        m.vmalloc.unmap_aliases(source=f"{source}/vm_unmap_aliases")
        first = (start - mapping.start) >> PAGE_SHIFT
        m.change_ptes(mapping, first, npages, set_mask, clear_mask, source)
        m.flush_kernel_range(start, end, source=source)
