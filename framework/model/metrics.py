"""Metric names (a public contract, DESIGN.md) and their folding from events."""

from __future__ import annotations

import statistics
from array import array
from collections.abc import Mapping

from permalloc.model import events as ev
from permalloc.model.spec import CostModel

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
# State read at the end (or at op boundaries), as opposed to counters folded from events.
GAUGES = (
    "directmap_4k_bytes",
    "directmap_2m_bytes",
    "directmap_1g_bytes",
    "huge_mappings",
    "allocated_bytes",
    "requested_bytes",
)
COUNTERS = tuple(name for name in METRICS if name not in GAUGES)
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


def cost_table(cost: CostModel, cpus: int) -> dict[str, tuple[float, float]]:
    """Per event kind: (fixed ns, ns per unit of ``event.n``), from the cost model."""
    round_ns = cost.shootdown_ns + cost.shootdown_per_cpu_ns * (cpus - 1)
    table = dict.fromkeys(ev.KINDS, (0.0, 0.0))
    table.update({
        ev.FLUSH_RANGE: (round_ns, 0.0),
        ev.FLUSH_ALL: (round_ns, 0.0),
        ev.SYNC_IPI: (round_ns, 0.0),
        ev.FLUSH_LOCAL: (0.0, cost.local_flush_page_ns),
        ev.SPLIT_1G: (0.0, cost.split_ns),
        ev.SPLIT_2M: (0.0, cost.split_ns),
        ev.VMAP_SPLIT_2M: (0.0, cost.split_ns),
        ev.VMAP_COLLAPSE_2M: (0.0, cost.split_ns),  # the inverse page-table rewrite of a split
        ev.MAP: (0.0, cost.pte_update_ns),
        ev.UNMAP: (0.0, cost.pte_update_ns),
        ev.PTE_PERM: (0.0, cost.pte_update_ns),
        ev.DIRECTMAP_PERM: (0.0, cost.pte_update_ns),
        ev.PAGE_ALLOC: (0.0, cost.page_alloc_ns),
        ev.TEXT_POKE: (cost.text_poke_ns + cost.local_flush_page_ns, cost.poke_byte_ns),
    })
    return table


def event_cost(event: ev.Event, cost: CostModel, cpus: int) -> float:
    """The cost model's estimate for one event, in ns."""
    if event.kind == ev.FLUSH_LOCAL and event.extra and event.extra.get("full"):
        return cost.local_flush_all_ns
    fixed, per_unit = cost_table(cost, cpus)[event.kind]
    return fixed + per_unit * event.n


# What an event adds to the counters: kind -> ((counter, per event), (counter, per unit of n)).
_COUNTS: dict[str, tuple[tuple[str, int], ...]] = {
    ev.FLUSH_RANGE: (("shootdowns", 1),),
    ev.FLUSH_ALL: (("shootdowns", 1),),
    ev.SYNC_IPI: (("sync_ipis", 1),),
    ev.FLUSH_LOCAL: (("local_flushes", 1),),
    # __text_poke ends with a flush of poking_mm on this CPU: one local flush per poke
    ev.TEXT_POKE: (("text_pokes", 1), ("local_flushes", 1)),
}
_COUNTS_N: dict[str, str] = {
    ev.SPLIT_1G: "directmap_splits_1g",
    ev.SPLIT_2M: "directmap_splits_2m",
    ev.TEXT_POKE: "poke_bytes",
    ev.WX_VIOLATION: "wx_violations",
    ev.RELOC_OUT_OF_RANGE: "reloc_out_of_range",
}
_IPI_ROUNDS = frozenset({ev.FLUSH_RANGE, ev.FLUSH_ALL, ev.SYNC_IPI})


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
        self._samples: dict[str, list[array]] = {}
        self._cost = cost_table(cost, cpus)

    def fold(self, event: ev.Event) -> None:
        c = self.counters
        kind = event.kind
        times = 1
        if kind == ev.FLUSH_LOCAL and event.extra and event.extra.get("full"):
            event.cost_ns = self.cost.local_flush_all_ns
        else:
            if kind == ev.TEXT_POKE and event.extra:
                times = event.extra.get("pokes", 1)  # a batch step: several pokes in one event
            fixed, per_unit = self._cost[kind]
            event.cost_ns = fixed * times + per_unit * event.n
        c["cost_ns"] += event.cost_ns
        for name, inc in _COUNTS.get(kind, ()):
            c[name] += inc * times
        name = _COUNTS_N.get(kind)
        if name is not None:
            c[name] += event.n
        if kind in _IPI_ROUNDS:
            c["ipis"] += self.cpus - 1
        elif kind == ev.ALLOC or kind == ev.FREE:
            sign = 1 if kind == ev.ALLOC else -1
            extra = event.extra or {}
            self.live_allocated += sign * extra.get("allocated", 0)
            self.live_requested += sign * extra.get("requested", 0)
            self.peak_allocated = max(self.peak_allocated, self.live_allocated)
            self.peak_requested = max(self.peak_requested, self.live_requested)

    def snapshot(self, gauges: Mapping[str, int]) -> list[float]:
        """Every metric in METRICS order (counters, live gauges): per-op deltas are taken
        between two snapshots."""
        c = self.counters
        values = {**gauges, "allocated_bytes": self.live_allocated, "requested_bytes": self.live_requested}
        return [c[name] if name in c else values[name] for name in METRICS]

    def record_op(self, kind: str, delta: list[float]) -> None:
        """One sample of op ``kind``: ``delta`` in METRICS order."""
        samples = self._samples.get(kind)
        if samples is None:
            samples = self._samples[kind] = [array("d") for _ in METRICS]
        for column, value in zip(samples, delta):
            column.append(value)

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
            samples = dict(zip(METRICS, self._samples[kind]))
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
