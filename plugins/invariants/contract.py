"""The perm_alloc contract as an observer: what each step of an arch leaves behind.

The W^X checker (this package's ``__init__``) watches every alias change; this observer
judges the arch's answer to each contract step, once the step is over:

* after ``finish`` and ``change``: every page of the allocation is mapped at its final
  address with exactly the permission asked for, and no alias of it (the direct map, another
  linear map, a staging or writable vmalloc alias, a stale TLB entry:
  ``machine.page_access``) is writable while it is executable;
* after ``free``: no page of it that the free gave back to the page allocator is still
  mapped in module/vmalloc space or cached executable in a TLB. That is what the
  kernel guarantees for permissioned memory: mm/vmalloc.c vm_reset_perms (VM_FLUSH_RESET_PERMS)
  flushes the aliases before vm_remove_mappings' caller frees the pages. Pages an arch keeps
  in its own cache (the RFC's blocks and live ranges, packs, the ROX cache) are still the
  arch's: they are not judged at free.

A step is judged when its contract event (``finish``, ``change``, ``free``) is emitted; a
step taken inside a kernel operation (``machine.atomic``) is judged when the operation is
complete (``settled``), as the W^X checker does. The pages at fault are counted in
``contract_violations`` (one ``contract_violation`` event per step at fault); with
``Machine(strict=True)`` the first raises InvariantViolation naming the plugin whose
implementation answered the hook.
"""

from __future__ import annotations

from typing import Any

from permalloc import Event, InvariantViolation, Machine, Perm, hookimpl, watching
from permalloc.model import events as ev
from permalloc.plugin.contract import PermAllocation
from permalloc.plugin.pluginmanager import answered_by

__version__ = "1.0"

_HOOKS = {ev.FINISH: "permalloc_finish", ev.CHANGE: "permalloc_change", ev.FREE: "permalloc_free"}
_WATCHED = frozenset({ev.ALLOC, ev.PAGE_FREE, ev.SETTLED, *_HOOKS})
_KEPT = 5  # violation lines kept for the result's extra


class _State:
    def __init__(self) -> None:
        self.pfns: dict[int, list[int]] = {}  # allocation id -> the pages of its final mapping
        self.freed: set[int] = set()  # pages given back to the page allocator since the last step
        self.pending: list[tuple[str, str, int, int, int, Any]] = []  # steps taken inside machine.atomic
        self.lines: list[str] = []


def _state(machine: Machine) -> _State:
    return machine.state("contract", _State)


def _mapped(machine: Machine, alloc: PermAllocation) -> list[tuple[int | None, int]]:
    return machine.pagetables.pages(alloc.addr, alloc.end)


@hookimpl
@watching(*_WATCHED)
def permalloc_event(machine: Machine, event: Event) -> None:
    kind = event.kind
    state = _state(machine)
    if kind == ev.PAGE_FREE:
        if event.pfns:
            state.freed.update(event.pfns)
        return
    if kind == ev.SETTLED:
        if state.pending and not machine.atomic_depth:
            steps, state.pending = state.pending, []
            for step in steps:
                _judge(machine, *step)
        return
    alloc_id = event.extra.get("id") if event.extra else None
    if alloc_id is None:
        return  # a consumer's own accounting (bpf_prog_pack's alloc and free events), not a contract step
    if kind == ev.ALLOC:
        alloc = machine.perm.live[alloc_id]
        state.pfns[alloc_id] = [pfn for pfn, _ in _mapped(machine, alloc) if pfn is not None]
        state.freed.clear()
        return
    hook = _HOOKS[kind]
    plugin = answered_by(machine.pm, hook)
    if kind == ev.FREE:
        given = [pfn for pfn in state.pfns.pop(alloc_id, ()) if pfn in state.freed]
        step: tuple[str, str, int, int, int, Any] = (plugin, hook, alloc_id, event.addr,
                                                    event.extra["requested"], given)
    else:
        alloc = machine.perm.live[alloc_id]
        step = (plugin, hook, alloc_id, alloc.addr, alloc.size, alloc)
    state.freed.clear()
    if machine.atomic_depth:
        state.pending.append(step)  # judged when the kernel operation is complete
    else:
        _judge(machine, *step)


def _judge(machine: Machine, plugin: str, hook: str, alloc_id: int, addr: int, size: int, what: Any) -> None:
    """One step's answer: count the pages it left off the contract, or raise under strict."""
    faults = _freed_faults(machine, what) if hook == "permalloc_free" else _live_faults(machine, what)
    if not faults:
        return
    pages = len({pfn for _, pfns in faults for pfn in pfns})
    where = f"allocation {alloc_id} at [{addr:#x}, {addr + size:#x})"
    line = f"plugin {plugin!r}: {hook} left " + "; ".join(f"{len(pfns)} page(s) of {where} {how}" for how, pfns in faults)
    if machine.strict:
        raise InvariantViolation(line)
    state = _state(machine)
    if len(state.lines) < _KEPT:
        state.lines.append(line)
    machine.emit(ev.CONTRACT_VIOLATION, pages, addr, source=hook, plugin=plugin)


def _live_faults(machine: Machine, alloc: PermAllocation) -> list[tuple[str, list[Any]]]:
    """After finish or change: the final mapping has exactly ``alloc.perm`` and no page of it
    is writable through one alias while executable through another."""
    want = int(alloc.perm)
    pages = _mapped(machine, alloc)
    wrong: dict[int, list[Any]] = {}  # perm bits as mapped (-1: not mapped) -> the pages
    for index, (pfn, perm) in enumerate(pages):
        if pfn is None:
            wrong.setdefault(-1, []).append(("unmapped", index))
        elif perm != want:
            wrong.setdefault(perm, []).append(pfn)
    mapped = [pfn for pfn, _ in pages if pfn is not None]
    _state(machine).pfns[alloc.id] = mapped  # what a later free gives back
    faults = [(("not mapped" if perm == -1 else f"mapped {Perm(perm)}") + f" (asked {alloc.perm})", at)
              for perm, at in sorted(wrong.items())]
    wx = [pfn for pfn in mapped if all(machine.page_access(pfn))]
    if wx:
        faults.append(("writable through an alias while executable", wx))
    return faults


def _freed_faults(machine: Machine, given: list[int]) -> list[tuple[str, list[Any]]]:
    """After free: the pages given back to the page allocator have no vmalloc alias left and no
    executable translation cached in a TLB. A stale writable translation grants nothing the
    page's direct-map entry (RW+NX, the page allocator's default) does not: mm/vmalloc.c frees
    plain vmalloc pages before the lazy purge flushes them (free_vmap_area_noflush), and only
    memory whose permissions changed needs vm_reset_perms' flush first."""
    rmap, stale_x = machine.pagetables.rmap, machine.tlb.stale_x
    mapped = [pfn for pfn in given if pfn in rmap]
    executable = [pfn for pfn in given if pfn in stale_x]
    return [(how, pfns) for how, pfns in (
        ("given back to the page allocator still mapped in module/vmalloc space", mapped),
        ("given back to the page allocator with an executable translation still cached in a TLB", executable),
    ) if pfns]


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any]:
    return {"contract": {"violations": list(_state(machine).lines)}}
