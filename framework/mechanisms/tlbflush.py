"""How kernel TLB invalidations reach every CPU: the mechanisms an arch chooses from.

* :class:`IpiFlush`: an IPI round to every other CPU, which each flushes itself. x86 without
  INVLPGB (arch/x86/mm/tlb.c: flush_tlb_kernel_range -> on_each_cpu(do_kernel_range_flush),
  flush_tlb_all -> on_each_cpu(do_flush_tlb_all)) and the generic arch.
* :class:`BroadcastFlush`: one instruction sequence that the hardware broadcasts to every CPU
  (arm64's TLBI ...IS + DSB ISH, arch/arm64/include/asm/tlbflush.h; AMD's INVLPGB + TLBSYNC):
  no interrupt, so no IPI.

Both flush a range per page up to ``ceiling`` pages and everything beyond it; which ceiling
is the arch's (x86 tlb_single_page_flush_ceiling = 33, arm64 MAX_TLBI_OPS). The stale
translations they end are the machine's TLB state (permalloc.model.tlb).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from permalloc.machine import Machine


class TlbFlush:
    """Kernel TLB invalidation on every CPU. Subclasses name the event kinds they emit."""

    range_kind = ev.FLUSH_RANGE
    all_kind = ev.FLUSH_ALL
    name = "tlb"

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling

    def kernel_range(self, m: Machine, start: int, end: int, source: str) -> None:
        """flush_tlb_kernel_range: per page up to the ceiling, else a full flush."""
        npages = (end - start + PAGE_SIZE - 1) >> PAGE_SHIFT
        if npages > self.ceiling:
            self.all(m, source)
            return
        pfns = m.tlb.flush_range(start, end)
        m.emit(self.range_kind, npages, start, pfns, source)

    def all(self, m: Machine, source: str) -> None:
        """flush_tlb_all."""
        pfns = m.tlb.flush_all()
        m.emit(self.all_kind, 1, 0, pfns, source)

    def alias_page(self, m: Machine, source: str, times: int = 1) -> None:
        """flush_tlb_kernel_range over one page of a transient alias, ``times`` times: the
        fixmap slot a text patcher maps for each write (its translation is the only one)."""
        m.emit(self.range_kind, 1, 0, None, source, times=times)


class IpiFlush(TlbFlush):
    """An IPI round to every other CPU (on_each_cpu)."""

    name = "ipi"


class BroadcastFlush(TlbFlush):
    """A hardware broadcast: every CPU invalidates, no CPU is interrupted."""

    range_kind = ev.TLBI_RANGE
    all_kind = ev.TLBI_ALL
    name = "broadcast"
