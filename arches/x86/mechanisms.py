"""x86's choice of mechanisms: IPI flush rounds or AMD's INVLPGB broadcast, and text_poke."""

from __future__ import annotations

from permalloc import Machine
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.tlbflush import BroadcastFlush, IpiFlush

from .layout import TLB_SINGLE_PAGE_FLUSH_CEILING
from .textpoke import TextPoke


def mechanisms(machine: Machine) -> ArchMechanisms:
    """IPI rounds (arch/x86/mm/tlb.c: on_each_cpu(do_kernel_range_flush / do_flush_tlb_all)),
    or INVLPGB when the CPU has it.

    Since v6.15 (82378c6c2f43, "x86/mm: Use INVLPGB for kernel TLB flushes"),
    flush_tlb_kernel_range and flush_tlb_all issue INVLPGB + TLBSYNC instead of on_each_cpu,
    with the same ceiling (get_flush_tlb_info). It is applied whatever the policy's kernel,
    as a what-if for older designs. PTI, which clears X86_FEATURE_INVLPGB, is off on the AMD
    parts that have it; the 6.15 ranged flush without INVLPGB_FLAG_VA is not modelled.
    """
    ceiling = TLB_SINGLE_PAGE_FLUSH_CEILING
    tlb = BroadcastFlush(ceiling) if "invlpgb" in machine.spec.cpu_features else IpiFlush(ceiling)
    return ArchMechanisms(tlb=tlb, text=TextPoke(machine))
