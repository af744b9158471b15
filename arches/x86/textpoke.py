"""text_poke and friends (arch/x86/kernel/alternative.c): x86's text patching mechanism.

__text_poke maps the target page(s) writable in a temporary mm that only the local CPU
uses, writes, unmaps and flushes the local TLB: no IPI. text_poke_bp changes live
instructions under int3 and synchronises every CPU between its steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from permalloc.errors import ContractError
from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SIZE

INT3_INSN_SIZE = 1
TP_VEC_MAX = 256  # alternative.c: PAGE_SIZE / sizeof(struct text_poke_loc)


class TextPoke(TextPatcher):
    name = "text_poke"

    def poke(self, addr: int, length: int, source: str = "text_poke") -> None:
        """__text_poke: at most two pages through poking_mm, then a local flush only."""
        if length <= 0:
            return
        if (addr & (PAGE_SIZE - 1)) + length > 2 * PAGE_SIZE:
            raise ContractError(f"{source}: {length} bytes at {addr:#x} cross more than two pages")
        # One event: the write through poking_mm and the flush that unuse_temporary_mm +
        # flush_tlb_mm_range(poking_mm, ...) make on this CPU only (metrics count both).
        self.m.emit(ev.TEXT_POKE, length, addr, self.pfns(addr, length), source)

    def copy(self, addr: int, length: int, source: str = "text_poke_copy") -> None:
        """text_poke_copy / text_poke_set: __text_poke over chunks of up to two pages."""
        done = 0
        while done < length:
            chunk = min(2 * PAGE_SIZE - ((addr + done) & (PAGE_SIZE - 1)), length - done)
            self.poke(addr + done, chunk, source)
            done += chunk

    def live(self, sites: Sequence[tuple[int, int]], source: str = "text_poke_bp") -> None:
        """text_poke_bp_batch over ``(addr, len)`` sites: int3 first, then the tail, then byte 0.

        Each of the three steps pokes every site that needs it and ends with text_poke_sync
        (one IPI round to all CPUs); steps 2 and 3 sync only when they wrote something.
        """
        if not sites:
            return
        self.write_sites([(addr, INT3_INSN_SIZE) for addr, _ in sites], source)
        self.m.sync_cores(source)
        tails = [(addr + INT3_INSN_SIZE, n - INT3_INSN_SIZE) for addr, n in sites if n > INT3_INSN_SIZE]
        if tails:
            self.write_sites(tails, source)
            self.m.sync_cores(source)
        self.write_sites([(addr, INT3_INSN_SIZE) for addr, _ in sites], source)
        self.m.sync_cores(source)

    def write_sites(self, sites: Sequence[tuple[int, int]], source: str) -> None:
        """One step of a batch: a text_poke per site, recorded as one event of ``len(sites)``
        pokes (a batch step of thousands of pokes would otherwise be thousands of events)."""
        pfns: list[int] = []
        memo: dict[int, int | None] = {}
        for addr, length in sites:
            pfns.extend(self.pfns(addr, length, memo))
        self.m.emit(ev.TEXT_POKE, sum(n for _, n in sites), sites[0][0], pfns, source, times=len(sites))

    def queue(self, sites: Sequence[tuple[int, int]], source: str = "text_poke_queue", wait: bool = False) -> int:
        """text_poke_queue for each ``(addr, len)`` site, then text_poke_finish; returns the batches.

        alternative.c: text_poke_queue first calls text_poke_flush, which runs
        text_poke_bp_batch on the queued vector when it holds TP_VEC_MAX entries or when the
        new address is below the last queued one (tp_order_fail). Every batch synchronises
        all CPUs already, so ``wait`` adds nothing.
        """
        batches = 0
        vec: list[tuple[int, int]] = []
        for addr, length in sites:
            if vec and (len(vec) == TP_VEC_MAX or addr < vec[-1][0]):
                self.live(vec, source)
                batches += 1
                vec = []
            vec.append((addr, length))
        if vec:
            self.live(vec, source)
            batches += 1
        return batches
