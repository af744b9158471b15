"""Writes to live kernel text: the patching mechanism an arch chooses.

:class:`TextPatcher` is the fixmap patcher of arm64 (arch/arm64/kernel/patching.c; riscv's
patch.c is built the same way): each write maps the target page at a fixmap slot, writes
through it and clears the slot, and clearing the slot flushes its translation through the
arch's TLB mechanism (arch/arm64/mm/fixmap.c: __set_fixmap -> flush_tlb_kernel_range). An
arch with another scheme subclasses it (x86's temporary-mm text_poke lives in arches/x86).

The four entry points are what consumers call; none of them knows the arch:

* :meth:`poke` / :meth:`copy`: write bytes (an instruction, a whole image) through the alias;
* :meth:`live`: change instructions that other CPUs may be executing, safely;
* :meth:`queue`: change many sites (jump labels, ftrace records) in the arch's batched way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from permalloc.errors import ContractError
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT

if TYPE_CHECKING:
    from permalloc.machine import Machine


class TextPatcher:
    """Patching through a fixmap alias, one page per mapping (arm64's aarch64_insn_*)."""

    name = "fixmap"

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    # -- the pages under the text ---------------------------------------------------------
    def pfns(self, addr: int, length: int, memo: dict[int, int | None] | None = None) -> list[int]:
        """The physical pages under [addr, addr+length); ``memo`` caches lookups per page."""
        pfns = []
        for vpn in range(addr >> PAGE_SHIFT, ((addr + length - 1) >> PAGE_SHIFT) + 1):
            if memo is not None and vpn in memo:
                pfn = memo[vpn]
            else:
                pfn = self._pfn(vpn)
                if memo is not None:
                    memo[vpn] = pfn
            if pfn is not None:
                pfns.append(pfn)
        return pfns

    def _pfn(self, vpn: int) -> int | None:
        found = self.m.pagetables.lookup(vpn << PAGE_SHIFT)
        if found is None and (vpn << PAGE_SHIFT) in self.m.ranges.get("kernel_image", ()):
            return None  # vmlinux text: mapped by the boot page tables, which are not modelled
        if found is None:
            raise ContractError(f"text patching: address {vpn << PAGE_SHIFT:#x} is not mapped")
        mapping, index = found
        return mapping.pfns[index]

    @staticmethod
    def pages(addr: int, length: int) -> int:
        return ((addr + length - 1) >> PAGE_SHIFT) - (addr >> PAGE_SHIFT) + 1

    # -- entry points -----------------------------------------------------------------------
    def poke(self, addr: int, length: int, source: str = "aarch64_insn_write") -> None:
        """One write of ``length`` bytes: patch_map / write / patch_unmap for each page it
        touches (patching.c: __text_poke loops per page; one instruction is one page)."""
        if length <= 0:
            return
        self.write_sites([(addr, length)], source)

    def copy(self, addr: int, length: int, source: str = "aarch64_insn_copy") -> None:
        """A bulk copy (aarch64_insn_copy / aarch64_insn_set): the same per-page loop."""
        self.poke(addr, length, source)

    def live(self, sites: Sequence[tuple[int, int]], source: str = "aarch64_insn_patch_text") -> None:
        """aarch64_insn_patch_text: stop_machine, and the last CPU to arrive writes every site
        with aarch64_insn_patch_text_nosync while the others spin."""
        if not sites:
            return
        self.m.emit(ev.STOP_MACHINE, 1, sites[0][0], source=source)
        self.write_sites(sites, source)

    def queue(self, sites: Sequence[tuple[int, int]], source: str = "patch_text_nosync", wait: bool = False) -> int:
        """Each site written with no synchronisation (aarch64_insn_patch_text_nosync); with
        ``wait`` one IPI round after all of them (arch/arm64/kernel/jump_label.c:
        arch_jump_label_transform_apply -> kick_all_cpus_sync). Returns the batches (1)."""
        if not sites:
            return 0
        self.write_sites(sites, source)
        if wait:
            self.m.sync_cores(f"{source}/kick_all_cpus_sync")
        return 1

    def write_sites(self, sites: Sequence[tuple[int, int]], source: str) -> None:
        """Write every ``(addr, len)`` site through the alias: one event for the writes and one
        for the alias flushes, each counting one per page mapped (a batch of thousands of
        sites would otherwise be thousands of events)."""
        pfns: list[int] = []
        memo: dict[int, int | None] = {}
        maps = 0
        for addr, length in sites:
            pfns.extend(self.pfns(addr, length, memo))
            maps += self.pages(addr, length)
        self.m.emit(ev.TEXT_WRITE, sum(n for _, n in sites), sites[0][0], pfns, source, times=maps)
        self.m.tlb_flush.alias_page(self.m, f"{source}/clear_fixmap", times=maps)
