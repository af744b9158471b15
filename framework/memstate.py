"""Memory states: what a machine did between boot and the scenario (``MachineSpec.memory_state``).

A state is history run through the same allocator, never a number that stands for it:

* ``fresh``: just booted (the boot's own allocations only).
* ``pagecache-N``: files were read until the page cache held N % of the memory free after
  boot (movable pages, taken as order-0 allocations would take them).
* ``aged-H``: H hours of a mixed server day. Each hour, on every CPU in turn: files are read
  until the page cache holds 60 % of free memory (older cache is reclaimed first), 64
  short-lived processes start and exit, the kernel keeps 32 more order-0 and 4 more order-2
  unmovable pages (slab growth, the order a kmalloc-1k/2k slab uses), frees a third of what it
  kept the hour before (seeded choice), and 10 % of the page cache is dropped. The amounts are
  the definition of the state, not measurements; they are per hour, not per GiB, so the cost
  does not grow with RAM.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from permalloc.model.buddy import UNMOVABLE

if TYPE_CHECKING:
    from permalloc.machine import Machine

PAGECACHE_SHARE_AGED = 0.60
PROCESSES_PER_HOUR = 64
SLAB_PAGES_PER_HOUR = ((0, 32), (2, 4))  # (order, count) kept per hour
SLAB_FREED_SHARE = 1 / 3
PAGECACHE_DROPPED_SHARE = 0.10


def apply(machine: Machine) -> None:
    """Bring a booted machine into ``machine.spec.memory_state``."""
    state = machine.spec.memory_state
    if state == "fresh":
        return
    kind, _, amount = state.partition("-")
    if kind == "pagecache":
        machine.page_cache.fill(machine.phys.free_pages() * int(amount) // 100, machine.cpu)
    elif kind == "aged":
        _age(machine, int(amount))


def _age(machine: Machine, hours: int) -> None:
    rng = random.Random(machine.spec.seed ^ 0xA6ED)
    cpus = machine.spec.cpus
    kept: list[tuple[int, int, int]] = []  # (pfn, order, cpu)
    levels = machine.arch.page_table_levels
    for hour in range(hours):
        cpu = hour % cpus
        target = int(machine.phys.free_pages() * PAGECACHE_SHARE_AGED)
        machine.page_cache.fill(max(target - machine.page_cache.pages, 0), cpu)
        for i in range(PROCESSES_PER_HOUR):
            pid = f"aged-{hour}-{i}"
            machine.processes.spawn(pid, (cpu + i) % cpus, levels)
            machine.processes.exit(pid)
        freeing = [k for k in kept if rng.random() < SLAB_FREED_SHARE]
        for pfn, order, at in freeing:
            saved, machine.cpu = machine.cpu, at
            machine.free_order(pfn, order, source="aged/kfree")
            machine.cpu = saved
        kept = [k for k in kept if k not in freeing]
        saved, machine.cpu = machine.cpu, cpu
        for order, count in SLAB_PAGES_PER_HOUR:
            for _ in range(count):
                pfn = machine.alloc_order(order, source="aged/slab", mt=UNMOVABLE)
                kept.append((pfn, order, cpu))
        machine.cpu = saved
        machine.page_cache.drop(int(machine.page_cache.pages * PAGECACHE_DROPPED_SHARE), cpu)
    machine.aged_slab = kept
