"""SMP lock prefixes of a module (``.smp_locks``): rewritten only on a kernel patched for UP.

arch/x86/kernel/module.c:module_finalize (6.1 l.251; 6.12 l.223) hands ``.smp_locks`` and
the module's text range to arch/x86/kernel/alternative.c:alternatives_smp_module_add (6.1
l.938), which does nothing unless ``uniproc_patched``. That flag is set at boot only when
one CPU is present (alternative_instructions, 6.1 l.1217: ``num_present_cpus() == 1 ||
setup_max_cpus <= 1``). Then alternatives_smp_unlock (6.1 l.904) turns every ``lock``
prefix (0xf0) inside the text range into a DS prefix with ``text_poke(ptr, 0x3e, 1)``: one
byte per entry through the temporary poking mm (a local flush each, no IPI).

So on an SMP machine (``cpus > 1``) a module load writes nothing here (0 writes, counted as
such); on a one-CPU machine every entry costs a 1-byte write. Without a staging buffer that
write is a text_poke into the still-RW final mapping, as the kernel does; with the RFC's
staging buffer it is a plain store to the staged copy. Every site is assumed to be a
``lock`` prefix inside the core ``.text`` (the workload has no per-entry addresses).
"""

from __future__ import annotations

from typing import Any

from permalloc import ArchInfo, Machine, hookimpl
from permalloc.plugins.module_loader.patching import PatchCost, class_bytes, spread, x86_tables
from permalloc.plugins.module_loader.workload import MemClass

__version__ = "1.0"

LOCK_PREFIX_PATCH = 1  # text_poke(ptr, {0x3E}, 1)


def uniproc_patched(machine: Machine) -> bool:
    """alternative_instructions: UP-patched when a single CPU is present."""
    return machine.spec.cpus == 1


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # .smp_locks LOCK prefixes: arch/x86/kernel/alternative.c only


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    entries = module.info.table(".smp_locks")
    if not entries:
        return None
    cost = PatchCost(machine)
    writes = 0
    if uniproc_patched(machine):
        final = module.address(MemClass.TEXT)
        staged = staging.writable(MemClass.TEXT)
        for offset in spread(class_bytes(module.info, MemClass.TEXT), entries, LOCK_PREFIX_PATCH):
            if staged is not None and staged != final:
                staging.store(MemClass.TEXT, offset, LOCK_PREFIX_PATCH, "alternatives_smp_unlock")
            else:
                machine.text.poke(final + offset, LOCK_PREFIX_PATCH, source="alternatives_smp_unlock/text_poke")
            writes += 1
    return cost.report("smp_locks", stage="finalize", writes=writes, bytes=writes * LOCK_PREFIX_PATCH, entries=entries)
