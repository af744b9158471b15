"""Alternatives of a module at load time: paravirt, retpolines, returns, alternatives, ENDBR seal.

arch/x86/kernel/module.c:module_finalize (6.1 l.251; 6.12 l.223) runs, on the module while
it is UNFORMED and still RW+NX, the rewrites of arch/x86/kernel/alternative.c in this order:

=================== =========================== ===================================== =========
section             function                    what one entry writes                 modelled
=================== =========================== ===================================== =========
.parainstructions   apply_paravirt (6.1 l.1041) ``p->len`` bytes, every site          6.1 only
.retpoline_sites    apply_retpolines (6.1 l.711 the thunk call/jmp rewritten in       5 bytes
                    6.12 l.901)                 place (``len == insn.length``)
.return_sites       apply_returns (6.1 l.803;   ``jmp __x86_return_thunk`` -> ``ret;   5 bytes
                    6.12 l.993)                 int3...`` or ``jmp x86_return_thunk``
.altinstructions    apply_alternatives (6.1     ``instrlen`` bytes                    estimate
                    l.269; 6.12 l.583)
.ibt_endbr_seal     apply_ibt_endbr / 6.12      4 bytes                               4 bytes
                    apply_seal_endbr (l.1076)
=================== =========================== ===================================== =========

Every write is ``text_poke_early`` (6.1 l.1247; 6.12 l.1979): a plain memcpy, because the
module is not formed yet, into the final mapping, which is still writable. The RFC points
these writes at the staging buffer; either way they are plain stores (``staging.store``) with
no flush and no IPI.

Assumptions (the workload has entry counts, not the entries):

* Sites are spread evenly over the module's core text.
* CPU: an Intel server core with eIBRS that is affected by neither Retbleed nor ITS (say
  Sapphire Rapids), booted with Debian's defaults. spectre_v2=eibrs leaves
  X86_FEATURE_RETPOLINE clear, so patch_retpoline rewrites every thunk call into
  ``call/jmp *%reg`` (policy option ``alternatives.retpoline=true`` models a CPU that uses
  plain retpolines: patch_retpoline returns -1 and nothing is written); X86_FEATURE_RETHUNK is
  clear, so every return site becomes ``ret; int3 x4``; no ITS thunks (its_init_mod /
  its_fini_mod do nothing), no call-depth tracking (6.12 callthunks_patch_module_calls does
  nothing), no FineIBT. Debian 6.1 has ``CONFIG_X86_KERNEL_IBT`` off: its modules carry no
  ``.ibt_endbr_seal``.
* Retpoline sites are ``call``/``jmp rel32`` (5 bytes); Jcc thunk jumps (6 bytes) are rare.
* ``.parainstructions`` sites are ``call *pv_ops+off(%rip)`` (PARAVIRT_CALL, 6 bytes).
* Alternatives: one write per entry. 6.12 writes ``instrlen`` bytes for every entry; 6.1
  writes the selected ones and rewrites NOP padding of the others in place (optimize_nops),
  so one write per entry is an upper bound there. ``instrlen`` is not in the workload: it is
  estimated as the mean replacement length (``.altinstr_replacement`` bytes / entries,
  rounded up; the original is padded to at least that), 5 bytes when there is no
  replacement section. The 6.12 fix-up of ``instrlen`` in nested entries (a table write) is
  not counted.
* Policies that model a kernel older than 6.1 (``legacy``, ``rfc``: 5.10) follow the 6.1
  code minus the tables that kernel did not patch yet (see RETPOLINE_SITES_SINCE below).
* 6.12 has no paravirt step: paravirt calls became ``ALT_FLAG_DIRECT_CALL`` alternatives, so
  under a 6.12 policy the ``.parainstructions`` sites of the (6.1) workload are counted as
  alternatives of 6 bytes.
"""

from __future__ import annotations

import math
from typing import Any

from permalloc import ArchInfo, Machine, hookimpl
from permalloc.plugins.module_loader.patching import PatchCost, class_bytes, section_span, spread, x86_tables
from permalloc.plugins.module_loader.workload import MemClass

__version__ = "1.0"

PARAVIRT_SITE_LEN = 6  # paravirt_types.h 6.1 l.317 PARAVIRT_CALL: call *%[paravirt_opptr] (ff 15 rel32)
RETPOLINE_SITE_LEN = 5  # CALL/JMP rel32 (a Jcc rel32 would be 6)
RETURN_SITE_LEN = 5  # JMP32_INSN_SIZE: patch_return pads to insn.length with int3
ENDBR_SEAL_LEN = 4  # ENDBR64 -> poison (apply_ibt_endbr)
ALT_INSTRLEN_DEFAULT = 5  # estimate when the module has no .altinstr_replacement
# module_finalize learnt these tables in: apply_retpolines 5.16 ("x86/alternative: Implement
# .retpoline_sites support"), apply_returns 5.19 (retbleed), apply_ibt_endbr 5.18 (IBT). A
# policy that models an older kernel (the RFC era, 5.10) does not patch them.
RETPOLINE_SITES_SINCE = (5, 16)
RETURN_SITES_SINCE = (5, 19)
ENDBR_SEAL_SINCE = (5, 18)


def instrlen_estimate(info: Any, entries: int) -> int:
    span = section_span(info, ".altinstr_replacement")
    if span is None or not span[2] or not entries:
        return ALT_INSTRLEN_DEFAULT
    return max(1, math.ceil(span[2] / entries))


def plan(machine: Machine, info: Any) -> list[tuple[str, int, int]]:
    """``(kind, entries written, bytes per write)`` in module_finalize order for the modelled kernel."""
    v612 = machine.kernel >= (6, 12)
    paravirt = info.table(".parainstructions")
    alts = info.table(".altinstructions")
    retpoline_mode = bool(machine.policy.options.get("alternatives.retpoline", False))
    steps: list[tuple[str, int, int]] = []
    if not v612:
        steps.append(("paravirt", paravirt, PARAVIRT_SITE_LEN))
    if machine.kernel >= RETPOLINE_SITES_SINCE:
        # patch_retpoline returns -1 (no write) under plain retpolines
        steps.append(("retpolines", 0 if retpoline_mode else info.table(".retpoline_sites"), RETPOLINE_SITE_LEN))
    if machine.kernel >= RETURN_SITES_SINCE:
        steps.append(("returns", info.table(".return_sites"), RETURN_SITE_LEN))
    steps.append(("altinstructions", alts, instrlen_estimate(info, alts)))
    if v612:
        steps.append(("paravirt_alternatives", paravirt, PARAVIRT_SITE_LEN))
    if machine.kernel >= ENDBR_SEAL_SINCE:
        steps.append(("endbr_seal", info.table(".ibt_endbr_seal"), ENDBR_SEAL_LEN))
    return steps


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # x86's .altinstructions/.parainstructions/retpoline/return/IBT tables


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    steps = [step for step in plan(machine, module.info) if step[1]]
    if not steps:
        return None
    cost = PatchCost(machine)
    text = class_bytes(module.info, MemClass.TEXT)
    counts: dict[str, int] = {}
    writes = nbytes = 0
    for kind, entries, length in steps:
        offsets = spread(text, entries, length)
        staging.store_sites(MemClass.TEXT, offsets, length, f"text_poke_early/{kind}")
        counts[kind] = len(offsets)
        writes += len(offsets)
        nbytes += len(offsets) * length
    return cost.report("alternatives", stage="finalize", writes=writes, bytes=nbytes, **counts)
