"""Holding the simulator against measurements of a real kernel (``permalloc validate``).

A measurement is per-operation CSV rows in the format of docs/measurements.md: one row per
event (``mod_load``, ``mod_unload``, ``bpf_load`` ...) with the kernel's own counters over the
event's window, plus an info file (``kernel,variant,key,value``) with the machine's CPU
flags, boot meminfo and dmesg memory lines. Validation rebuilds that machine (CPU count,
RAM, initrd, CPU features, kernel release), replays the same events in the same order as
scenario ops (plugins translate rows through ``permalloc_measurement_op``), counts each op
the way the measurement's window does (everything the op does, a module load's init free
included), and sets simulated next to measured, per event kind and quantity.
"""

from __future__ import annotations

import collections
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from permalloc.boot import BOOT_CPU
from permalloc.errors import SpecError
from permalloc.filekind import special_kind
from permalloc.machine import Machine
from permalloc.mechanisms.cpa import SET_MEMORY
from permalloc.model import events as ev
from permalloc.model.spec import MachineSpec
from permalloc.plugin.hookspecs import hookimpl
from permalloc.plugin.policy import PolicySpec
from permalloc.run.scenario import Scenario, op_types, run_handler
from permalloc.run.simulation import RunContext
from permalloc.run.workloads import WorkloadSource, read_header, workloads

INFO_COLUMNS = ["kernel", "variant", "key", "value"]
EVENT_COLUMNS = {"seq", "event", "object"}

# measured column -> (simulated quantity, what it is)
QUANTITIES: dict[str, tuple[str, str]] = {
    "kflush_bcast": ("flush_all_cpu", "all-CPU kernel TLB-flush broadcasts"),
    "kflush_bcast_full": ("flush_full", "... of which full (flush_tlb_all)"),
    "kflush_bcast_range": ("flush_range", "... of which flush_tlb_kernel_range"),
    "kflush_bcast_cpa": ("flush_cpa", "... of which cpa_flush per-page"),
    "syncore_bcast": ("sync_bcast", "text_poke_bp sync-core broadcasts"),
    "l2split_delta": ("split_2m", "2 MiB -> 4 KiB direct-map splits"),
    "l3split_delta": ("split_1g", "1 GiB -> 2 MiB direct-map splits"),
    "directmap4k_delta_kb": ("directmap4k_kb", "DirectMap4k change, KiB"),
    "directmap2m_delta_kb": ("directmap2m_kb", "DirectMap2M change, KiB"),
    "directmap1g_delta_kb": ("directmap1g_kb", "DirectMap1G change, KiB"),
    "ft_set_memory_ro": ("set_memory_ro", "set_memory_ro calls"),
    "ft_set_memory_nx": ("set_memory_nx", "set_memory_nx calls"),
    "ft_set_memory_x": ("set_memory_x", "set_memory_x calls"),
    "ft_vm_unmap_aliases": ("vm_unmap_aliases", "vm_unmap_aliases calls"),
}


class MeasurementError(SpecError):
    """A measurement file that cannot be read or replayed (names the file)."""


@dataclass
class Measurement:
    """The events of one measured machine, in order, and what its info file says."""

    events: pd.DataFrame
    info: dict[str, str]
    files: list[str] = field(default_factory=list)

    @property
    def release(self) -> str:
        releases = sorted(set(self.events["kernel_release"].dropna()))
        if len(releases) != 1:
            raise MeasurementError(f"{', '.join(self.files)}: expected one kernel_release, found {releases or 'none'}")
        return releases[0]

    @property
    def cpus(self) -> int:
        return int(self.events["ncpu"].iloc[0])


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        if kind := special_kind(path):
            raise MeasurementError(f"{path}: cannot read CSV: {kind} (only regular files are read)")
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MeasurementError(f"{path}: cannot read CSV: {str(exc).splitlines()[0]}") from None


