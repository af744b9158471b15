"""The direct-map alias of pages that end up read-only or executable.

The RFC wants a live allocation to have "no writable mapping, no direct map mapping"
(cover letter, "Proposed solution", step 3). These helpers take pages out of the direct map
and put them back, with the primitives of arch/x86/mm/pat/set_memory.c and mm/vmalloc.c:

* out: set_direct_map_invalid_noflush per page (set_memory.c 6.1 l.2336), or
  __set_pages_np(page, 512) for a whole 2 MiB block (6.1 l.2317): no alias processing and no
  flush of their own, but any large leaf that must be split is split with flush_tlb_all
  (__split_large_page). Then ONE flush through _vm_unmap_aliases(start, end, 1) over the
  direct-map span, exactly as vm_remove_mappings / vm_reset_perms do (mm/vmalloc.c 6.1
  l.2741): it also purges every lazily freed vmalloc area, so no page keeps a stale alias.
* back: set_direct_map_default_noflush / __set_pages_p: NP -> RW needs no flush (notes 1.6
  step 5). Callers that give pages back to the page allocator flush stale vmalloc aliases
  first with the same _vm_unmap_aliases call.
* the kernel high mapping: pages of the kernel image freed at boot (free_initmem, the gaps
  mark_rodata_ro frees) keep their RW+NX high-map alias (arch/x86/mm/init.c:
  free_kernel_image_pages removes it only under PTI), and the buddy allocator hands them to
  unmovable allocations like any page. The noflush primitives do not process aliases; the RFC
  wants no writable mapping left, so its unmap takes that alias out as well, as
  cpa_process_alias does for a pfn in the high map (__cpa_pfn_in_highmap), inside the same
  single flush (whose range then spans both maps).
"""

from __future__ import annotations

from collections.abc import Sequence

from permalloc import Machine, Perm
from permalloc.model.pages import PAGE_SIZE


def _other_aliases(machine: Machine, pfns: Sequence[int]) -> list:
    return [alias for alias in machine.aliases if any(alias.covers(pfn) for pfn in pfns)]


def hull(machine: Machine, pfns: Sequence[int]) -> tuple[int, int]:
    """[start, end) of the direct-map addresses of ``pfns`` (vm_remove_mappings' start/end),
    widened to their high-map addresses where they have one."""
    start, end = machine.directmap_addr(min(pfns)), machine.directmap_addr(max(pfns)) + PAGE_SIZE
    for alias in _other_aliases(machine, pfns):
        covered = [pfn for pfn in pfns if alias.covers(pfn)]
        start, end = min(start, alias.addr(min(covered))), max(end, alias.addr(max(covered)) + PAGE_SIZE)
    return start, end


def invalidate(machine: Machine, pfns: Sequence[int], source: str) -> None:
    """set_direct_map_invalid_noflush on each page: clears P+RW, no flush (splits flush)."""
    machine.change_directmap(pfns, Perm.NONE, Perm.RWX, source=f"{source}/set_direct_map_invalid_noflush")
    for alias in _other_aliases(machine, pfns):
        machine.change_alias(alias, pfns, Perm.NONE, Perm.RWX, source=f"{source}/high_alias")


def restore(machine: Machine, pfns: Sequence[int], source: str) -> None:
    """set_direct_map_default_noflush on each page: P+RW again (NP -> RW, no flush)."""
    machine.change_directmap(pfns, Perm.RW, Perm.X, source=f"{source}/set_direct_map_default_noflush")
    for alias in _other_aliases(machine, pfns):
        machine.change_alias(alias, pfns, Perm.RW, Perm.X, source=f"{source}/high_alias")


def flush(machine: Machine, pfns: Sequence[int], source: str) -> bool:
    """_vm_unmap_aliases(dm_start, dm_end, 1): one flush over lazy areas and the direct map."""
    start, end = hull(machine, pfns)
    return machine.vmalloc.unmap_aliases(start, end, flush=True, source=f"{source}/_vm_unmap_aliases")


def unmap(machine: Machine, pfns: Sequence[int], source: str) -> None:
    """Take pages out of the direct map with exactly one flush (plus one per large-leaf split)."""
    invalidate(machine, pfns, source)
    flush(machine, pfns, source)


def release(machine: Machine, pfns: Sequence[int], source: str) -> None:
    """Before pages go back to the page allocator: flush their stale aliases once, map them back.

    The vm_reset_perms sequence (invalid, one flush, default) for pages whose direct map is
    already not present: the invalidation is a no-op, the flush is the one that matters.
    """
    invalidate(machine, pfns, source)
    flush(machine, pfns, source)
    restore(machine, pfns, source)
