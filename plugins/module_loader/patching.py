"""What the text patchers need to know about a module: where its patch tables and patch sites
are, and how to report what they did.

The patchers (alternatives, smp_locks, ORC, jump labels, ftrace, static calls) are separate
plugins; they share these helpers instead of copying them.

* :func:`section_span`: a section's memory class and offset inside it, as the layouts place
  it (kernel/module/main.c: module_get_offset, each section at ``ALIGN(size,
  sh_addralign ?: 1)`` in ELF order, per class).
* :func:`spread`: where the sites of a table are. The workload counts entries but keeps no
  per-entry address, so a table's sites are spread evenly (and deterministically) over the
  class that holds them: an assumption, good enough for page and batch accounting.
* :class:`PatchCost`: the text-patching cost of a piece of work, taken from the machine's
  counters, to put in the report that the module loader aggregates per patcher.
* :func:`vmlinux`: the vmlinux facts of the kernel the machine runs (its workload's).
* :func:`x86_tables`: whether a patcher of x86's tables applies to an arch
  (``permalloc_applies``).
"""

from __future__ import annotations

import zlib
from typing import Any

from permalloc import ArchInfo, Machine, PermallocError, SpecError

from .loader import ModuleLoader
from .vmlinux import VmlinuxInfo
from .workload import MemClass, ModuleInfo

COST_KEYS = ("text_pokes", "poke_bytes", "sync_ipis", "local_flushes", "shootdowns")
X86_MACHINES = (None, "x86_64")


def x86_tables(arch: ArchInfo) -> bool:
    """Whether ``arch`` runs x86-64 kernels (or any: the generic arch runs the x86 workloads),
    so that the x86 tables and instruction sizes a patcher models are the ones it has."""
    return arch.machine in X86_MACHINES


def section_span(info: ModuleInfo, name: str) -> tuple[MemClass, int, int] | None:
    """``(class, offset in the class, size)`` of section ``name``, or None if the module has none."""
    ends: dict[MemClass, int] = {}
    for sec in info.sections:
        align = sec.align or 1
        start = -(-ends.get(sec.mem_class, 0) // align) * align
        if sec.name == name:
            return sec.mem_class, start, sec.size
        ends[sec.mem_class] = start + sec.size
    return None


def spread(size: int, count: int, length: int) -> list[int]:
    """``count`` ascending offsets of ``length``-byte sites spread evenly over ``size`` bytes."""
    span = size - length
    if count <= 0 or span < 0:
        return []
    return [((2 * i + 1) * span) // (2 * count) for i in range(count)]


def class_bytes(info: ModuleInfo, cls: MemClass) -> int:
    """Bytes of the sections of class ``cls`` (no padding): where that class's sites can be."""
    return sum(sec.size for sec in info.sections if sec.mem_class == cls)


def vmlinux(machine: Machine) -> VmlinuxInfo:
    """The vmlinux facts of the machine's workload (the kernel the run models)."""
    loader = machine.state("module_loader", lambda: ModuleLoader(machine))
    found = loader.workload.vmlinux
    if found is None:
        raise SpecError(f"workload {loader.source.name} has no vmlinux facts (ingested without a vmlinuz)")
    return found


def vmlinux_text(machine: Machine) -> int:
    """Address of vmlinux's _text: the start of the arch's kernel_image range, which must hold
    the image (_text.._end) of the machine's workload."""
    image = machine.ranges.get("kernel_image")
    size = vmlinux(machine).image_size
    if image is None or image.size < size:
        raise PermallocError(f"arch {machine.arch.name}: no kernel_image range that holds vmlinux ({size:#x} bytes)")
    return image.start


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process (``hash()`` of a str is salted per run)."""
    return zlib.crc32(repr(parts).encode())


class PatchCost:
    """Counter deltas of the text patching done since it was created."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        counters = machine.metrics.counters
        self.start = {key: counters[key] for key in COST_KEYS}

    def delta(self) -> dict[str, int]:
        counters = self.m.metrics.counters
        return {key: int(counters[key] - self.start[key]) for key in COST_KEYS}

    def report(self, patcher: str, **fields: Any) -> dict[str, Any]:
        """``{"patcher": name, **fields, text_pokes, poke_bytes, sync_ipis, local_flushes, shootdowns}``."""
        return {"patcher": patcher, **fields, **self.delta()}
