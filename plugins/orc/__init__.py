"""ORC unwind tables of a module: the in-place sort at load time.

arch/x86/kernel/unwind_orc.c:unwind_module_init (6.1 l.243; 6.12 l.289), called last by
arch/x86/kernel/module.c:module_finalize, sorts ``.orc_unwind_ip`` (4-byte self-relative
ips) and swaps the matching 6-byte ``struct orc_entry`` of ``.orc_unwind``
(orc_sort_swap) while the module is still UNFORMED. Both tables are objtool-made SHF_ALLOC
read-only sections (rodata class), written in place before module_enable_ro; nothing
patches them at run time or at unload.

Counted per module: the sort modelled as a full rewrite of both tables (the number of swaps
depends on the layout; the kernel notes, section B.3, model it this way): 2 writes of
``4 n`` and ``6 n`` bytes, with ``n`` the ``.orc_unwind_ip`` entry count of the workload.
Under the RFC the writes land in the staging buffer; without one they are plain stores into
the final mapping, which is still RW+NX. No text is touched, so no flush and no IPI.
"""

from __future__ import annotations

from typing import Any

from permalloc import ArchInfo, Machine, hookimpl
from permalloc.plugins.module_loader.patching import PatchCost, section_span, x86_tables

__version__ = "1.0"

ORC_IP_SIZE = 4  # int, self-relative (unwind_orc.c: num_entries = orc_ip_size / sizeof(int))
ORC_ENTRY_SIZE = 6  # struct orc_entry {s16 sp_offset; s16 bp_offset; u16 bits} __packed


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # ORC unwind tables: CONFIG_UNWINDER_ORC, arch/x86/kernel/unwind_orc.c only


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    entries = module.info.table(".orc_unwind_ip")
    if not entries:
        return None
    cost = PatchCost(machine)
    writes = nbytes = 0
    for name, size in ((".orc_unwind_ip", ORC_IP_SIZE), (".orc_unwind", ORC_ENTRY_SIZE)):
        span = section_span(module.info, name)
        if span is None:
            continue
        cls, offset, sec_size = span
        length = min(entries * size, sec_size)
        staging.store(cls, offset, length, "unwind_module_init/sort")
        writes += 1
        nbytes += length
    return cost.report("orc", stage="finalize", writes=writes, bytes=nbytes, entries=entries)
