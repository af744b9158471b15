"""Events: every primitive operation of the machine emits one, with its cost.

Metrics are folded from events (metrics.py) and observer plugins receive each one through
``permalloc_event``. An event is cheap (slots, no validation): a run emits millions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Event kinds. Observers and the trace writer see these names.
PAGE_ALLOC = "page_alloc"  # n order-0 pages (or one order-9 block: n=512, order=9)
PAGE_FREE = "page_free"
MAP = "map"  # n PTEs written in kernel page tables
UNMAP = "unmap"
PTE_PERM = "pte_perm"  # n PTEs changed permission in kernel page tables
DIRECTMAP_PERM = "directmap_perm"  # n direct-map entries changed permission
SPLIT_1G = "split_1g"
SPLIT_2M = "split_2m"
COLLAPSE_2M = "collapse_2m"
VMAP_SPLIT_2M = "vmap_split_2m"  # a 2 MiB leaf in vmalloc/module space split to 4 KiB
VMAP_COLLAPSE_2M = "vmap_collapse_2m"  # 512 PTEs in vmalloc/module space collapsed into a 2 MiB leaf
FLUSH_LOCAL = "flush_local"  # this CPU only (n pages, or all when full=True)
FLUSH_RANGE = "flush_range"  # all CPUs, per-page INVLPG via IPI (flush_tlb_kernel_range)
FLUSH_ALL = "flush_all"  # all CPUs, full flush via IPI (flush_tlb_all)
TLBI_RANGE = "tlbi_range"  # all CPUs, per-page invalidation broadcast by hardware (arm64 TLBI IS, AMD INVLPGB)
TLBI_ALL = "tlbi_all"  # all CPUs, full invalidation broadcast by hardware
SYNC_IPI = "sync_ipi"  # text_poke_sync: on_each_cpu(do_sync_core)
TEXT_POKE = "text_poke"  # writes through the per-CPU temporary alias, each with its local flush
#                          (n bytes; extra "times": how many __text_poke calls, default 1)
TEXT_WRITE = "text_write"  # writes through a shared patching alias (fixmap), whose flush is its own event
STOP_MACHINE = "stop_machine"  # every other CPU is woken to spin in the stopper while one patches
STORE = "store"  # plain stores through a writable mapping (staging writes)
ALLOC = "alloc"  # a contract allocation came to life (requested/allocated bytes)
FREE = "free"
FINISH = "finish"  # a contract allocation reached its final permission (extra "id": the allocation's)
CHANGE = "change"  # a live contract allocation's permission was changed (extra "id")
WX_VIOLATION = "wx_violation"  # a page became writable and executable through some aliases
CONTRACT_VIOLATION = "contract_violation"  # n pages a finish, change or free left off the contract
RELOC_OUT_OF_RANGE = "reloc_out_of_range"
SET_MEMORY = "set_memory"  # a set_memory_* / change_page_attr_set_clr call (n pages; source: the function)
NOTE = "note"  # free-form marker from a plugin (no cost)
SETTLED = "settled"  # the end of an operation that the kernel completes before anyone looks



@dataclass(frozen=True)
class EventKind:
    """What an event of one kind means for the metrics (a registry entry).

    ``counters``: metrics it adds to per event (times the event's ``times``, e.g. the pokes
    of a batched text_poke step); ``unit_counter``: a metric it adds ``n`` to; ``ipi_round``:
    it interrupts every other CPU once (``ipis`` += cpus - 1), and ``ipi_counter`` names the metric
    that also counts those IPIs by purpose (``flush_ipis`` for TLB flush rounds); ``cost``: (ns per event, ns per
    unit of ``n``) from the cost model and the CPU count. The core registers its own kinds;
    plugins add theirs through ``permalloc_event_kinds``.
    """

    name: str
    description: str = ""
    counters: tuple[tuple[str, int], ...] = ()
    unit_counter: str | None = None
    ipi_round: bool = False
    ipi_counter: str | None = None
    cost: Callable[[Any, int], tuple[float, float]] | tuple[float, float] = (0.0, 0.0)


def _round(cost: Any, cpus: int) -> tuple[float, float]:
    return cost.shootdown_ns + cost.shootdown_per_cpu_ns * (cpus - 1), 0.0


def _per(field_name: str) -> Callable[[Any, int], tuple[float, float]]:
    return lambda cost, cpus: (0.0, getattr(cost, field_name))


CORE_KINDS: tuple[EventKind, ...] = (
    EventKind(PAGE_ALLOC, "pages taken from the page allocator", cost=_per("page_alloc_ns")),
    EventKind(PAGE_FREE, "pages given back to the page allocator"),
    EventKind(MAP, "PTEs written in kernel page tables", cost=_per("pte_update_ns")),
    EventKind(UNMAP, "PTEs cleared (their translations stay cached until a flush)", cost=_per("pte_update_ns")),
    EventKind(PTE_PERM, "PTE permissions changed", cost=_per("pte_update_ns")),
    EventKind(DIRECTMAP_PERM, "direct-map entries changed", cost=_per("pte_update_ns")),
    EventKind(SPLIT_1G, "1 GiB -> 2 MiB direct-map splits", unit_counter="directmap_splits_1g", cost=_per("split_ns")),
    EventKind(SPLIT_2M, "2 MiB -> 4 KiB direct-map splits", unit_counter="directmap_splits_2m", cost=_per("split_ns")),
    EventKind(COLLAPSE_2M, "direct-map 2 MiB collapses"),
    EventKind(VMAP_SPLIT_2M, "vmalloc-space 2 MiB leaves split", cost=_per("split_ns")),
    EventKind(VMAP_COLLAPSE_2M, "vmalloc-space PTEs collapsed to a 2 MiB leaf", cost=_per("split_ns")),
    EventKind(FLUSH_LOCAL, "a flush on this CPU only", counters=(("local_flushes", 1),), cost=_per("local_flush_page_ns")),
    EventKind(FLUSH_RANGE, "all-CPU range flush through IPIs", counters=(("shootdowns", 1),), ipi_round=True,
              ipi_counter="flush_ipis", cost=_round),
    EventKind(FLUSH_ALL, "all-CPU full flush through IPIs", counters=(("shootdowns", 1),), ipi_round=True,
              ipi_counter="flush_ipis", cost=_round),
    EventKind(TLBI_RANGE, "all-CPU range invalidation broadcast by hardware", counters=(("shootdowns", 1),),
              cost=lambda cost, cpus: (cost.broadcast_flush_ns, 0.0)),
    EventKind(TLBI_ALL, "all-CPU full invalidation broadcast by hardware", counters=(("shootdowns", 1),),
              cost=lambda cost, cpus: (cost.broadcast_flush_ns, 0.0)),
    EventKind(SYNC_IPI, "text-patching sync round (IPIs to every other CPU)", counters=(("sync_ipis", 1),),
              ipi_round=True, cost=_round),
    # __text_poke ends with a flush of poking_mm on this CPU: one local flush per poke
    EventKind(TEXT_POKE, "writes through the text patching alias, each with its local flush",
              counters=(("text_pokes", 1), ("local_flushes", 1)), unit_counter="poke_bytes",
              cost=lambda cost, cpus: (cost.text_poke_ns + cost.local_flush_page_ns, cost.poke_byte_ns)),
    # arch/arm64/kernel/patching.c: __aarch64_insn_write maps FIX_TEXT_POKE0, writes, clears it;
    # clear_fixmap's flush_tlb_kernel_range is emitted by the arch's TLB mechanism
    EventKind(TEXT_WRITE, "writes through the fixmap patching alias", counters=(("text_pokes", 1),),
              unit_counter="poke_bytes", cost=lambda cost, cpus: (cost.text_poke_ns, cost.poke_byte_ns)),
    # kernel/stop_machine.c: stop_machine_cpuslocked wakes the stopper thread of every CPU
    EventKind(STOP_MACHINE, "stop_machine rendezvous of every CPU (IPIs to every other CPU)",
              counters=(("sync_ipis", 1),), ipi_round=True, cost=_round),
    EventKind(STORE, "plain stores through a writable mapping"),
    EventKind(ALLOC, "a contract allocation came to life"),
    EventKind(FREE, "a contract allocation was freed"),
    EventKind(FINISH, "a contract allocation was made live at its final permission"),
    EventKind(CHANGE, "a live contract allocation's permission was changed"),
    EventKind(WX_VIOLATION, "pages writable and executable through some aliases", unit_counter="wx_violations"),
    EventKind(CONTRACT_VIOLATION, "pages an arch's finish, change or free left off the contract",
              unit_counter="contract_violations"),
    EventKind(RELOC_OUT_OF_RANGE, "relocations out of reach", unit_counter="reloc_out_of_range"),
    EventKind(SET_MEMORY, "a set_memory_* call"),
    EventKind(NOTE, "a marker from a plugin"),
    EventKind(SETTLED, "the end of a kernel operation (invariants are checked)"),
)
KINDS = tuple(kind.name for kind in CORE_KINDS)


@dataclass(slots=True)
class Event:
    """One primitive operation.

    ``n`` is the count it applies to (pages, entries, bytes for pokes and stores), ``addr``
    the virtual address when there is one, ``pfns`` the physical pages whose aliases it
    changed (what the W^X checker looks at), ``source`` who asked for it (e.g.
    ``set_memory_ro``, ``vm_reset_perms``), ``cost_ns`` the cost model's estimate.
    """

    kind: str
    n: int = 1
    addr: int = 0
    pfns: tuple[int, ...] | None = None
    source: str = ""
    cost_ns: float = 0.0
    seq: int = 0
    op_index: int = -1
    extra: dict[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "op": self.op_index, "kind": self.kind, "n": self.n}
        if self.addr:
            out["addr"] = hex(self.addr)
        if self.source:
            out["source"] = self.source
        if self.pfns:
            out["pfns"] = len(self.pfns)
        out["cost_ns"] = round(self.cost_ns, 1)
        if self.extra:
            out.update(self.extra)
        return out
