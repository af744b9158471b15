"""Processes as the kernel allocates for them: a kernel stack and user page tables.

kernel/fork.c (CONFIG_VMAP_STACK=y): alloc_thread_stack_node takes a stack from this CPU's
cache of NR_CACHED_STACKS freed ones, else vmallocs THREAD_SIZE (16 KiB on x86-64 and arm64
with 4 KiB pages); at exit the stack goes back to the exiting CPU's cache if a slot is free
(thread_stack_free_rcu -> try_release_thread_stack_to_cache), else it is vfreed.

Page tables: pgd_alloc, then one table per level below for every separately mapped region
(GFP_PGTABLE_USER: order-0 unmovable pages). A process that maps its executable and its
stack, far apart as every ELF exec lays them out, needs ``1 + 2 * (levels - 1)`` pages
(``levels`` is 4, or 5 with LA57); more regions add more. Freed at exit (free_pgtables).
The task struct, mm and VMAs are slab objects, not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from permalloc.model.perms import Perm

if TYPE_CHECKING:
    from permalloc.machine import Machine
    from permalloc.mechanisms.vmalloc import VmArea

THREAD_SIZE = 16 << 10  # arch/x86/include/asm/page_64_types.h: THREAD_SIZE_ORDER 2 (no KASAN)
NR_CACHED_STACKS = 2  # kernel/fork.c


@dataclass
class Process:
    cpu: int
    stack: VmArea
    page_tables: list[int] = field(default_factory=list)


def page_table_pages(levels: int, regions: int = 2) -> int:
    """pgd plus one page per lower level for each of ``regions`` far-apart mappings."""
    return 1 + regions * (levels - 1)


class Processes:
    """The processes of one machine and each CPU's stack cache."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.cache: dict[int, list[VmArea]] = {}
        self.live: dict[str, Process] = {}

    def spawn(self, pid: str, cpu: int, levels: int, regions: int = 2) -> Process:
        """fork + exec on ``cpu``: a kernel stack (cached or vmalloc'ed) and page tables."""
        m = self.m
        saved, m.cpu = m.cpu, cpu
        try:
            cached = self.cache.get(cpu)
            if cached:
                stack = cached.pop()
            else:
                stack = m.vmalloc.vmalloc(THREAD_SIZE, "vmalloc", Perm.RW, reset_perms=False, source="alloc_thread_stack_node")
            tables = [m.alloc_order(0, source="pgd_alloc/pte_alloc") for _ in range(page_table_pages(levels, regions))]
        finally:
            m.cpu = saved
        proc = Process(cpu, stack, [pfn for pfn in tables if pfn is not None])
        self.live[pid] = proc
        return proc

    def exit(self, pid: str) -> None:
        """do_exit: page tables freed, the stack back to this CPU's cache or vfreed."""
        m = self.m
        proc = self.live.pop(pid)
        saved, m.cpu = m.cpu, proc.cpu
        try:
            for pfn in proc.page_tables:
                m.free_order(pfn, 0, source="free_pgtables")
            cached = self.cache.setdefault(proc.cpu, [])
            if len(cached) < NR_CACHED_STACKS:
                cached.append(proc.stack)
            else:
                m.vmalloc.vfree(proc.stack, source="free_thread_stack")
        finally:
            m.cpu = saved

    def release(self) -> None:
        """Teardown: every process exits and the stack caches are emptied (free_vm_stack_cache)."""
        for pid in list(self.live):
            self.exit(pid)
        for stacks in self.cache.values():
            while stacks:
                self.m.vmalloc.vfree(stacks.pop(), source="free_vm_stack_cache")
