"""The set_memory_* engine (arch/x86/mm/pat/set_memory.c: change_page_attr_set_clr).

The mechanism of an arch whose direct map has large leaves that CPA splits (x86; the
generic arch borrows it). Its flush ceiling is the arch's TLB mechanism's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from permalloc.errors import ContractError
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT
from permalloc.model.perms import Perm

if TYPE_CHECKING:
    from permalloc.machine import Machine

# set_memory_* by name -> (bits to set, bits to clear), in Perm terms (X set == NX clear).
SET_MEMORY: dict[str, tuple[Perm, Perm]] = {
    "set_memory_ro": (Perm.NONE, Perm.W),
    "set_memory_rw": (Perm.W, Perm.NONE),
    "set_memory_x": (Perm.X, Perm.NONE),
    "set_memory_nx": (Perm.NONE, Perm.X),
    "set_memory_rox": (Perm.X, Perm.W),  # 6.2+: one call clearing RW and NX
    "set_memory_np": (Perm.NONE, Perm.RWX),
}

# set_memory_* calls that pass CPA_COLLAPSE: after its flush, cpa_flush tries to merge the
# split PMDs around the primary range back into 2 MiB leaves (cpa_collapse_large_pages), with
# one more flush_tlb_all when it merged any. Only set_memory_rox passes it (set_memory.c in
# linux-mm/linux-mm @071ca2c5, see docs/kernel-notes/rox-cache.md); 6.12 has no collapse.
COLLAPSING: frozenset[str] = frozenset({"set_memory_rox"})
COLLAPSE_AFTER = (6, 12)  # policies of kernels newer than this collapse


class Cpa:
    """change_page_attr for kernel virtual addresses in module/vmalloc space."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def change(self, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str) -> bool:
        """change_page_attr_set_clr(addr, npages, set, clear); returns whether cpa_flush ran.

        set_memory.c (6.1 l.1776, 6.12 l.1851), see docs/kernel-notes/mm-x86.md section 2:
        1. empty masks: return at once; otherwise vm_unmap_aliases() unconditionally;
        2. change the PTEs (splits flush everything, in the machine primitives);
        3. cpa_process_alias for module/vmalloc addresses: 6.1 skips it when only NX changes;
           6.12 always enters it with NX stripped from the alias masks. Entering it sets
           force_flush_all. The direct map is never made executable;
        4. cpa_flush only if a primary PTE changed (CPA_FLUSHTLB; alias changes do not set
           it): flush_tlb_all if force_flush_all or more than the ceiling, else per page;
        5. after 6.12, for ``set_memory_rox`` (CPA_COLLAPSE), cpa_flush ends with
           cpa_collapse_large_pages: every PMD from ``addr & PMD_MASK`` to the range's end of
           the primary (module/vmalloc) mapping is collapsed where possible, then one
           flush_tlb_all if any was. The direct-map alias is never collapsed (the alias CPA
           does not go through cpa_flush).
        """
        self.m.emit(ev.SET_MEMORY, npages, addr, source=source, masks=bool(set_mask or clear_mask))
        if not (set_mask or clear_mask):
            return False
        with self.m.atomic(source):
            return self._change(addr, npages, set_mask, clear_mask, source)

    def _change(self, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str) -> bool:
        m = self.m
        m.vmalloc.unmap_aliases(source=f"{source}/vm_unmap_aliases")  # even for 0 pages (l.1821)
        if npages <= 0:
            return False
        segments = []
        primary = m.alias_at(addr)
        dm_base = m.arch.page_offset
        in_directmap = (primary is None and dm_base <= addr and m.pagetables.lookup(addr) is None
                        and m.directmap.is_mapped((addr - dm_base) >> PAGE_SHIFT))
        if primary is not None:  # e.g. x86's kernel high mapping (mark_rodata_ro, free_init_pages)
            pfns = [primary.pfn(addr) + i for i in range(npages)]
            changed_any = bool(m.change_alias(primary, pfns, set_mask, clear_mask, source))
        elif in_directmap:  # a direct-map address (free_init_pages of the initrd)
            pfns = [((addr - dm_base) >> PAGE_SHIFT) + i for i in range(npages)]
            changed_any = bool(m.change_directmap(pfns, set_mask, clear_mask, source))
        else:
            changed_any = False
            pfns = []
            cursor, remaining = addr, npages
            while remaining:
                found = m.pagetables.lookup(cursor)
                if found is None:
                    raise ContractError(f"{source}: address {cursor:#x} is not mapped")
                mapping, index = found
                count = min(remaining, mapping.npages - index)
                if m.change_ptes(mapping, index, count, set_mask, clear_mask, source):
                    changed_any = True
                pfns.extend(mapping.pfns[index : index + count])
                segments.append((mapping, index, count))
                cursor += count << PAGE_SHIFT
                remaining -= count
        if m.kernel >= (6, 12):
            check_alias = True  # 6.12 cpa_process_alias strips NX (l.1749) but still forces
        else:
            check_alias = (set_mask | clear_mask) != Perm.X  # 6.1 l.1836: NX-only skips
        force_flush_all = False
        if check_alias:
            alias_set, alias_clear = set_mask & ~Perm.X, clear_mask & ~Perm.X
            mapped = [pfn for pfn in pfns if m.directmap.is_mapped(pfn)]  # pfn_range_is_mapped
            if mapped and not in_directmap:
                force_flush_all = True
                if alias_set or alias_clear:
                    m.change_directmap(mapped, alias_set, alias_clear, source=f"{source}/alias")
            for other in m.aliases:  # the high mapping, unless it is the primary target
                if other is primary or not any(other.covers(pfn) for pfn in pfns):
                    continue
                force_flush_all = True
                if alias_set or alias_clear:
                    m.change_alias(other, pfns, alias_set, alias_clear, source=f"{source}/alias")
        if not changed_any:
            return False
        # cpa_flush: flush_tlb_all beyond the arch's ceiling, else on_each_cpu(__cpa_flush_tlb),
        # an IPI round even where flush_tlb_kernel_range is a broadcast (x86 INVLPGB)
        if force_flush_all or npages > m.tlb_flush.ceiling:
            m.flush_all(source=f"{source}/cpa_flush")
        else:
            m.flush_range_ipi(addr, addr + (npages << PAGE_SHIFT), source=f"{source}/cpa_flush")
        if source in COLLAPSING and m.kernel > COLLAPSE_AFTER:
            collapse = f"{source}/cpa_collapse_large_pages"
            if sum(m.collapse_ptes(mp, index, count, collapse) for mp, index, count in segments):
                m.flush_all(source=collapse)
        return True

    def set_memory(self, name: str, addr: int, npages: int) -> bool:
        """Call ``set_memory_ro`` & co. by name."""
        set_mask, clear_mask = SET_MEMORY[name]
        return self.change(addr, npages, set_mask, clear_mask, name)
