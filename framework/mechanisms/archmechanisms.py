"""The mechanisms an arch picks for one machine (``permalloc_arch_mechanisms``).

mm/execmem.c's lesson: a small core that every arch shares, and a per-arch table of
choices. These are the choices the kernel makes per arch in code:

* ``tlb``: how a kernel TLB invalidation reaches the other CPUs and beyond how many pages it
  flushes everything (:mod:`.tlbflush`);
* ``text``: how live text is written (:mod:`.textpatch`; x86's text_poke is its own);
* ``can_set_direct_map``: whether set_direct_map_*_noflush change the direct map at all
  (arch/arm64/mm/pageattr.c: can_set_direct_map is rodata_full || debug_pagealloc ||
  KFENCE, and set_direct_map_invalid_noflush returns 0 without it). False leaves the
  direct-map steps of VM_FLUSH_RESET_PERMS (mm/vmalloc.c: vm_reset_perms) as no-ops; the
  flush that covers the area stays.

How the direct map itself is laid out (large leaves, or page granular as arm64's
``rodata=full`` linear map) is the arch's ``permalloc_arch_direct_map``.
"""

from __future__ import annotations

from dataclasses import dataclass

from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.mechanisms.tlbflush import TlbFlush


@dataclass(frozen=True)
class ArchMechanisms:
    tlb: TlbFlush
    text: TextPatcher
    can_set_direct_map: bool = True
