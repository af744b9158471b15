"""The perm_alloc contract (RFC "New permission vmalloc interface", Nov 2020).

A caller asks for memory of a final permission, writes its content through a writable
address, and makes it live; it never sees a writable and executable mapping. Each step is
carried out by the arch backend through the arch hooks; this module checks the caller's
side of the contract and the backend's answers.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from permalloc.errors import ContractError
from permalloc.mechanisms.cpa import SET_MEMORY
from permalloc.model import events as ev
from permalloc.model.archinfo import VRange
from permalloc.model.perms import Perm
from permalloc.plugin.pluginmanager import answered_by

if TYPE_CHECKING:
    from permalloc.machine import Machine


class State(enum.Enum):
    STAGING = "staging"  # allocated, content being written
    LIVE = "live"  # finished: at its final permission
    FREED = "freed"


_ids = itertools.count(1)

# How long the caller expects an allocation to live (``alloc(..., lifetime=...)``): a hint the
# arch may use to group allocations (the RFC cover letter, idea 4: the "long lived 'core
# sections'" of modules packed together into 2 MiB pages) or ignore.
LIFETIMES = ("long", "short", "unknown")


@dataclass(eq=False)
class PermAllocation:
    """One perm_alloc allocation.

    ``addr``/``size``/``perm`` are what the caller sees; ``allocated`` is what it really
    costs (page rounding, guard-free slack, 2 MiB packing); ``backend`` is the arch's own
    record (vm areas, cache slots) and is opaque to callers. ``lifetime`` is the caller's
    hint (one of :data:`LIFETIMES`), set by the contract whatever the arch did with it.
    """

    addr: int
    size: int
    perm: Perm
    range_name: str
    allocated: int
    staging: int | None = None
    backend: dict[str, Any] = field(default_factory=dict)
    state: State = State.STAGING
    id: int = field(default_factory=lambda: next(_ids))
    lifetime: str = "unknown"

    @property
    def end(self) -> int:
        return self.addr + self.size


class PermAlloc:
    """The contract's entry points on one machine: ``alloc``, ``writable``, ``write``,
    ``finish``, ``change``, ``poke``, ``free`` and ``shrink``."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.live: dict[int, PermAllocation] = {}
        self._starts: list[tuple[int, int]] = []  # (addr, id) of the live allocations, sorted

    def alloc(self, size: int, perm: Perm | str, range_name: str = "module",
              lifetime: str = "unknown") -> PermAllocation:
        """Reserve ``size`` bytes that will end up ``perm`` in ``range_name``. ``lifetime``
        (``"long"``, ``"short"`` or ``"unknown"``) says how long the caller expects to keep
        it; the arch may group allocations by it or ignore it."""
        perm = Perm.parse(perm)
        if lifetime not in LIFETIMES:
            raise ContractError(f"alloc: lifetime must be one of {', '.join(map(repr, LIFETIMES))}, got {lifetime!r}")
        if size <= 0:
            raise ContractError(f"alloc: size must be positive, got {size}")
        if perm.is_wx:
            raise ContractError("alloc: a permission cannot be writable and executable (W^X)")
        if perm == Perm.NONE:
            raise ContractError("alloc: permission NONE cannot be allocated")
        vrange = self.m.range(range_name)
        alloc = self.m.call_arch("permalloc_alloc", machine=self.m, size=size, perm=perm, vrange=vrange,
                                 lifetime=lifetime)
        if alloc.size != size or alloc.perm != perm:
            raise ContractError(
                f"arch {self.m.arch.name}: permalloc_alloc answered size {alloc.size}/{alloc.perm} for {size}/{perm}"
            )
        alloc.lifetime = lifetime
        self._check_placement(alloc, vrange)
        self.live[alloc.id] = alloc
        bisect.insort(self._starts, (alloc.addr, alloc.id))
        self.m.emit(ev.ALLOC, 1, alloc.addr, source="perm_alloc", allocated=alloc.allocated, requested=size, id=alloc.id)
        return alloc

    def _check_placement(self, alloc: PermAllocation, vrange: VRange) -> None:
        """The answer of permalloc_alloc lies in the range asked for and overlaps no live
        allocation; otherwise the plugin that gave it is named now, not at some later write."""
        who = f"plugin {answered_by(self.m.pm, 'permalloc_alloc')!r}: permalloc_alloc"
        if not (vrange.start <= alloc.addr and alloc.end <= vrange.end):
            raise ContractError(f"{who} returned [{alloc.addr:#x}, {alloc.end:#x}), outside the {vrange.name} range "
                                f"[{vrange.start:#x}, {vrange.end:#x})")
        i = bisect.bisect_left(self._starts, (alloc.addr, 0))
        for j in (i - 1, i):  # the live neighbours below and at/above addr
            if 0 <= j < len(self._starts):
                other = self.live[self._starts[j][1]]
                if other.addr < alloc.end and alloc.addr < other.end:
                    raise ContractError(f"{who} returned [{alloc.addr:#x}, {alloc.end:#x}), which overlaps live "
                                        f"allocation {other.id} at [{other.addr:#x}, {other.end:#x})")

    def _check(self, alloc: PermAllocation, step: str, *states: State) -> None:
        if alloc.state not in states:
            raise ContractError(f"{step}: allocation {alloc.id} at {alloc.addr:#x} is {alloc.state.value}")

    def writable(self, alloc: PermAllocation) -> int:
        self._check(alloc, "writable", State.STAGING)
        return self.m.call_arch("permalloc_writable", machine=self.m, alloc=alloc)

    def write(self, alloc: PermAllocation, offset: int, length: int) -> None:
        """Store ``length`` bytes at ``offset`` through the writable address (before finish)."""
        self._check(alloc, "write", State.STAGING)
        if offset < 0 or length <= 0 or offset + length > alloc.size:
            raise ContractError(f"write: [{offset}, {offset + length}) is outside the {alloc.size}-byte allocation")
        base = self.writable(alloc)
        self.m.store(base + offset, length, source="perm_writable")

    def write_sites(self, alloc: PermAllocation, offsets: list[int], length: int, source: str = "perm_writable") -> None:
        """``length`` bytes at each of ``offsets`` (table entries, patch sites): one check of
        every page touched and one store event for all of them."""
        self._check(alloc, "write", State.STAGING)
        if not offsets or length <= 0:
            return
        lo, hi = min(offsets), max(offsets) + length
        if lo < 0 or hi > alloc.size:
            raise ContractError(f"write: [{lo}, {hi}) is outside the {alloc.size}-byte allocation")
        base = self.writable(alloc)
        self.m.store_sites([base + offset for offset in offsets], length, source=source)

    def finish(self, alloc: PermAllocation) -> None:
        self._check(alloc, "finish", State.STAGING)
        self.m.call_arch("permalloc_finish", machine=self.m, alloc=alloc)
        alloc.state = State.LIVE
        self.m.emit(ev.FINISH, 1, alloc.addr, source="perm_finish", id=alloc.id)

    def change(self, alloc: PermAllocation, perm: Perm | str) -> None:
        perm = Perm.parse(perm)
        self._check(alloc, "change", State.LIVE)
        if perm.is_wx or perm == Perm.NONE:
            raise ContractError(f"change: {perm} is not a permission an allocation can have")
        if perm != alloc.perm:
            self.m.call_arch("permalloc_change", machine=self.m, alloc=alloc, perm=perm)
            alloc.perm = perm
            self.m.emit(ev.CHANGE, 1, alloc.addr, source="perm_change", id=alloc.id)

    def poke(self, alloc: PermAllocation, offset: int, length: int) -> None:
        self._check(alloc, "poke", State.LIVE)
        if offset < 0 or length <= 0 or offset + length > alloc.size:
            raise ContractError(f"poke: [{offset}, {offset + length}) is outside the {alloc.size}-byte allocation")
        self.m.call_arch("permalloc_poke", machine=self.m, alloc=alloc, offset=offset, length=length)

    def free(self, alloc: PermAllocation) -> None:
        self._check(alloc, "free", State.STAGING, State.LIVE)
        self.m.call_arch("permalloc_free", machine=self.m, alloc=alloc)
        alloc.state = State.FREED
        del self.live[alloc.id]
        del self._starts[bisect.bisect_left(self._starts, (alloc.addr, alloc.id))]
        self.m.emit(ev.FREE, 1, alloc.addr, source="perm_free", allocated=alloc.allocated, requested=alloc.size,
                    id=alloc.id)

    def shrink(self, pages: int) -> int:
        if pages < 0:
            raise ContractError("shrink: pages must be >= 0")
        return self.m.call_arch("permalloc_shrink", machine=self.m, pages=pages)

    def set_memory(self, name_or_masks: str, addr: int, npages: int) -> None:
        """``set_memory_*`` for consumers that follow a kernel calling it directly."""
        if name_or_masks not in SET_MEMORY:
            raise ContractError(f"unknown set_memory call {name_or_masks!r}; known: {sorted(SET_MEMORY)}")
        set_mask, clear_mask = SET_MEMORY[name_or_masks]
        self.m.call_arch(
            "permalloc_set_memory", machine=self.m, addr=addr, npages=npages,
            set_mask=set_mask, clear_mask=clear_mask, source=name_or_masks,
        )
