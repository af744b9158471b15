"""Plugins with one deliberate fault each (tests/framework/test_faulty_plugins.py).

Each object below is one entry point of this package. A test enables the ones it needs;
every other permalloc command must keep working and name the faulty plugin in one line.
"""

from __future__ import annotations

from typing import Any, Literal

from permalloc import ArchInfo, Perm, hookimpl
from permalloc.arches import generic
from permalloc.plugin.contract import PermAllocation
from permalloc.report.tables import ReportColumn
from permalloc.run.scenario import Op, OpType


class _Plugin:
    def __init__(self, name: str) -> None:
        self.name = name


class _RaisingPolicies(_Plugin):
    @hookimpl
    def permalloc_register_policies(self) -> list:
        raise RuntimeError("policy table missing")


class _WrongScenarios(_Plugin):
    @hookimpl
    def permalloc_register_scenarios(self) -> list:
        return [42]


class _RaisingOps(_Plugin):
    @hookimpl
    def permalloc_register_ops(self) -> list:
        raise KeyError("op table")


class _RaisingCommands(_Plugin):
    @hookimpl
    def permalloc_add_commands(self, subparsers: Any) -> None:
        raise RuntimeError("no parser for you")


class BoomOp(Op):
    op: Literal["faulty_boom"]


class SpinOp(Op):
    op: Literal["faulty_spin"]


class EventOp(Op):
    op: Literal["faulty_event"]


def _boom(ctx: Any, op: BoomOp) -> None:
    raise ZeroDivisionError("division by zero in the handler")


def _spin(ctx: Any, op: SpinOp) -> None:
    while True:  # a plugin that never returns: --timeout and killing the parent must stop it
        pass


def _event(ctx: Any, op: EventOp) -> None:
    ctx.machine.emit("faulty_flush", 1, source="faulty")


class _OpsPlugin(_Plugin):
    def __init__(self, name: str, optype: OpType) -> None:
        super().__init__(name)
        self.optype = optype

    @hookimpl
    def permalloc_register_ops(self) -> list:
        return [self.optype]


class _SameAddressTwice(_Plugin):
    """Answers permalloc_alloc first (tryfirst) once something is live: with its address."""

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine: Any, size: int, perm: Any, vrange: Any) -> PermAllocation | None:
        live = list(machine.perm.live.values())
        if not live:
            return None
        return PermAllocation(live[0].addr, size, perm, vrange.name, allocated=size)


class _OutsideTheRange(_Plugin):
    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine: Any, size: int, perm: Any, vrange: Any) -> PermAllocation:
        return PermAllocation(vrange.end, size, perm, vrange.name, allocated=size)


class _NanExtra(_Plugin):
    @hookimpl
    def permalloc_result_extra(self, machine: Any) -> dict:
        return {"faulty": {"ratio": float("nan")}}


class _SetExtra(_Plugin):
    @hookimpl
    def permalloc_result_extra(self, machine: Any) -> dict:
        return {"faulty": {"cpus": {0, 1}}}


class _DecliningArch(_Plugin):
    """An arch plugin that serves no spec at all."""

    @hookimpl
    def permalloc_arch_describe(self, spec: Any, policy: Any) -> None:
        return None


class _FaultyArch(_Plugin):
    """An arch that is generic with one contract step broken (``--arch NAME``)."""

    @hookimpl
    def permalloc_arch_describe(self, spec: Any, policy: Any) -> ArchInfo:
        return ArchInfo(name=self.name, description="generic with a planted contract fault",
                        page_offset=generic.PAGE_OFFSET,
                        ranges={"vmalloc": generic.VMALLOC, "module": generic.VMALLOC.model_copy(update={"name": "module"})})


class _LazyFinish(_FaultyArch):
    """finish does nothing: the text never becomes read-only or executable."""

    @hookimpl
    def permalloc_finish(self, machine: Any, alloc: PermAllocation) -> bool:
        return True


class _ChangeKeepsOld(_FaultyArch):
    """change does nothing: the allocation keeps its old permission."""

    @hookimpl
    def permalloc_change(self, machine: Any, alloc: PermAllocation, perm: Perm) -> bool:
        return True


class _FreeKeepsMapping(_FaultyArch):
    """free gives the pages back to the page allocator but leaves them mapped."""

    @hookimpl
    def permalloc_free(self, machine: Any, alloc: PermAllocation) -> bool:
        machine.free_pages(alloc.backend["area"].pages, source="faulty_free")
        return True


class _FreeKeepsTlb(_FaultyArch):
    """free unmaps lazily and gives the pages back with no flush (no VM_FLUSH_RESET_PERMS)."""

    @hookimpl
    def permalloc_free(self, machine: Any, alloc: PermAllocation) -> bool:
        area = alloc.backend["area"]
        area.reset_perms = False
        machine.vmalloc.vfree(area, source="faulty_vfree")
        return True



class _WrongAnswer(_Plugin):
    """Answers one hook first (tryfirst) with something of the wrong shape."""

    def __init__(self, name: str, hook: str, answer: Any) -> None:
        super().__init__(name)
        self.answer = answer

        def answer_it(**kwargs: Any) -> Any:
            return self.answer

        answer_it.__name__ = hook
        setattr(self, hook, hookimpl(tryfirst=True)(answer_it))


def _boom_column(result: Any) -> int:
    return 1 // 0


raising_policies = _RaisingPolicies("faulty_policies")
wrong_scenarios = _WrongScenarios("faulty_scenarios")
raising_ops = _RaisingOps("faulty_ops")
raising_commands = _RaisingCommands("faulty_commands")
raising_handler = _OpsPlugin("faulty_handler", OpType("faulty_boom", BoomOp, _boom))
spinning_handler = _OpsPlugin("faulty_spin", OpType("faulty_spin", SpinOp, _spin))
undeclared_event = _OpsPlugin("faulty_event", OpType("faulty_event", EventOp, _event))
same_address_twice = _SameAddressTwice("faulty_twice")
outside_the_range = _OutsideTheRange("faulty_outside")
nan_extra = _NanExtra("faulty_nan")
set_extra = _SetExtra("faulty_set")
declining_arch = _DecliningArch("faulty_declines")
lazy_finish = _LazyFinish("faulty_finish")
change_keeps_old = _ChangeKeepsOld("faulty_change")
free_keeps_mapping = _FreeKeepsMapping("faulty_free_mapped")
free_keeps_tlb = _FreeKeepsTlb("faulty_free_tlb")
# one wrong answer each, of a hook whose answer's shape the framework checks
wrong_direct_map = _WrongAnswer("faulty_direct_map", "permalloc_arch_direct_map", ([("0", 1, 512)], {}))
wrong_jit_image = _WrongAnswer("faulty_jit", "permalloc_bpf_jit_image", (100, 0))
wrong_layouts = _WrongAnswer("faulty_layouts", "permalloc_module_layouts", ["contiguous"])
wrong_teardown = _WrongAnswer("faulty_teardown", "permalloc_machine_teardown", [42])
wrong_shrink = _WrongAnswer("faulty_shrink", "permalloc_shrink", -1)
wrong_writable = _WrongAnswer("faulty_writable", "permalloc_writable", True)
wrong_patch = _WrongAnswer("faulty_patch", "permalloc_runtime_patch", True)
wrong_elf = _WrongAnswer("faulty_elf", "permalloc_elf_machines", 7)
wrong_check = _WrongAnswer("faulty_check", "permalloc_measurement_check", {"proc_modules_size": 3})
raising_column = _WrongAnswer("faulty_column", "permalloc_report_columns", [ReportColumn("boom", "divides by zero",
                                                                                         _boom_column)])

