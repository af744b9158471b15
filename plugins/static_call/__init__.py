"""Inline static calls of a module: one text_poke_bp per call site when the module comes.

kernel/static_call_inline.c:static_call_module_notify (6.1 l.432; 6.12 l.443) ->
static_call_add_module (6.1 l.353; 6.12 l.364) at MODULE_STATE_COMING, after the jump
labels:

* the ``.static_call_sites`` table (``struct static_call_site {s32 addr; s32 key}``,
  writable data) is fixed up (keys given through ``.static_call_tramp_key``), sorted by key
  and init sites marked (__static_call_init, 6.1 l.209): table writes on RW data, modelled
  as one rewrite of the table (``8 n`` bytes) on the staged copy, like the other tables;
* then arch_static_call_transform(site, NULL, key->func, tail) for **every** site
  (arch/x86/kernel/static_call.c 6.1 l.155; 6.12 l.157) -> __static_call_transform (6.1
  l.52): the module was compiled with ``call __SCT__<key>`` (the trampoline) and the new
  code is a direct ``call func`` (or NOP/JMP/RET, 5 bytes; 6 for a Jcc tail call), so the
  bytes differ and, ``modinit`` being hard-coded false and the system running,
  ``text_poke_bp`` patches the site: a batch of one, 3 pokes and 3 sync IPI rounds per site.
  The module's text is RO+X by then, in 6.1 and 6.12 alike, so no policy avoids this cost.

Going: static_call_del_module (6.1 l.392) frees the module's static_call_mods; no text
writes. Run-time static_call_update is not an op of the issue and is not modelled.

Assumptions: every site is a 5-byte call (Jcc tail calls are rare), spread evenly over the
module's core text (the workload has no site addresses; init-text sites are not told apart).
"""

from __future__ import annotations

from typing import Any

from permalloc import ArchInfo, Machine, hookimpl
from permalloc.plugins.module_loader.patching import PatchCost, class_bytes, section_span, spread, x86_tables
from permalloc.plugins.module_loader.workload import MemClass

__version__ = "1.0"

STATIC_CALL_SITE_SIZE = 8  # struct static_call_site {s32 addr; s32 key}
CALL_INSN_SIZE = 5


def _state(machine: Machine) -> dict[str, int]:
    """Module -> static call sites registered (its static_call_mod records)."""
    return machine.state("static_call", dict)


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # inline static calls (.static_call_sites): HAVE_STATIC_CALL_INLINE, x86 only


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    sites = module.info.table(".static_call_sites")
    span = section_span(module.info, ".static_call_sites")
    if not sites or span is None:
        return None
    cost = PatchCost(machine)
    length = min(span[2], sites * STATIC_CALL_SITE_SIZE)
    staging.store(span[0], span[1], length, "static_call_sort_entries")
    return cost.report("static_call", stage="finalize", writes=1, bytes=length, entries=sites)


@hookimpl
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    sites = module.info.table(".static_call_sites")
    if not sites:
        return None
    cost = PatchCost(machine)
    offsets = spread(class_bytes(module.info, MemClass.TEXT), sites, CALL_INSN_SIZE)
    for offset in offsets:
        addr = module.address(MemClass.TEXT, offset)
        machine.text.live([(addr, CALL_INSN_SIZE)], source="arch_static_call_transform/text_poke_bp")
    _state(machine)[module.name] = len(offsets)
    return cost.report("static_call", stage="coming", writes=len(offsets), bytes=len(offsets) * CALL_INSN_SIZE,
                       batches=len(offsets))


@hookimpl
def permalloc_module_going(machine: Machine, module: Any) -> None:
    _state(machine).pop(module.name, None)