def read(paths: Sequence[str | Path]) -> Measurement:
    """Measurement files (or directories of them): event files and at most one info file."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix == ".csv"))
        elif path.name.endswith((".json.gz", ".json")):
            continue  # a workload file given next to the measurements
        elif path.exists():
            files.append(path)
        else:
            raise MeasurementError(f"{path}: no such file or directory")
    events, info, names = [], {}, []
    for path in files:
        frame = _read_csv(path)
        names.append(str(path))
        if list(frame.columns) == INFO_COLUMNS:
            info.update(dict(zip(frame["key"], frame["value"])))
            continue
        missing = EVENT_COLUMNS | {"kernel_release", "ncpu"} - set(frame.columns)
        if missing - set(frame.columns):
            raise MeasurementError(f"{path}: not a measurement file: missing columns {sorted(missing - set(frame.columns))}")
        frame = frame.assign(_file=str(path))
        events.append(frame)
    if not events:
        raise MeasurementError(f"{', '.join(map(str, paths))}: no event rows (seq, event, object columns)")
    table = pd.concat(events, ignore_index=True)
    try:
        table["seq"] = table["seq"].astype(int)
    except ValueError:
        raise MeasurementError(f"{', '.join(names)}: column seq must hold integers") from None
    table = table.sort_values("seq", kind="stable").reset_index(drop=True)
    return Measurement(table, info, names)


# -- the machine that was measured ----------------------------------------------------------------
_PRESENT = re.compile(r"Memory: \d+K/(\d+)K available")
_INITRD = re.compile(r"Freeing initrd memory: (\d+)K")
MEMORY_GRANULE = 128 << 20  # RAM sizes are whole 128 MiB sections (SECTION_SIZE_BITS 27)


def machine_spec(measurement: Measurement, arch: str, memory: int | None = None, seed: int = 0) -> MachineSpec:
    """The measured machine: CPUs from ``ncpu``; RAM from the boot's present pages (dmesg
    "Memory: .../NK available", rounded up to a whole memory section) unless given; the
    initrd from "Freeing initrd memory"; CPU features from the flags line."""
    info = measurement.info
    dmesg = info.get("dmesg", "")
    if memory is None:
        found = _PRESENT.search(dmesg)
        if found is None:
            raise MeasurementError(f"{', '.join(measurement.files)}: no 'Memory: ...K available' line in the info "
                                   "file's dmesg; give --memory")
        present = int(found.group(1)) << 10
        memory = math.ceil(present / MEMORY_GRANULE) * MEMORY_GRANULE
    initrd = _INITRD.search(dmesg)
    flags = set(info.get("flags", "").split())
    features = frozenset(flags & {"la57", "invlpgb", "pcid", "invpcid", "pti"})
    return MachineSpec(arch=arch, cpus=measurement.cpus, memory=memory,
                       initrd=(int(initrd.group(1)) << 10) if initrd else 0,
                       gbpages="pdpe1gb" in flags if flags else True, cpu_features=features, seed=seed)


def boot_meminfo(measurement: Measurement) -> dict[str, int]:
    """The info file's boot meminfo line: DirectMap4k/2M/1G in KiB."""
    out = {}
    for key, value in re.findall(r"(DirectMap\w+):\s+(\d+) kB", measurement.info.get("meminfo", "")):
        out[key] = int(value)
    return out


# -- replay -------------------------------------------------------------------------------------
class Tally:
    """Counts what each op does, in the measurement's terms (an observer plugin)."""

    name = "validate-tally"

    def __init__(self) -> None:
        self.current: collections.Counter[str] = collections.Counter()

    @hookimpl
    def permalloc_event(self, machine: Machine, event: ev.Event) -> None:
        kind, c = event.kind, self.current
        if kind == ev.FLUSH_ALL:
            c["flush_full"] += 1
            c["flush_all_cpu"] += 1
        elif kind == ev.FLUSH_RANGE:
            c["flush_cpa" if event.source.endswith("cpa_flush") else "flush_range"] += 1
            c["flush_all_cpu"] += 1
        elif kind == ev.SYNC_IPI:
            c["sync_bcast"] += 1
        elif kind == ev.SPLIT_2M:
            c["split_2m"] += event.n
        elif kind == ev.SPLIT_1G:
            c["split_1g"] += event.n
        elif kind == ev.SET_MEMORY:
            if event.source in SET_MEMORY:
                c[event.source] += 1
            if event.extra and event.extra.get("masks"):
                c["vm_unmap_aliases"] += 1  # change_page_attr_set_clr, once the masks are not empty


# info keys that say the measurement traced: its function filter and its kprobe events
TRACING_KEYS = ("ftrace_filter", "kprobe_events")


def setup_ops(measurement: Measurement) -> list[dict[str, Any]]:
    """What the measuring harness did to the machine before its first event, as ops: a
    measurement that traced (a function filter or kprobe events in its info file) set a tracer
    or enabled events, which grew the ring buffers (tracing_update_buffers)."""
    if any(measurement.info.get(key, "").strip() for key in TRACING_KEYS):
        return [{"op": "expand_trace_buffers"}]
    return []


