"""Metric names (a public contract, docs/architecture.md "Metrics") and their folding from events."""

from __future__ import annotations

import statistics
from array import array
from collections.abc import Iterable, Mapping, Sequence

from permalloc.errors import PermallocError
from permalloc.model import events as ev
from permalloc.model.spec import CostModel

# The order in which tables, CSV and JSON list them.
METRICS = (
    "shootdowns",
    "ipis",
    "flush_ipis",
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
    "contract_violations",
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
    "shootdowns": "all-CPU TLB flushes (range or full), through IPIs or a hardware broadcast",
    "ipis": "IPIs received by other CPUs (IPI flush rounds and patching syncs, x (cpus - 1))",
    "flush_ipis": "of the ipis, those of TLB flush rounds (0 where the hardware broadcasts invalidations)",
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
    "contract_violations": "pages an arch's finish, change or free left off the contract (permission, alias, mapping)",
    "cost_ns": "the cost model's estimate of time spent",
}
# What one unit of each metric is (docs/architecture.md, "Metrics": its unit column); axes
# and legends name it.
UNITS = {
    "shootdowns": "flushes",
    "ipis": "IPIs",
    "flush_ipis": "IPIs",
    "sync_ipis": "rounds",
    "local_flushes": "flushes",
    "directmap_splits_1g": "splits",
    "directmap_splits_2m": "splits",
    "directmap_4k_bytes": "bytes",
    "directmap_2m_bytes": "bytes",
    "directmap_1g_bytes": "bytes",
    "text_pokes": "writes",
    "poke_bytes": "bytes",
    "huge_mappings": "leaves",
    "allocated_bytes": "bytes",
    "requested_bytes": "bytes",
    "reloc_out_of_range": "relocations",
    "wx_violations": "page entries",
    "contract_violations": "pages",
    "cost_ns": "ns",
}


def kind_table(kinds: Iterable[ev.EventKind], cost: CostModel, cpus: int) -> dict[str, tuple]:
    """Per event kind, what folding one event does: (fixed ns, ns per unit, per-event counter
    increments, the counter ``n`` adds to, and for an IPI round the metric that counts its IPIs
    by purpose ("" for none; None: not an IPI round))."""
    table: dict[str, tuple] = {}
    for kind in kinds:
        fixed, per_unit = kind.cost(cost, cpus) if callable(kind.cost) else kind.cost
        for name, _ in kind.counters:
            if name not in COUNTERS:
                raise PermallocError(f"event kind {kind.name!r} counts into {name!r}, which is not a counter metric "
                                     f"({', '.join(COUNTERS)})")
        if kind.ipi_counter is not None and kind.ipi_counter not in COUNTERS:
            raise PermallocError(f"event kind {kind.name!r} counts its IPIs into {kind.ipi_counter!r}, which is not a "
                                 "counter metric")
        if kind.unit_counter is not None and kind.unit_counter not in COUNTERS:
            raise PermallocError(f"event kind {kind.name!r} counts into {kind.unit_counter!r}, which is not a counter "
                                 "metric")
        table[kind.name] = (fixed, per_unit, kind.counters, kind.unit_counter,
                            (kind.ipi_counter or "") if kind.ipi_round else None)
    return table


class Metrics:
    """Counters folded from events, plus per-op-kind samples of their deltas."""

    def __init__(self, cpus: int, cost: CostModel, kinds: Iterable[ev.EventKind] = ev.CORE_KINDS) -> None:
        self.cpus = cpus
        self.cost = cost
        self.counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.live_allocated = 0
        self.live_requested = 0
        self.peak_allocated = 0
        self.peak_requested = 0
        self._samples: dict[str, list[array]] = {}
        self._kinds = kind_table(kinds, cost, cpus)

    def fold(self, event: ev.Event) -> None:
        c = self.counters
        kind = event.kind
        entry = self._kinds.get(kind)
        if entry is None:
            raise PermallocError(f"event kind {kind!r} (from {event.source or 'an unnamed source'}) is not registered: "
                                 "a plugin declares its kinds with permalloc_event_kinds")
        fixed, per_unit, counts, unit_counter, ipi_round = entry
        extra = event.extra
        times = extra.get("times", 1) if extra else 1  # a batched step: several operations in one event
        if kind == ev.FLUSH_LOCAL and extra and extra.get("full"):
            event.cost_ns = self.cost.local_flush_all_ns
        else:
            event.cost_ns = fixed * times + per_unit * event.n
        c["cost_ns"] += event.cost_ns
        for name, inc in counts:
            c[name] += inc * times
        if unit_counter is not None:
            c[unit_counter] += event.n
        if ipi_round is not None:
            c["ipis"] += (self.cpus - 1) * times
            if ipi_round:
                c[ipi_round] += (self.cpus - 1) * times
        elif kind == ev.ALLOC or kind == ev.FREE:
            sign = 1 if kind == ev.ALLOC else -1
            extra = extra or {}
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
        """Per op kind: ``count``, and the mean, median, 90th percentile and max of every
        metric's change over one op."""
        result: dict[str, dict[str, object]] = {}
        for kind in sorted(self._samples):
            samples = dict(zip(METRICS, self._samples[kind]))
            entry: dict[str, object] = {"count": len(samples["shootdowns"])}
            for name in METRICS:
                values = samples[name]
                ordered = sorted(values)  # one sort for the median, p90 and max
                half = len(ordered) // 2
                median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
                entry[name] = {
                    "mean": round(statistics.fmean(values), 3),
                    "median": _num(median),
                    "p90": _num(_ranked(ordered, 90)),
                    "max": _num(ordered[-1]),
                }
            result[kind] = entry
        return result

    def samples(self, names: Iterable[str]) -> dict[str, dict[str, list[float]]]:
        """Per op kind, every op's change of each metric of ``names`` (the values behind
        :meth:`per_op`, for distribution plots)."""
        columns = [METRICS.index(name) for name in names]
        return {kind: {METRICS[i]: list(self._samples[kind][i]) for i in columns} for kind in sorted(self._samples)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values``, linearly interpolated between the nearest ranks
    (numpy's default, and what ``statistics.quantiles(..., method="inclusive")`` computes)."""
    return _ranked(sorted(values), q)


def _ranked(ordered: Sequence[float], q: float) -> float:
    """:func:`percentile` of values already in ascending order."""
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 3)
