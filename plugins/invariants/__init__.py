"""Invariants as an observer: W^X across aliases, and nothing leaked at teardown.

A page breaks W^X when it is writable through one alias (its vmalloc mapping, its
direct-map entry, a stale TLB entry) while executable through another, once a kernel
operation is complete: the states inside one CPA call or one vm_reset_perms (which the
kernel finishes, flush included, before anyone uses the memory) are judged at its end. The per-CPU
temporary mapping of text_poke (or the fixmap slot of an arm64-style patcher) is writable
by design; it is allowed, and counted. Each
time a page enters the W+X state a ``wx_violation`` event is emitted; with
``Machine(strict=True)`` it raises instead.
"""

from __future__ import annotations

from typing import Any

from permalloc import Event, InvariantViolation, Machine, hookimpl, watching
from permalloc.model import events as ev

__version__ = "1.0"

_ALIAS_EVENTS = frozenset(
    {ev.MAP, ev.UNMAP, ev.PTE_PERM, ev.DIRECTMAP_PERM, ev.FLUSH_RANGE, ev.FLUSH_ALL, ev.TLBI_RANGE, ev.TLBI_ALL,
     ev.PAGE_FREE}
)


_POKES = frozenset({ev.TEXT_POKE, ev.TEXT_WRITE})
_WATCHED = _ALIAS_EVENTS | _POKES | {ev.SETTLED}


class _State:
    def __init__(self) -> None:
        self.wx_pages: set[int] = set()
        self.poke_aliases = 0
        self.pending: set[int] = set()  # pages touched inside an atomic kernel operation


def _state(machine: Machine) -> _State:
    return machine.state("invariants", _State)


@hookimpl
def permalloc_machine_start(machine: Machine) -> None:
    _state(machine)


@hookimpl
@watching(*_WATCHED)
def permalloc_event(machine: Machine, event: Event) -> None:
    kind = event.kind
    if kind in _POKES:
        _state(machine).poke_aliases += event.extra.get("times", 1) if event.extra else 1
        return
    state = _state(machine)
    if kind == ev.SETTLED:
        pfns, state.pending = state.pending, set()
    elif kind not in _ALIAS_EVENTS or not event.pfns:
        return
    elif machine.atomic_depth:
        state.pending.update(event.pfns)  # judged when the kernel operation is complete
        return
    else:
        pfns = event.pfns
    entered = []
    for pfn in pfns:
        w, x = machine.page_access(pfn)
        if w and x:
            if pfn not in state.wx_pages:
                state.wx_pages.add(pfn)
                entered.append(pfn)
        else:
            state.wx_pages.discard(pfn)
    if entered:
        if machine.strict:
            raise InvariantViolation(
                f"W^X: {len(entered)} page(s) writable and executable after {kind} "
                f"({event.source or 'no source'}) at {event.addr:#x}, pfn {entered[0]:#x}"
            )
        machine.emit(ev.WX_VIOLATION, len(entered), event.addr, source=event.source)


@hookimpl(trylast=True)
def permalloc_machine_teardown(machine: Machine) -> list[str]:
    """Runs after every other teardown: everything must be back where it started."""
    machine.vmalloc.purge(source="teardown")
    problems = []
    live = len(machine.perm.live) - machine.baseline["perm_allocs"]
    if live:
        problems.append(f"{live} perm_alloc allocation(s) still live")
    leaked = machine.phys.allocated_pages - machine.page_cache.explicit - machine.baseline["allocated_pages"]
    if leaked:
        problems.append(f"{leaked} physical page(s) leaked")
    mappings = len(machine.pagetables) - machine.baseline["mappings"]
    if mappings:
        problems.append(f"{mappings} kernel mapping(s) leaked")
    areas = machine.busy_areas() - machine.baseline["areas"]
    if areas:
        busy = sorted({space.range.name for space in machine.spaces.values() if len(space)})
        problems.append(f"{areas} area(s) of the {'/'.join(busy)} range(s) leaked")
    changed = machine.directmap.nondefault_pages() - machine.baseline["directmap_nondefault"]
    if changed:
        problems.append(f"{changed} direct-map page(s) left with changed permissions")
    if machine.strict and problems:
        raise InvariantViolation("leak at teardown: " + "; ".join(problems))
    return problems


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any]:
    return {"invariants": {"poke_alias_moments": _state(machine).poke_aliases, "wx_pages_now": len(_state(machine).wx_pages)}}