def replay(measurement: Measurement, machine: Machine, tally: Tally, cpu: int = BOOT_CPU) -> list[dict[str, Any]]:
    """Run the harness's setup (:func:`setup_ops`, not counted) and then every measured event
    as an op on ``machine`` (built with ``tally`` among its plugins), by one task on ``cpu``;
    return per-event simulated counts and the plugins' column checks."""
    registry = op_types(machine.pm)
    ctx = RunContext(machine)
    ctx.task_cpu = machine.cpu = cpu
    for op in Scenario(name="validate-setup", ops=setup_ops(measurement)).validated(registry, origin="setup"):
        run_handler(registry[op.op], ctx, op)
    out = []
    for index, row in enumerate(measurement.events.to_dict("records")):
        text_row = {k: str(v) for k, v in row.items()}
        op = machine.hook.permalloc_measurement_op(event=row["event"], row=text_row)
        if op is None:
            raise MeasurementError(f"{row['_file']}: seq {row['seq']}: no plugin replays events of kind {row['event']!r}")
        try:
            (model,) = Scenario(name="validate", ops=[op]).validated(registry, origin=f"{row['_file']} seq {row['seq']}")
        except SpecError as exc:
            raise MeasurementError(str(exc)) from None
        ctx.task_cpu = sending_cpu(row, machine.spec.cpus, ctx.task_cpu)
        before = machine.directmap.meminfo()
        tally.current = collections.Counter()
        ctx.op_index = machine.op_index = index
        ctx.op_name = model.op
        machine.cpu = ctx.task_cpu
        run_handler(registry[model.op], ctx, model)
        after = machine.directmap.meminfo()
        counts = dict(tally.current)
        for name, key in (("directmap4k_kb", "directmap_4k_bytes"), ("directmap2m_kb", "directmap_2m_bytes"),
                          ("directmap1g_kb", "directmap_1g_bytes")):
            counts[name] = (after[key] - before[key]) >> 10
        checks: dict[str, list[float]] = {}
        for found in machine.hook.permalloc_measurement_check(machine=machine, event=row["event"], row=text_row):
            checks.update(found or {})
        out.append({"event": row["event"], "object": row["object"], "seq": row["seq"], "simulated": counts,
                    "checks": checks})
    return out


def sending_cpu(row: dict[str, Any], cpus: int, previous: int) -> int:
    """The CPU an event ran on, from its window's per-CPU function-call IPI counts
    (``cal_per_cpu``, ``N:N:...``): an all-CPU broadcast interrupts every CPU but the
    sender (kernel/smp.c: smp_call_function_many_cond skips this_cpu), so the sender is the
    CPU that received the fewest. Without broadcasts in the window (or the column), the task
    stayed where it was."""
    text = str(row.get("cal_per_cpu", ""))
    counts = [int(part) for part in text.split(":") if part.strip().isdigit()] if text else []
    if len(counts) != cpus or cpus < 2 or not any(counts):
        return previous
    fewest = min(counts)
    return counts.index(fewest) if counts.count(fewest) == 1 else previous


def compare(measurement: Measurement, simulated: list[dict[str, Any]]) -> dict[str, Any]:
    """Measured vs simulated per event kind and quantity: median, mean, max and sum."""
    table: dict[str, Any] = {}
    rows = measurement.events.to_dict("records")
    for kind in dict.fromkeys(r["event"] for r in rows):
        indices = [i for i, r in enumerate(rows) if r["event"] == kind]
        quantities = {}
        for column, (name, description) in QUANTITIES.items():
            if column not in measurement.events.columns:
                continue
            measured = [_number(rows[i][column]) for i in indices]
            if any(v is None or v < 0 for v in measured):  # -1: the counter does not exist there
                continue
            sim = [simulated[i]["simulated"].get(name, 0) for i in indices]
            quantities[column] = {"description": description, "measured": _stats(measured), "simulated": _stats(sim)}
        checks: dict[str, dict[str, int]] = {}
        for i in indices:
            for column, (measured, sim) in simulated[i]["checks"].items():
                entry = checks.setdefault(column, {"equal": 0, "different": 0})
                entry["equal" if measured == sim else "different"] += 1
        table[kind] = {"count": len(indices), "quantities": quantities, "checks": checks}
    return table


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _stats(values: Iterable[float]) -> dict[str, float]:
    values = list(values)
    if not values:
        return {"median": 0, "mean": 0, "max": 0, "sum": 0}
    s = pd.Series(values, dtype=float)
    return {"median": _tidy(s.median()), "mean": round(float(s.mean()), 3), "max": _tidy(s.max()), "sum": _tidy(s.sum())}


