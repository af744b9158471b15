"""Booting a simulated machine: from the arch's firmware map to a running kernel's memory.

The order is the kernel's (init/main.c: start_kernel, kernel_init):

1. the arch's boot memory (firmware map, memblock.memory, where the boot loader put the
   kernel image and the initrd) and early reservations (setup_arch);
2. the direct map (the arch's init_mem_mapping);
3. memblock allocations: the struct page array (mm/sparse.c: sparse_init allocates
   PAGES_PER_SECTION * sizeof(struct page) per present section, section-map aligned,
   top-down per node), then the first per-CPU chunk (setup_per_cpu_areas);
4. zones (the arch's zone limits) and ``memblock_free_all`` of the early part, then what
   start_kernel does on top of it (stage ``mm_init``: x86 preallocates the vmalloc area's
   top-level page tables, write-protects the IDT, frees the SMP alternatives);
   and vfs_caches_init allocates the mount hashes (large system hashes: systemhash.py);
5. ``page_alloc_init_late``: deferred struct page init frees the rest;
6. initcalls: the futex hash (a core initcall), the watermarks and per-CPU list sizes of
   init_per_zone_wmark_min (postcore), the arch's and consumers' (``permalloc_machine_boot``
   stage ``initcalls``), then inet_init's hashes (an fs initcall);
7. populate_rootfs: the initramfs is unpacked into the page cache (tmpfs, movable) and
   the initrd freed (free_initrd_mem), by async work on the CPU after the boot CPU;
8. the end of kernel_init (stage ``late``: the arch's free_initmem and mark_rodata_ro).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from permalloc.errors import PluginError
from permalloc.model.buddy import Zone
from permalloc.model.directmap import DirectMap
from permalloc.model.memblock import (
    PAGES_PER_SECTION,
    STRUCT_PAGE_SIZE,
    BootMemory,
    Memblock,
    buddy_blocks,
    first_deferred_pfn,
)
from permalloc.model.pagecache import PageCache
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE
from permalloc.model.percpu import embed_first_chunk
from permalloc.model.perms import Perm
from permalloc.model.physmem import PhysMem, node_of_cpu
from permalloc.model.systemhash import SYSTEM_HASHES_6_1, SystemHash, kernel_pages, sizes

if TYPE_CHECKING:
    from permalloc.machine import Machine

BOOT_CPU = 0  # the boot CPU runs start_kernel and kernel_init


def boot_memory(machine: Machine) -> BootMemory:
    found = machine.hook.permalloc_arch_boot_memory(spec=machine.spec, image=machine.kernel_image)
    if found is None:
        raise PluginError(f"no plugin implements permalloc_arch_boot_memory for arch {machine.arch.name!r}")
    return found


def _zones(boot: BootMemory, memblock: Memblock) -> tuple[list[list[Zone]], dict[int, list[tuple[int, int]]]]:
    """free_area_init: per node, the zones from the arch's limits with their present ranges."""
    nodes = sorted({r.node for r in boot.memory})
    per_node: list[list[Zone]] = []
    present: dict[int, list[tuple[int, int]]] = {}
    uid = 0
    for node in nodes:
        ranges = [(r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT) for r in boot.memory if r.node == node]
        zones = []
        low = 0
        for index, (name, limit) in enumerate(boot.zones):
            high = (limit >> PAGE_SHIFT) if limit is not None else max(e for _, e in ranges)
            pieces = [(max(s, low), min(e, high)) for s, e in ranges if max(s, low) < min(e, high)]
            low = max(low, high)
            if not pieces:
                continue
            zone = Zone(name, index, node, pieces[0][0], pieces[-1][1], boot.max_order, boot.pageblock_order)
            zone.present = sum(e - s for s, e in pieces)
            zone.uid = uid
            uid += 1
            present[id(zone)] = pieces
            zones.append(zone)
        per_node.append(zones)
    return per_node, present


def _free_range(zones: list[Zone], start: int, end: int, deferred: dict[int, int], later: list) -> None:
    """__free_memory_core for [start, end) pfns, zone by zone; pages from a zone's first
    deferred pfn on wait for deferred init (early_page_uninitialised)."""
    for zone in zones:
        lo, hi = max(start, zone.start_pfn), min(end, zone.end_pfn)
        if lo >= hi:
            continue
        cut = deferred.get(id(zone), hi)
        if lo < min(hi, cut):
            _free_blocks(zone, lo, min(hi, cut))
        if max(lo, cut) < hi:
            later.append((zone, max(lo, cut), hi))


