"""A third-party arch plugin, installed from its own package through the entry point.

It describes a new arch ``toy`` and overrides a single arch hook, ``permalloc_finish``:
text goes live with one ``set_memory_rox`` call (as 6.12 allows) instead of the generic
``set_memory_ro`` + ``set_memory_x``. Everything else is inherited from ``generic``.
"""

from permalloc import ArchInfo, Machine, MachineSpec, Perm, PermAllocation, VRange, hookimpl
from permalloc.model.pages import pages_for

__version__ = "0.3.0"


@hookimpl
def permalloc_arch_describe(spec: MachineSpec) -> ArchInfo:
    return ArchInfo(
        name="toy",
        description="example third-party arch: finish with one set_memory_rox",
        page_offset=0xFFFF888000000000,
        ranges={
            "vmalloc": VRange(name="vmalloc", start=0xFFFFC90000000000, end=0xFFFFE90000000000),
            "module": VRange(name="module", start=0xFFFFFFFFC0000000, end=0xFFFFFFFFFF000000),
        },
    )


@hookimpl
def permalloc_finish(machine: Machine, alloc: PermAllocation) -> bool | None:
    if machine.arch.name != "toy" or alloc.perm != Perm.RX:
        return None  # not ours: let the next implementation (generic) do it
    machine.perm.set_memory("set_memory_rox", alloc.addr, pages_for(alloc.size))
    return True
