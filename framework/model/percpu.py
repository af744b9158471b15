"""The first per-CPU chunk, embedded in memblock memory at boot (mm/percpu.c, Linux 6.1).

``setup_per_cpu_areas`` (start_kernel, right after setup_arch and so after sparse_init) calls
``pcpu_embed_first_chunk``: one unit per possible CPU, the units of a group (the CPUs at
LOCAL_DISTANCE of each other: one group per NUMA node) in one memblock allocation aligned to
the arch's atom size, and then the part of each unit beyond the static, reserved and dynamic
areas given back (``pcpu_fc_free`` -> memblock_free). What stays reserved is per-CPU data for
good; the holes are free memory inside an allocation whose first page is reserved, which is
why they matter to the page allocator (:meth:`permalloc.model.buddy.Zone.defer_pageblocks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .memblock import Memblock
from .pages import PAGE_SIZE, align_up

# include/linux/percpu.h (CONFIG_MODULES, 64-bit); arch/x86/kernel/setup_percpu.c passes
# PERCPU_FIRST_CHUNK_RESERVE = PERCPU_MODULE_RESERVE and dyn_size = PERCPU_DYNAMIC_RESERVE too
PERCPU_MODULE_RESERVE = 8 << 10
PERCPU_DYNAMIC_RESERVE = 28 << 10
PERCPU_DYNAMIC_EARLY_SIZE = 12 << 10
PCPU_MIN_UNIT_SIZE = 32 << 10


@dataclass(frozen=True)
class FirstChunk:
    """pcpu_alloc_info as pcpu_build_alloc_info fills it."""

    size_sum: int  # static + reserved + dynamic, page-aligned: what each unit keeps
    unit_size: int
    groups: tuple[tuple[int, int], ...]  # (node, units), one allocation each


def build_alloc_info(static_size: int, atom_size: int, group_cpus: list[tuple[int, int]]) -> FirstChunk:
    """mm/percpu.c: pcpu_build_alloc_info for ``group_cpus`` [(node, CPUs of that group)]."""
    size_sum = align_up(static_size + PERCPU_MODULE_RESERVE + max(PERCPU_DYNAMIC_RESERVE, PERCPU_DYNAMIC_EARLY_SIZE), PAGE_SIZE)
    min_unit_size = max(size_sum, PCPU_MIN_UNIT_SIZE)
    alloc_size = align_up(min_unit_size, atom_size)
    possible = sum(n for _, n in group_cpus)
    # units per allocation (from max_upa down, page-sized units only): the largest that wastes
    # at most a third of the possible CPUs' units, stopping where a smaller one needs more
    # allocations
    best, last_allocs = 0, None
    for candidate in range(alloc_size // min_unit_size, 0, -1):
        if alloc_size % candidate or (alloc_size // candidate) % PAGE_SIZE:
            continue
        allocs = sum(-(-n // candidate) for _, n in group_cpus)
        wasted = sum(-(-n // candidate) * candidate - n for _, n in group_cpus)
        if wasted > possible // 3:
            continue
        if last_allocs is not None and allocs > last_allocs:
            break
        last_allocs, best = allocs, candidate
    groups = tuple((node, -(-n // best) * best) for node, n in group_cpus)
    return FirstChunk(size_sum, alloc_size // best, groups)


def embed_first_chunk(memblock: Memblock, static_size: int, atom_size: int, cpus: int,
                      node_of_cpu: Callable[[int], int]) -> FirstChunk:
    """pcpu_embed_first_chunk: allocate each group's units (pcpu_fc_alloc: memblock, top-down
    on the group's node, aligned to ``atom_size``), then free what no unit uses."""
    per_node: dict[int, int] = {}
    for cpu in range(cpus):
        node = node_of_cpu(cpu)
        per_node[node] = per_node.get(node, 0) + 1
    info = build_alloc_info(static_size, atom_size, sorted(per_node.items()))
    for node, units in info.groups:
        base = memblock.alloc(units * info.unit_size, atom_size, "percpu first chunk", node=node)
        used = per_node[node]
        for unit in range(units):
            start = base + unit * info.unit_size
            # an unused unit is freed whole, a used one beyond size_sum
            keep = info.size_sum if unit < used else 0
            if keep < info.unit_size:
                memblock.unreserve(start + keep, start + info.unit_size)
    return info
