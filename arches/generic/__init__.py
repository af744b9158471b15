"""The generic arch: the pre-RFC kernel path, and the fallback for every arch hook.

Every arch hook is implemented ``trylast``, so a specialised arch overrides what it does
better and inherits the rest. The mechanism is what the kernel did before perm_alloc
(kernel/bpf/core.c: bpf_jit_binary_alloc + bpf_jit_binary_lock_ro, about 5.10):
vmalloc from order-0 pages mapped RW+NX with VM_FLUSH_RESET_PERMS, content written in
place, then set_memory_ro and set_memory_x.
"""

from __future__ import annotations

from permalloc import (
    ArchInfo,
    Machine,
    MachineSpec,
    Perm,
    PermAllocation,
    VRange,
    hookimpl,
)
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.mechanisms.tlbflush import IpiFlush
from permalloc.model.directmap import simple_leaves
from permalloc.model.memblock import BootMemory, Memblock, MemRange
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, pages_for

__version__ = "1.0"

# A neutral 64-bit layout (the x86-64 4-level values, so that the same workloads fit).
# With the generic module_alloc (kernel/module/main.c, __weak) modules live in vmalloc space.
PAGE_OFFSET = 0xFFFF888000000000
VMALLOC = VRange(name="vmalloc", start=0xFFFFC90000000000, end=0xFFFFE90000000000)


@hookimpl(trylast=True)
def permalloc_arch_describe(spec: MachineSpec) -> ArchInfo:
    return ArchInfo(
        name="generic",
        description="fallback: vmalloc + set_memory_* with all-CPU flushes; no text_poke, "
        "no huge vmap, 2 MiB direct map; knows no relocation types (all in reach)",
        page_offset=PAGE_OFFSET,
        ranges={
            "vmalloc": VMALLOC,
            "module": VRange(name="module", start=VMALLOC.start, end=VMALLOC.end),
            "kernel_image": VRange(name="kernel_image", start=0xFFFFFFFF81000000, end=0xFFFFFFFFA0000000),
        },
    )


# A flush ceiling, as flush_tlb_kernel_range implementations have (x86's 33 pages)
FLUSH_CEILING = 33


@hookimpl(trylast=True)
def permalloc_arch_mechanisms(machine: Machine) -> ArchMechanisms:
    """Flushes through IPI rounds (the kernel's default: on_each_cpu), text written through a
    fixmap alias (arm64, riscv, ...), a direct map that set_memory can change."""
    return ArchMechanisms(tlb=IpiFlush(FLUSH_CEILING), text=TextPatcher(machine))


# Zones a 64-bit kernel has without ZONE_DMA: DMA32 below 4 GiB, Normal above (mm/page_alloc.c)
GENERIC_ZONES = [("DMA32", 1 << 32), ("Normal", None)]
KERNEL_PHYS = 16 << 20  # a neutral load address (x86's CONFIG_PHYSICAL_START)


@hookimpl(trylast=True)
def permalloc_arch_boot_memory(spec: MachineSpec, image) -> BootMemory:
    """RAM from 0 with no holes, split into equal NUMA nodes; the kernel at 16 MiB and the
    initrd at the top of RAM, page-aligned."""
    share = spec.memory // spec.numa_nodes // PAGE_SIZE * PAGE_SIZE
    ram = [MemRange(n * share, spec.memory if n == spec.numa_nodes - 1 else (n + 1) * share, "ram", n)
           for n in range(spec.numa_nodes)]
    initrd = ((spec.memory - spec.initrd) // PAGE_SIZE * PAGE_SIZE, spec.initrd) if spec.initrd else None
    return BootMemory("flat", list(ram), list(ram), GENERIC_ZONES,
                      kernel_phys=KERNEL_PHYS if image is not None else None, initrd=initrd)


@hookimpl(trylast=True)
def permalloc_arch_direct_map(spec: MachineSpec, memblock: Memblock) -> tuple[list, dict]:
    """Every RAM range with the largest aligned leaves (2 MiB; 4 KiB at unaligned edges)."""
    leaves = simple_leaves(((r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT) for r in memblock.memory), gbpages=False)
    counts: dict[int, int] = {}
    for start, end, leaf in leaves:
        counts[leaf] = counts.get(leaf, 0) + (end - start) // leaf
    return leaves, counts


@hookimpl(trylast=True)
def permalloc_alloc(machine: Machine, size: int, perm: Perm, vrange: VRange) -> PermAllocation:
    # __vmalloc_node_range(..., PAGE_KERNEL, VM_FLUSH_RESET_PERMS): RW+NX, order-0 pages
    area = machine.vmalloc.vmalloc(size, vrange.name, Perm.RW, reset_perms=True, source="vmalloc")
    return PermAllocation(
        addr=area.addr,
        size=size,
        perm=perm,
        range_name=vrange.name,
        allocated=area.size,
        staging=area.addr,
        backend={"area": area},
    )


@hookimpl(trylast=True)
def permalloc_writable(machine: Machine, alloc: PermAllocation) -> int:
    return alloc.addr  # the final mapping is writable until finish


def _set_memory(machine: Machine, name: str, alloc: PermAllocation, first: int = 0, npages: int | None = None) -> None:
    count = pages_for(alloc.size) - first if npages is None else npages
    machine.perm.set_memory(name, alloc.addr + first * PAGE_SIZE, count)


@hookimpl(trylast=True)
def permalloc_finish(machine: Machine, alloc: PermAllocation) -> bool:
    # kernel/bpf/core.c (5.10): bpf_jit_binary_lock_ro -> set_memory_ro, then set_memory_x
    if not alloc.perm & Perm.W:
        _set_memory(machine, "set_memory_ro", alloc)
    if alloc.perm & Perm.X:
        _set_memory(machine, "set_memory_x", alloc)
    return True


@hookimpl(trylast=True)
def permalloc_change(machine: Machine, alloc: PermAllocation, perm: Perm) -> bool:
    old = alloc.perm
    # Drop rights before granting new ones, so that no step is W+X.
    if old & Perm.X and not perm & Perm.X:
        _set_memory(machine, "set_memory_nx", alloc)
    if old & Perm.W and not perm & Perm.W:
        _set_memory(machine, "set_memory_ro", alloc)
    if perm & Perm.W and not old & Perm.W:
        _set_memory(machine, "set_memory_rw", alloc)
    if perm & Perm.X and not old & Perm.X:
        _set_memory(machine, "set_memory_x", alloc)
    return True


@hookimpl(trylast=True)
def permalloc_poke(machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool:
    # Without text_poke: make the pages writable, write, make them read-only again.
    first = offset >> PAGE_SHIFT
    count = ((offset + length - 1) >> PAGE_SHIFT) - first + 1
    if not alloc.perm & Perm.W:
        _set_memory(machine, "set_memory_rw", alloc, first, count)
    machine.store(alloc.addr + offset, length, source="poke")
    if not alloc.perm & Perm.W:
        _set_memory(machine, "set_memory_ro", alloc, first, count)
    return True


@hookimpl(trylast=True)
def permalloc_free(machine: Machine, alloc: PermAllocation) -> bool:
    machine.vmalloc.vfree(alloc.backend["area"], source="vfree")
    return True


@hookimpl(trylast=True)
def permalloc_shrink(machine: Machine, pages: int) -> int:
    return 0  # vmalloc keeps no cache of pages to give back


@hookimpl(trylast=True)
def permalloc_set_memory(machine: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str) -> bool:
    machine.cpa.change(addr, npages, set_mask, clear_mask, source)
    return True