def _tidy(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def policy_for_release(release: str, policies: dict[str, PolicySpec]) -> PolicySpec:
    """The built-in policy that models the measured kernel (``linux-6.1`` for 6.1.0-56-amd64)."""
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise MeasurementError(f"kernel_release {release!r}: expected a version such as 6.1.0-56-amd64")
    name = f"linux-{match.group(1)}.{match.group(2)}"
    if name not in policies:
        raise MeasurementError(f"kernel {release}: no built-in policy {name!r} models it; give --policy "
                               f"(known: {', '.join(sorted(policies))})")
    return policies[name]


def measured_workload(measurement: Measurement, paths: Sequence[str | Path], pm: Any) -> WorkloadSource:
    """The workload of the measured kernel release: a workload file among the measurement's
    files or directories, else a registered one of that release."""
    candidates = []
    for raw in paths:
        path = Path(raw)
        for file in sorted(path.iterdir()) if path.is_dir() else [path]:
            if file.name.endswith((".json.gz", ".json")):
                candidates.append(read_header(file))
    candidates += list(workloads(pm).values())
    for source in candidates:
        if source.kernel_release == measurement.release:
            return source
    raise MeasurementError(
        f"{', '.join(measurement.files)}: no workload of kernel {measurement.release}: ingest its package "
        f"(permalloc ingest ... --only <the measured modules>) into the measurement's directory, or give --workload")


def validate(paths: Sequence[str | Path], pm: Any, policies: dict[str, PolicySpec], arch: str | None = None,
             policy: PolicySpec | None = None, memory: int | None = None, seed: int = 0,
             workload: WorkloadSource | None = None, cpu: int = BOOT_CPU) -> dict[str, Any]:
    """Read, rebuild, replay and compare: the result ``permalloc validate`` prints.

    The events are replayed by one task on ``cpu``: by default the boot CPU, where a
    measurement made by the initramfs' init runs (init is kernel_init's task, which freed
    the kernel's init memory there just before it executed /init: init/main.c: kernel_init)."""
    measurement = read(paths)
    policy = policy or policy_for_release(measurement.release, policies)
    workload = workload or measured_workload(measurement, paths, pm)
    spec = machine_spec(measurement, arch or policy.arch or "x86", memory=memory, seed=seed)
    if not 0 <= cpu < spec.cpus:
        raise MeasurementError(f"--cpu {cpu}: the measured machine has CPUs 0-{spec.cpus - 1}")
    tally = Tally()
    machine = Machine(spec, policy, plugins=[tally], workload=workload)
    booted = {key: value >> 10 for key, value in machine.directmap.meminfo().items()}
    simulated = replay(measurement, machine, tally, cpu)
    measured_boot = boot_meminfo(measurement)
    boot = {}
    for name, key in (("DirectMap4k", "directmap_4k_bytes"), ("DirectMap2M", "directmap_2m_bytes"),
                      ("DirectMap1G", "directmap_1g_bytes")):
        if name in measured_boot:
            boot[name] = {"measured_kb": measured_boot[name], "simulated_kb": booted[key]}
    return {
        "files": measurement.files,
        "kernel_release": measurement.release,
        "policy": policy.name,
        "workload": workload.name,
        "machine": spec.model_dump(mode="json", exclude={"cost"}),
        "boot": boot,
        "events": compare(measurement, simulated),
    }


def print_report(report: dict[str, Any], console: Any) -> None:
    """Tables: the boot DirectMap lines, then per event kind measured vs simulated."""
    from rich.table import Table

    m = report["machine"]
    console.print(f"[bold]{report['kernel_release']}[/] on a simulated {m['arch']} machine, {m['cpus']} CPUs, "
                  f"{m['memory'] >> 20} MiB, platform {m['platform'] or 'default'}, policy {report['policy']}, "
                  f"workload {report['workload']}")
    if report["boot"]:
        table = Table(title="boot /proc/meminfo", header_style="bold")
        for col in ("line", "measured kB", "simulated kB", "diff"):
            table.add_column(col, justify="left" if col == "line" else "right")
        for line, v in report["boot"].items():
            diff = v["simulated_kb"] - v["measured_kb"]
            pct = f" ({diff / v['measured_kb']:+.1%})" if v["measured_kb"] else ""
            table.add_row(line, f"{v['measured_kb']:,}", f"{v['simulated_kb']:,}", f"{diff:+,}{pct}")
        console.print(table)
    for kind, entry in report["events"].items():
        table = Table(title=f"{kind} ({entry['count']} events): measured | simulated", header_style="bold")
        table.add_column("quantity", justify="left")
        for stat in ("median", "mean", "max", "sum"):
            table.add_column(stat, justify="right")
        for column, q in entry["quantities"].items():
            headline = column in ("kflush_bcast", "syncore_bcast", "l2split_delta")
            if not headline and not any(q["measured"].values()) and not any(q["simulated"].values()):
                continue
            cells = [f"{q['measured'][s]:g} | {q['simulated'][s]:g}" for s in ("median", "mean", "max", "sum")]
            table.add_row(f"{column}", *cells)
        for column, counts in entry["checks"].items():
            table.add_row(f"{column} equal", f"{counts['equal']} of {counts['equal'] + counts['different']}", "", "", "")
        console.print(table)