def _free_blocks(zone: Zone, start: int, end: int) -> None:
    top = zone.max_order - 1
    run_first, run_count = None, 0
    for pfn, order in buddy_blocks(start, end, zone.max_order):
        if order == top:
            if run_first is None:
                run_first = pfn
            run_count += 1
            continue
        if run_first is not None:
            zone.add_boot_run(run_first, run_count)
            run_first, run_count = None, 0
        zone.add_boot_block(pfn, order)
    if run_first is not None:
        zone.add_boot_run(run_first, run_count)


def boot(machine: Machine) -> None:
    """Build ``machine.phys``, ``machine.directmap`` and ``machine.memblock`` and run boot."""
    spec = machine.spec
    boot_mem = boot_memory(machine)
    machine.boot_memory = boot_mem
    memblock = Memblock(list(boot_mem.memory))
    for start, size, what in boot_mem.reserved:
        memblock.reserve(start, size, what)
    image = machine.kernel_image
    if image is not None and boot_mem.kernel_phys is not None:
        memblock.reserve(boot_mem.kernel_phys, image.size, "kernel image")
    if boot_mem.initrd is not None:
        memblock.reserve(boot_mem.initrd[0], boot_mem.initrd[1], "initrd")
    dma_reserve = _dma_reserve(boot_mem, memblock) if boot_mem.dma_reserve else 0
    layout = machine.hook.permalloc_arch_direct_map(spec=spec, memblock=memblock)
    if layout is None:
        raise PluginError(f"no plugin implements permalloc_arch_direct_map for arch {machine.arch.name!r}")
    leaves, counts = layout
    machine.directmap = DirectMap(leaves, counts)
    # sparse_init: one struct page per page of every present section, per node
    for node in sorted({r.node for r in boot_mem.memory}):
        sections = {s for r in boot_mem.memory if r.node == node
                    for s in range((r.start >> PAGE_SHIFT) // PAGES_PER_SECTION,
                                   ((r.end >> PAGE_SHIFT) - 1) // PAGES_PER_SECTION + 1)}
        map_size = PAGES_PER_SECTION * STRUCT_PAGE_SIZE
        memblock.alloc(len(sections) * map_size, map_size, "memmap", node=node)
    # start_kernel: setup_per_cpu_areas, after setup_arch
    static = image.marker("__per_cpu_end") - image.marker("__per_cpu_start") \
        if image is not None and "__per_cpu_start" in image.layout else 0
    node_count = len({r.node for r in boot_mem.memory})
    embed_first_chunk(memblock, static, boot_mem.percpu_atom, spec.cpus,
                      lambda cpu: node_of_cpu(cpu, spec.cpus, node_count))
    machine.memblock = memblock
    nodes, present = _zones(boot_mem, memblock)
    deferred: dict[int, int] = {}
    for zones in nodes:
        top = zones[-1]  # defer_init: only the highest zone of a node
        deferred[id(top)] = first_deferred_pfn(present[id(top)])
    phys = PhysMem(nodes, spec.cpus, PAGE_SIZE)
    machine.phys = phys
    later: list = []
    for zones in nodes:
        node = zones[0].node if zones else 0
        for start, end in memblock.free_ranges(node):
            _free_range(zones, -(-start // PAGE_SIZE), end // PAGE_SIZE, deferred, later)
    for zones in nodes:
        for zone in zones:
            if id(zone) in deferred:
                zone.defer_pageblocks(deferred[id(zone)], [(s, e) for z, s, e in later if z is zone])
    machine.hook.permalloc_machine_boot(machine=machine, stage="mm_init")
    hashes = system_hashes(machine, nodes, dma_reserve)
    machine.system_hashes = []  # (table, bytes, "pages" or "vmalloc"), as boot made them
    alloc_hashes(machine, hashes, "start_kernel")  # vfs_caches_init -> mnt_init
    for zone, start, end in later:  # page_alloc_init_late: deferred_init_memmap
        _free_blocks(zone, start, end)
    alloc_hashes(machine, hashes, "core_initcall")
    phys.setup_watermarks()  # postcore_initcall(init_per_zone_wmark_min)
    machine.page_cache = PageCache(phys)
    machine.hook.permalloc_machine_boot(machine=machine, stage="initcalls")
    alloc_hashes(machine, hashes, "fs_initcall")  # inet_init
    if boot_mem.initrd is not None:
        # populate_rootfs: unpack into rootfs (tmpfs, movable pages), then free_initrd_mem, in
        # an async work item (init/initramfs.c: do_populate_rootfs) on another CPU
        cpu = async_cpu(spec.cpus)
        machine.page_cache.fill(boot_mem.initrd[1] // PAGE_SIZE, cpu)
        start, size = boot_mem.initrd
        free_reserved_area(machine, start, start + size, "initrd", cpu)
    machine.hook.permalloc_machine_boot(machine=machine, stage="late")


def _dma_reserve(boot: BootMemory, memblock: Memblock) -> int:
    """Pages of the first zone that memblock holds reserved (arch/x86/mm/init.c:
    memblock_find_dma_reserve: its memory pages less its free pages, partial pages not
    counted free), which free_area_init_core leaves out of nr_kernel_pages."""
    limit = boot.zones[0][1]
    if limit is None:
        return 0
    limit >>= PAGE_SHIFT
    present = sum(max(0, min(r.end >> PAGE_SHIFT, limit) - (r.start >> PAGE_SHIFT)) for r in boot.memory)
    free = sum(max(0, min(end // PAGE_SIZE, limit) - min(-(-start // PAGE_SIZE), limit))
               for node in sorted({r.node for r in boot.memory}) for start, end in memblock.free_ranges(node))
    return present - free


def system_hashes(machine: Machine, nodes: list[list[Zone]], dma_reserve: int) -> list[tuple[SystemHash, int]]:
    """The large system hashes the page allocator serves, with their sizes: none with more
    than one node, where hashdist makes them vmalloc'd (mm/page_alloc.c: fixup_hashdist)."""
    if len(nodes) > 1:
        return []
    kernel, total = kernel_pages([(z.end_pfn - z.start_pfn, z.present) for z in nodes[0]], dma_reserve)
    return sizes(SYSTEM_HASHES_6_1, kernel, total, machine.spec.cpus)


def alloc_hashes(machine: Machine, hashes: list[tuple[SystemHash, int]], when: str) -> None:
    """alloc_large_system_hash on the boot CPU: alloc_pages_exact, one unmovable block of
    get_order(size), split, the pages past the table freed (mm/page_alloc.c:
    make_alloc_exact); a table of MAX_ORDER or more is vmalloc_huge'd instead."""
    for table, size in hashes:
        if table.when != when:
            continue
        order = max(0, (size - 1).bit_length() - PAGE_SHIFT)
        if order >= machine.boot_memory.max_order:
            machine.vmalloc.vmalloc(size, "vmalloc", Perm.RW, reset_perms=False, huge=True,
                                    source=f"alloc_large_system_hash/{table.name}")
            machine.system_hashes.append((table.name, size, "vmalloc"))
            continue
        machine.system_hashes.append((table.name, size, "pages"))
        pfn = machine.alloc_order(order, source=f"alloc_large_system_hash/{table.name}")
        used = -(-size // PAGE_SIZE)
        if used < 1 << order:
            machine.phys.split(pfn)
            machine.free_pages(range(pfn + used, pfn + (1 << order)), source="make_alloc_exact")


def async_cpu(cpus: int) -> int:
    """Where boot's async work runs: kernel/async.c queues it on system_unbound_wq, and the
    worker woken while kernel_init keeps the boot CPU busy goes to the first idle CPU after
    it (kernel/sched/fair.c: select_idle_cpu scans for_each_cpu_wrap from target + 1)."""
    return (BOOT_CPU + 1) % cpus


def free_reserved_area(machine: Machine, start: int, end: int, what: str, cpu: int = BOOT_CPU) -> int:
    """mm/page_alloc.c: free_reserved_area: each page of [start, end) to the page allocator
    (free_reserved_page -> __free_page on ``cpu``, the boot CPU unless async work frees it);
    the pages become managed."""
    memblock = machine.memblock
    first, last = -(-start // PAGE_SIZE), end // PAGE_SIZE
    memblock.unreserve(first * PAGE_SIZE, last * PAGE_SIZE)
    phys = machine.phys
    freed = 0
    for pfn in range(first, last):
        zone = phys.zone_of(pfn)
        zone.managed += 1
        phys.give(pfn, cpu)
        freed += 1
    return freed
