"""The module loader consumer plugin: real ``.ko`` workloads, layouts, a relocation graph.

Registers the bundled workloads (one per modeled kernel), the ``load_module`` /
``unload_module`` scenario ops, the three module layouts (``contiguous``, ``rfc``,
``module-memory``), the ``permalloc ingest`` command and the ``--modules`` view of
``permalloc run``.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Literal

from pydantic import Field

from permalloc import Machine, hookimpl
from permalloc.model.kernelimage import ImageSection, KernelImage
from permalloc.report.tables import ReportColumn
from permalloc.run.scenario import Op, OpType
from permalloc.run.workloads import WorkloadSource, policy_workload, read_header

from . import cli
from .layouts import LAYOUTS
from .loader import ModuleLoader, get_workload
from .scenarios import SCENARIOS
from .workload import BUNDLED_WORKLOADS, bundled_workload_path

__version__ = "1.0"


def loader(machine: Machine) -> ModuleLoader:
    return machine.state("module_loader", lambda: ModuleLoader(machine))


class LoadModuleOp(Op):
    op: Literal["load_module"]
    module: str = Field(min_length=1)
    workload: str | None = Field(
        None, description="workload name (permalloc workloads) or file to take the module from (default: the machine's)"
    )
    machine: str | None = Field(
        None, description="only on a workload of this ELF machine (x86_64, aarch64): how a scenario states, per "
        "machine, what it loads"
    )


class UnloadModuleOp(Op):
    op: Literal["unload_module"]
    module: str = Field(min_length=1)
    machine: str | None = Field(
        None, description="only on a workload of this ELF machine (x86_64, aarch64): how a scenario states, per "
        "machine, what it loads"
    )


def _elsewhere(ctx: Any, op: LoadModuleOp | UnloadModuleOp) -> bool:
    return op.machine is not None and op.machine != loader(ctx.machine).workload.machine


def _load(ctx: Any, op: LoadModuleOp) -> None:
    if not _elsewhere(ctx, op):
        loader(ctx.machine).load(op.module, ctx.measure, op.workload)


def _unload(ctx: Any, op: UnloadModuleOp) -> None:
    if _elsewhere(ctx, op):
        return
    with ctx.measure("module_unload"):
        loader(ctx.machine).unload(op.module)


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return [
        OpType("load_module", LoadModuleOp, _load, kind="module_load", self_measured=True,
               description="load a module of the workload, its dependencies first, run init, free init"),
        OpType("unload_module", UnloadModuleOp, _unload, kind="module_unload", self_measured=True,
               description="unload a module (refused while others depend on it)"),
    ]


@hookimpl
def permalloc_report_columns() -> list[ReportColumn]:
    def loaded(result: Any) -> Any:
        return (result.extra.get("module_loader") or {}).get("modules_loaded", 0)

    def patcher_writes(result: Any) -> Any:
        patchers = (result.extra.get("module_loader") or {}).get("patchers", {})
        return sum(p.get("writes", 0) for p in patchers.values())

    return [
        ReportColumn("modules_loaded", "modules on the machine at the end (module loader)", loaded),
        ReportColumn("patcher_writes", "load-time writes of the text patchers (module loader)", patcher_writes),
    ]


@functools.cache
def _bundled() -> tuple[WorkloadSource, ...]:
    return tuple(read_header(bundled_workload_path(name), origin="module_loader (bundled)") for name in BUNDLED_WORKLOADS)


@hookimpl
def permalloc_register_workloads() -> list[WorkloadSource]:
    return list(_bundled())


@hookimpl
def permalloc_kernel_image(machine: Machine) -> KernelImage | None:
    """The vmlinux of the machine's workload (its sections and layout markers)."""
    source = machine.workload or policy_workload(machine.pm, machine.policy, machine.arch.machine)
    if source is None:
        return None
    vmlinux = get_workload(source.path).vmlinux
    if vmlinux is None:
        return None
    return KernelImage(
        release=vmlinux.kernel_release, machine=vmlinux.machine,
        sections=tuple(ImageSection(name=s.name, addr=s.addr, size=s.size, flags=s.flags, align=s.align)
                       for s in vmlinux.sections),
        layout={name: value for name, value in vmlinux.layout.items() if value is not None},
    )


@hookimpl
def permalloc_measurement_op(event: str, row: dict[str, str]) -> dict[str, Any] | None:
    """mod_load: finit_module of the object (its dependencies were loaded before it, in
    modprobe order); mod_unload: delete_module."""
    if event == "mod_load":
        return {"op": "load_module", "module": row["object"]}
    if event == "mod_unload":
        return {"op": "unload_module", "module": row["object"]}
    return None


@hookimpl
def permalloc_measurement_check(machine: Machine, event: str, row: dict[str, str]) -> dict[str, list[float]] | None:
    """/proc/modules' size of the module just loaded, by the rules of the policy's kernel."""
    if event != "mod_load" or not row.get("proc_modules_size", "").lstrip("-").isdigit():
        return None
    lm = loader(machine).loaded.get(row["object"].replace("-", "_"))
    if lm is None:
        return None
    return {"proc_modules_size": [int(row["proc_modules_size"]), loader(machine).proc_size(lm)]}


@hookimpl
def permalloc_register_scenarios() -> list[Any]:
    return list(SCENARIOS)


@hookimpl
def permalloc_module_layouts() -> list[Any]:
    return list(LAYOUTS)


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    state = machine.state("module_loader", lambda: None)
    if state is None:
        return None
    return {
        "module_loader": {
            "layout": state.layout.name,
            "mode": state.mode_for(),
            "modules_loaded": len(state.loaded),
            "reloc_out_of_range": state.violations,
            "plt_relocs": state.plt_relocs,
            "reloc_graph": {"nodes": state.graph.g.number_of_nodes(), "edges": state.graph.g.number_of_edges()},
            "patchers": state.patchers,
            "modules": state.proc_modules(),
        }
    }


@hookimpl
def permalloc_machine_release(machine: Machine) -> None:
    state = machine.state("module_loader", lambda: None)
    if state is not None:
        state.unload_all()


@hookimpl
def permalloc_add_commands(subparsers: argparse._SubParsersAction) -> None:
    cli.add_ingest_command(subparsers)
    run = subparsers.choices.get("run")
    if run is not None:
        run.add_argument("--modules", action="store_true",
                         help="list the loaded modules as /proc/modules would (module loader)")


@hookimpl
def permalloc_run_report(args: argparse.Namespace, result: Any, console: Any) -> None:
    if not getattr(args, "modules", False):
        return
    from rich.table import Table

    rows = (result.extra.get("module_loader") or {}).get("modules", [])
    table = Table(title=f"/proc/modules ({len(rows)} modules)", header_style="bold")
    for col, justify in (("module", "left"), ("size", "right"), ("used by", "left"), ("state", "left"),
                         ("address", "left"), ("allocated", "right")):
        table.add_column(col, justify=justify)
    for row in rows:
        table.add_row(row["name"], str(row["size"]), ",".join(row["used_by"]) or "-", row["state"],
                      row["address"] or "-", str(row["allocated"]))
    console.print(table)
