"""Metric names (a public contract, DESIGN.md) and their folding from events."""

from __future__ import annotations

import statistics
from array import array
from collections.abc import Mapping

from . import events as ev
from .spec import CostModel

COUNTERS = (
    "shootdowns",
    "ipis",
    "sync_ipis",
    "local_flushes",
    "directmap_splits_1g",
    "directmap_splits_2m",
    "text_pokes",
    "poke_bytes",
    "reloc_out_of_range",
    "wx_violations",
    "cost_ns",
)
GAUGES = (
    "directmap_4k_bytes",
    "directmap_2m_bytes",
    "directmap_1g_bytes",
    "huge_mappings",
    "allocated_bytes",
    "requested_bytes",
)
# The order in which tables, CSV and JSON list them.
METRICS = (
    "shootdowns",
    "ipis",
    "sync_ipis",
    "local_flushes",
    "directmap_splits_1g",
    "directmap_splits_2m",
    "directmap_4k_bytes",
    "directmap_2m_bytes",
    "directmap_1g_bytes",
    "text_pokes",
    "poke_bytes",
    "huge_mappings",
    "allocated_bytes",
    "requested_bytes",
    "reloc_out_of_range",
    "wx_violations",
    "cost_ns",
)
DESCRIPTIONS = {
    "shootdowns": "all-CPU TLB flush rounds (range or full) sent to other CPUs",
    "ipis": "IPIs received by other CPUs (flush rounds x (cpus - 1), plus patching syncs)",
    "sync_ipis": "text-patching sync rounds (text_poke_bp-style)",
    "local_flushes": "flushes done on the local CPU only",
    "directmap_splits_1g": "1 GiB -> 2 MiB direct-map splits",
    "directmap_splits_2m": "2 MiB -> 4 KiB direct-map splits",
    "directmap_4k_bytes": "DirectMap4k of /proc/meminfo, at the end",
    "directmap_2m_bytes": "DirectMap2M of /proc/meminfo, at the end",
    "directmap_1g_bytes": "DirectMap1G of /proc/meminfo, at the end",
    "text_pokes": "text_poke operations",
    "poke_bytes": "bytes written through text_poke",
    "huge_mappings": "2 MiB leaves in module/vmalloc space, at the end",
    "allocated_bytes": "peak bytes of memory held by live allocations (pages, slack, caches)",
    "requested_bytes": "peak bytes that callers asked for",
    "reloc_out_of_range": "relocations that a layout left out of reach",
    "wx_violations": "moments when a page was writable and executable through any aliases",
    "cost_ns": "the cost model's estimate of time spent",
}


def event_cost(event: ev.Event, cost: CostModel, cpus: int) -> float:
    """The cost model's estimate for one event, in ns."""
    kind = event.kind
    if kind in (ev.FLUSH_RANGE, ev.FLUSH_ALL, ev.SYNC_IPI):
        return cost.shootdown_ns + cost.shootdown_per_cpu_ns * (cpus - 1)
    if kind == ev.FLUSH_LOCAL:
        return cost.local_flush_all_ns if event.extra and event.extra.get("full") else cost.local_flush_page_ns * event.n
    if kind in (ev.SPLIT_1G, ev.SPLIT_2M, ev.VMAP_SPLIT_2M):
        return cost.split_ns * event.n
    if kind in (ev.MAP, ev.UNMAP, ev.PTE_PERM, ev.DIRECTMAP_PERM):
        return cost.pte_update_ns * event.n
    if kind == ev.PAGE_ALLOC:
        return cost.page_alloc_ns * event.n
    if kind == ev.TEXT_POKE:
        return cost.text_poke_ns + cost.poke_byte_ns * event.n
    return 0.0


class Metrics:
    """Counters folded from events, plus per-op-kind samples of their deltas."""

    def __init__(self, cpus: int, cost: CostModel) -> None:
        self.cpus = cpus
        self.cost = cost
        self.counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.live_allocated = 0
        self.live_requested = 0
        self.peak_allocated = 0
        self.peak_requested = 0
        self._samples: dict[str, dict[str, array]] = {}

    def fold(self, event: ev.Event) -> None:
        c = self.counters
        kind = event.kind
        event.cost_ns = event_cost(event, self.cost, self.cpus)
        c["cost_ns"] += event.cost_ns
        if kind in (ev.FLUSH_RANGE, ev.FLUSH_ALL):
            c["shootdowns"] += 1
            c["ipis"] += self.cpus - 1
        elif kind == ev.SYNC_IPI:
            c["sync_ipis"] += 1
            c["ipis"] += self.cpus - 1
        elif kind == ev.FLUSH_LOCAL:
            c["local_flushes"] += 1
        elif kind == ev.SPLIT_1G:
            c["directmap_splits_1g"] += event.n
        elif kind == ev.SPLIT_2M:
            c["directmap_splits_2m"] += event.n
        elif kind == ev.TEXT_POKE:
            c["text_pokes"] += 1
            c["poke_bytes"] += event.n
        elif kind == ev.WX_VIOLATION:
            c["wx_violations"] += event.n
        elif kind == ev.RELOC_OUT_OF_RANGE:
            c["reloc_out_of_range"] += event.n
        elif kind in (ev.ALLOC, ev.FREE):
            sign = 1 if kind == ev.ALLOC else -1
            extra = event.extra or {}
            self.live_allocated += sign * extra.get("allocated", 0)
            self.live_requested += sign * extra.get("requested", 0)
            self.peak_allocated = max(self.peak_allocated, self.live_allocated)
            self.peak_requested = max(self.peak_requested, self.live_requested)

    def snapshot(self, gauges: Mapping[str, int]) -> dict[str, float]:
        """Counters plus live gauges: used at op boundaries to take per-op deltas."""
        snap = dict(self.counters)
        snap.update(gauges)
        snap["allocated_bytes"] = self.live_allocated
        snap["requested_bytes"] = self.live_requested
        return snap

    def record_op(self, kind: str, before: Mapping[str, float], after: Mapping[str, float]) -> None:
        samples = self._samples.get(kind)
        if samples is None:
            samples = self._samples[kind] = {name: array("d") for name in METRICS}
        for name in METRICS:
            samples[name].append(after[name] - before[name])

    def totals(self, gauges: Mapping[str, int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in METRICS:
            if name in self.counters:
                out[name] = self.counters[name]
            elif name == "allocated_bytes":
                out[name] = self.peak_allocated
            elif name == "requested_bytes":
                out[name] = self.peak_requested
            else:
                out[name] = gauges[name]
        out["cost_ns"] = round(out["cost_ns"], 1)
        return {k: (int(v) if float(v).is_integer() else v) for k, v in out.items()}

    def per_op(self) -> dict[str, dict[str, object]]:
        result: dict[str, dict[str, object]] = {}
        for kind in sorted(self._samples):
            samples = self._samples[kind]
            entry: dict[str, object] = {"count": len(samples["shootdowns"])}
            for name in METRICS:
                values = samples[name]
                entry[name] = {
                    "mean": round(statistics.fmean(values), 3),
                    "median": _num(statistics.median(values)),
                    "max": _num(max(values)),
                }
            result[kind] = entry
        return result


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)
