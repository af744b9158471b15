"""Events: every primitive operation of the machine emits one, with its cost.

Metrics are folded from events (metrics.py) and observer plugins receive each one through
``permalloc_event``. An event is cheap (slots, no validation): a run emits millions.
"""

from __future__ import annotations

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
SYNC_IPI = "sync_ipi"  # text_poke_sync: on_each_cpu(do_sync_core)
TEXT_POKE = "text_poke"  # writes through the per-CPU temporary alias, each with its local flush
#                          (n bytes; extra "pokes": how many __text_poke calls, default 1)
STORE = "store"  # plain stores through a writable mapping (staging writes)
ALLOC = "alloc"  # a contract allocation came to life (requested/allocated bytes)
FREE = "free"
WX_VIOLATION = "wx_violation"  # a page became writable and executable through some aliases
RELOC_OUT_OF_RANGE = "reloc_out_of_range"
SET_MEMORY = "set_memory"  # a set_memory_* / change_page_attr_set_clr call (n pages; source: the function)
NOTE = "note"  # free-form marker from a plugin (no cost)
SETTLED = "settled"  # the end of an operation that the kernel completes before anyone looks

KINDS = (
    PAGE_ALLOC, PAGE_FREE, MAP, UNMAP, PTE_PERM, DIRECTMAP_PERM, SPLIT_1G, SPLIT_2M,
    COLLAPSE_2M, VMAP_SPLIT_2M, VMAP_COLLAPSE_2M, FLUSH_LOCAL, FLUSH_RANGE, FLUSH_ALL, SYNC_IPI, TEXT_POKE,
    STORE, ALLOC, FREE, WX_VIOLATION, RELOC_OUT_OF_RANGE, SET_MEMORY, NOTE, SETTLED,
)  # fmt: skip


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
