"""Scenario ops for what else a machine does between the loads it is measured on: the page
cache (reading files, dropping caches), the kernel's own allocations (slab growth, page
tables), processes that start and exit (a kernel stack and page tables each), and the first
use of tracing (the ring buffers grow). Registered as a built-in plugin like every other op
provider.

Every op may name the ``cpu`` it runs on; otherwise it runs on the CPU of the scenario's
task. ``spawn_process`` puts the new process on another CPU than its parent's (fork
balancing, kernel/sched/fair.c: select_task_rq_fair with SD_BALANCE_FORK, finds an idle one;
which idle one is a seeded choice) and, with ``switch``, runs the following ops in it until
``exit_process``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from permalloc.model.buddy import MOVABLE, RECLAIMABLE, UNMOVABLE
from permalloc.model.pages import PAGE_SIZE
from permalloc.plugin.hookspecs import hookimpl
from permalloc.run.scenario import Op, OpType

if TYPE_CHECKING:
    from permalloc.run.simulation import RunContext

__version__ = "1.0"

_MIGRATETYPES = {"unmovable": UNMOVABLE, "reclaimable": RECLAIMABLE, "movable": MOVABLE}

TRACE_BUF_SIZE_DEFAULT = 1441792  # kernel/trace/trace.c: trace_buf_size (6.1 and 6.12)
# kernel/trace/ring_buffer.c: BUF_PAGE_HDR_SIZE = offsetof(struct buffer_data_page, data), a
# u64 time_stamp and a local_t commit; BUF_PAGE_SIZE = PAGE_SIZE - BUF_PAGE_HDR_SIZE
BUF_PAGE_HDR_SIZE = 16
RB_MIN_PAGES = 2  # ring_buffer_alloc/ring_buffer_resize: "we need a minimum of two pages"


class ReadFilesOp(Op):
    op: Literal["read_files"]
    bytes: int = Field(gt=0, description="file data read into the page cache")


class DropCachesOp(Op):
    op: Literal["drop_caches"]
    bytes: int | None = Field(None, gt=0, description="how much to drop, oldest first (default: all)")


class KernelAllocOp(Op):
    op: Literal["kernel_alloc"]
    id: str
    order: int = Field(0, ge=0, le=10)
    count: int = Field(1, ge=1, le=1 << 20)
    migratetype: Literal["unmovable", "reclaimable", "movable"] = "unmovable"


class KernelFreeOp(Op):
    op: Literal["kernel_free"]
    id: str


class SpawnProcessOp(Op):
    op: Literal["spawn_process"]
    id: str
    switch: bool = Field(True, description="run the next ops in the new process until exit_process")


class ExitProcessOp(Op):
    op: Literal["exit_process"]
    id: str


class ExpandTraceBuffersOp(Op):
    op: Literal["expand_trace_buffers"]
    bytes: int = Field(TRACE_BUF_SIZE_DEFAULT, gt=0, le=1 << 34,
                       description="the size each CPU's buffer grows to (trace_buf_size=; default the kernel's)")


def _read(ctx: RunContext, op: ReadFilesOp) -> None:
    ctx.machine.page_cache.fill(-(-op.bytes // PAGE_SIZE), ctx.machine.cpu)


def _drop(ctx: RunContext, op: DropCachesOp) -> None:
    pages = None if op.bytes is None else -(-op.bytes // PAGE_SIZE)
    ctx.machine.page_cache.drop(pages, ctx.machine.cpu)


def _kalloc(ctx: RunContext, op: KernelAllocOp) -> None:
    held = ctx.machine.state("system_ops.kernel", dict)
    if op.id in held:
        raise ctx.error(f"kernel_alloc: id {op.id!r} is already in use")
    m = ctx.machine
    held[op.id] = [(m.alloc_order(op.order, source="kernel_alloc", mt=_MIGRATETYPES[op.migratetype]), op.order)
                   for _ in range(op.count)]


def _kfree(ctx: RunContext, op: KernelFreeOp) -> None:
    held = ctx.machine.state("system_ops.kernel", dict)
    if op.id not in held:
        raise ctx.error(f"kernel_free: no kernel allocation with id {op.id!r}")
    for pfn, order in held.pop(op.id):
        ctx.machine.free_order(pfn, order, source="kernel_free")


def _spawn(ctx: RunContext, op: SpawnProcessOp) -> None:
    m = ctx.machine
    if op.id in m.processes.live:
        raise ctx.error(f"spawn_process: id {op.id!r} is already running")
    others = [cpu for cpu in range(m.spec.cpus) if cpu != m.cpu] or [m.cpu]
    cpu = others[m.rng.randrange(len(others))]
    m.processes.spawn(op.id, cpu, m.arch.page_table_levels)
    if op.switch:
        ctx.tasks.append((op.id, m.cpu))
        ctx.task_cpu = cpu


def _exit(ctx: RunContext, op: ExitProcessOp) -> None:
    m = ctx.machine
    if op.id not in m.processes.live:
        raise ctx.error(f"exit_process: no running process with id {op.id!r}")
    m.processes.exit(op.id)
    for i in range(len(ctx.tasks) - 1, -1, -1):
        if ctx.tasks[i][0] == op.id:
            ctx.task_cpu = ctx.tasks[i][1]
            del ctx.tasks[i:]
            break


def ring_buffer_pages(size: int, page_size: int) -> int:
    """ring_buffer_resize: the data pages of one CPU's buffer of ``size`` bytes."""
    return max(-(-size // (page_size - BUF_PAGE_HDR_SIZE)), RB_MIN_PAGES)


def _expand_trace(ctx: RunContext, op: ExpandTraceBuffersOp) -> None:
    """tracing_update_buffers (kernel/trace/trace.c), which the first tracer set or event
    enabled calls: the buffers grow from the boot minimum (tracer_alloc_buffers allocates
    them with size 1 until ring_buffer_expanded) to ``bytes``. ring_buffer_resize allocates
    every CPU's new pages in the caller's context (__rb_allocate_pages: alloc_pages_node(
    cpu_to_node(cpu), GFP_KERNEL | __GFP_RETRY_MAYFAIL, 0)), and only then lets each CPU's
    work item link them in. Once expanded, later calls do nothing."""
    m = ctx.machine
    trace = m.state("system_ops.trace", dict)
    if trace.get("expanded"):
        return
    trace["expanded"] = True
    pages = trace.setdefault("pages", [])
    new = ring_buffer_pages(op.bytes, m.phys.page_size) - RB_MIN_PAGES
    for cpu in range(m.spec.cpus):
        node = m.phys.node_of_cpu(cpu)
        pages += [m.alloc_order(0, source="ring_buffer_resize", node=node) for _ in range(new)]


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return [
        OpType("read_files", ReadFilesOp, _read, description="read files into the page cache (movable pages)"),
        OpType("drop_caches", DropCachesOp, _drop, description="drop page cache, oldest first"),
        OpType("kernel_alloc", KernelAllocOp, _kalloc, description="kernel pages the run keeps (slab growth, tables)"),
        OpType("kernel_free", KernelFreeOp, _kfree, description="free a kernel_alloc"),
        OpType("spawn_process", SpawnProcessOp, _spawn, description="start a process: kernel stack + page tables"),
        OpType("exit_process", ExitProcessOp, _exit, description="a process exits: its stack and page tables go"),
        OpType("expand_trace_buffers", ExpandTraceBuffersOp, _expand_trace,
               description="first use of tracing: every CPU's ring buffer grows to trace_buf_size"),
    ]


@hookimpl
def permalloc_measurement_op(event: str, row: dict[str, str]) -> dict[str, Any] | None:
    """idle: a window in which the machine only slept (the noise floor)."""
    if event == "idle":
        return {"op": "advance", "ms": float(row.get("op_s") or 0) * 1000}
    return None


@hookimpl
def permalloc_machine_release(machine) -> None:
    for allocs in machine.state("system_ops.kernel", dict).values():
        for pfn, order in allocs:
            machine.free_order(pfn, order, source="kernel_free")
    machine.state("system_ops.kernel", dict).clear()
    trace = machine.state("system_ops.trace", dict)
    for pfn in trace.pop("pages", []):  # tracing_reset / ring_buffer_free
        machine.free_order(pfn, 0, source="ring_buffer_free")
