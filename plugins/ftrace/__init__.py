"""ftrace: a module's mcount sites at load, and function tracing switched on and off at run time.

Load (kernel/trace/ftrace.c:ftrace_module_init, 6.1 l.7174; 6.12 l.7561; called by
load_module while the module is UNFORMED, before complete_formation):
ftrace_process_locs (6.1 l.6739; 6.12 l.7082) sorts the module's ``__mcount_loc`` in place
(one rewrite of ``8 n`` bytes of rodata, still RW), allocates ``dyn_ftrace`` records
(ftrace_allocate_records, 6.1 l.3205: groups of ``2^order`` pages from the page allocator,
256 records per page) and ftrace_update_code turns every site into a NOP:
ftrace_init_nop -> ftrace_make_nop -> ftrace_modify_code_direct
(arch/x86/kernel/ftrace.c 6.1 l.108) -> text_poke_early of MCOUNT_INSN_SIZE (5) bytes, a
plain memcpy into the still-RW final mapping (Debian builds with ``-mrecord-mcount``
(FTRACE_MCOUNT_USE_CC), so ftrace_need_init_nop() is true). The sites are the entries of
FTRACE_CALLSITE_SECTION, ``__mcount_loc`` on x86 (see
:attr:`ElfMachine.ftrace_callsite_section` of x86's arch plugin; 6.12 modules also have
a ``__patchable_function_entries`` for call padding, which ftrace does not read). The RFC
points these writes at the staging buffer. Counted: ``n + 1`` writes, ``5 n + 8 n`` bytes.

COMING (ftrace_module_enable, 6.1 l.7093; 6.12 l.7481, from prepare_coming_module): if
tracing is on, every site of the module becomes a call again with text_poke_queue, and
ftrace_arch_code_modify_post_process ends with text_poke_finish: batches of at most
TP_VEC_MAX (256), 3 sync IPI rounds each.

Run time, the ``ftrace`` op (``{"op": "ftrace", "enable": true}``): ftrace_startup /
ftrace_shutdown -> ftrace_modify_all_code (6.1 l.2797; 6.12 l.2888) with
FTRACE_UPDATE_TRACE_FUNC (the traced function changes between ftrace_stub and the tracer):

1. ftrace_update_ftrace_func(ftrace_ops_list_func): text_poke_bp on ``ftrace_call`` and on
   ``ftrace_regs_call`` (arch/x86/kernel/ftrace.c 6.1 l.175): 2 batches of one site;
2. ftrace_replace_code (x86, 6.1 l.193): text_poke_queue of every record to change, in
   ftrace-page order (vmlinux first, then modules in load order), then text_poke_finish: a
   flush every 256 records and whenever the address goes down (tp_order_fail);
3. smp_call_function(ftrace_sync_ipi): one IPI round;
4. ftrace_update_ftrace_func(the tracer, or ftrace_stub): 2 more single-site batches.

The issue asks for the traceable sites of loaded modules; vmlinux's own sites are patched
too only when the op says ``"vmlinux": true``: the run-time sites of the workload's vmlinux
(``VmlinuxTables.mcount_loc_runtime``, the records left once ftrace_free_init_mem dropped the
init-text ones); a disable undoes whatever the enable patched. Enabling while enabled (or
disabling while disabled) does nothing.

Going (ftrace_release_mod, 6.1 l.7018; 6.12 l.7407): the module's record pages are freed;
no text is written.

Assumptions: the workload has no site addresses, so a module's sites are spread evenly
over its core text (init functions are traceable too, but the init-text records that
ftrace_free_mem drops after init are not modelled separately), and vmlinux's over its .text.
``ftrace_call``/``ftrace_regs_call`` are symbols, which the stripped image does not have: they
sit at model offsets in the middle of vmlinux text (:func:`ftrace_func_sites`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from permalloc import ArchInfo, Machine, PermallocError, SpecError, hookimpl
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugins.module_loader import loader
from permalloc.plugins.module_loader.elfmachines import elf_machine
from permalloc.plugins.module_loader.patching import (
    PatchCost,
    class_bytes,
    section_span,
    spread,
    vmlinux_text,
    x86_tables,
)
from permalloc.plugins.module_loader.patching import vmlinux as vmlinux_info
from permalloc.plugins.module_loader.workload import MemClass
from permalloc.run.scenario import Op, OpType

__version__ = "1.0"

MCOUNT_INSN_SIZE = 5  # arch/x86/include/asm/ftrace.h 6.1 l.10
MCOUNT_LOC_ENTRY = 8  # unsigned long per site in __mcount_loc
ENTRIES_PER_PAGE = 256  # kernel/trace/ftrace.c 6.1 l.1104: PAGE_SIZE / sizeof(struct dyn_ftrace)



def ftrace_func_sites(machine: Machine) -> tuple[int, int]:
    """Model offsets of ftrace_call / ftrace_regs_call in vmlinux text (in ftrace_caller /
    ftrace_regs_caller; the stripped image has no symbols): the middle of the text."""
    middle = vmlinux_info(machine).text_size // 2
    return middle, middle + 0x100


@dataclass
class ModuleRecords:
    sites: list[tuple[int, int]]  # (final address, MCOUNT_INSN_SIZE), ascending
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (pfn, order) of the dyn_ftrace record groups


@dataclass
class FtraceState:
    enabled: bool = False
    vmlinux: bool = False  # vmlinux's sites are calls (enabled with "vmlinux": true)
    modules: dict[str, ModuleRecords] = field(default_factory=dict)  # in load order
    toggles: int = 0
    sites_patched: int = 0
    batches: int = 0


def state(machine: Machine) -> FtraceState:
    return machine.state("ftrace", FtraceState)


def callsite_section(machine: Machine) -> str:
    """FTRACE_CALLSITE_SECTION of the kernel the workload's modules were built for
    (kernel/module/main.c:find_module_sections), as the installed arch plugin that contributes
    their ELF machine says (whatever arch the machine simulates)."""
    return machine.state("ftrace_callsite", lambda: _callsite_section(loader(machine).workload.machine))


def _callsite_section(name: str) -> str:
    arch = elf_machine(registry_manager(), name)
    if arch is None:
        raise PermallocError(f"ftrace: no installed arch plugin contributes ELF machine {name}")
    return arch.ftrace_callsite_section


def record_groups(count: int) -> list[int]:
    """ftrace_allocate_pages -> ftrace_allocate_records: the order of each record group, one
    __get_free_pages(GFP_KERNEL | __GFP_ZERO, order) each."""
    groups = []
    while count > 0:
        pages = -(-count // ENTRIES_PER_PAGE)
        order = pages.bit_length() - 1  # order = fls(pages) - 1
        groups.append(order)
        count -= min(count, (1 << order) * ENTRIES_PER_PAGE)
    return groups


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # 5-byte __mcount_loc call sites and text_poke_queue: arch/x86/kernel/ftrace.c


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    section = callsite_section(machine)
    count = module.info.table(section)
    if not count:
        return None
    cost = PatchCost(machine)
    writes = nbytes = 0
    span = section_span(module.info, section)
    if span is not None and span[2]:
        staging.store(span[0], span[1], span[2], "ftrace_process_locs/sort")
        writes += 1
        nbytes += span[2]
    offsets = spread(class_bytes(module.info, MemClass.TEXT), count, MCOUNT_INSN_SIZE)
    staging.store_sites(MemClass.TEXT, offsets, MCOUNT_INSN_SIZE, "ftrace_init_nop/text_poke_early")
    writes += len(offsets)
    nbytes += len(offsets) * MCOUNT_INSN_SIZE
    records = ModuleRecords([(module.address(MemClass.TEXT, off), MCOUNT_INSN_SIZE) for off in offsets])
    for order in record_groups(len(offsets)):
        pfn = machine.alloc_order(order, source="ftrace_allocate_records")
        records.blocks.append((pfn, order))
    state(machine).modules[module.name] = records
    return cost.report("ftrace", stage="finalize", writes=writes, bytes=nbytes, sites=len(offsets),
                       record_pages=sum(1 << order for _, order in records.blocks))


@hookimpl
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    st = state(machine)
    records = st.modules.get(module.name)
    if not st.enabled or records is None:
        return None
    # ftrace_module_enable: the module's records become calls, queued and flushed in batches
    cost = PatchCost(machine)
    batches = machine.text.queue(records.sites, source="ftrace_module_enable/text_poke_queue")
    return cost.report("ftrace", stage="coming", writes=len(records.sites),
                       bytes=len(records.sites) * MCOUNT_INSN_SIZE, batches=batches)


@hookimpl
def permalloc_module_going(machine: Machine, module: Any) -> None:
    records = state(machine).modules.pop(module.name, None)
    if records is not None:
        for pfn, order in records.blocks:
            machine.free_order(pfn, order, source="ftrace_release_mod")


def _update_ftrace_func(machine: Machine) -> None:
    base = vmlinux_text(machine)
    for offset in ftrace_func_sites(machine):
        machine.text.live([(base + offset, MCOUNT_INSN_SIZE)], source="ftrace_update_ftrace_func")


def toggle(machine: Machine, enable: bool, vmlinux: bool = False) -> int:
    """ftrace_startup / ftrace_shutdown of the function tracer; returns the sites patched."""
    st = state(machine)
    if enable == st.enabled:
        return 0
    with_vmlinux = vmlinux if enable else st.vmlinux
    sites: list[tuple[int, int]] = []
    if with_vmlinux:
        base = vmlinux_text(machine)
        image = vmlinux_info(machine)
        offsets = spread(image.text_size, image.tables.mcount_loc_runtime, MCOUNT_INSN_SIZE)
        sites += [(base + off, MCOUNT_INSN_SIZE) for off in offsets]
    for records in st.modules.values():
        sites += records.sites
    _update_ftrace_func(machine)  # to ftrace_ops_list_func
    batches = machine.text.queue(sites, source="ftrace_replace_code/text_poke_queue")
    machine.sync_cores(source="ftrace_sync_ipi")  # smp_call_function(ftrace_sync_ipi)
    _update_ftrace_func(machine)  # to the tracer (or back to ftrace_stub)
    st.enabled, st.vmlinux = enable, enable and vmlinux
    st.toggles += 1
    st.sites_patched += len(sites)
    st.batches += batches
    return len(sites)


class FtraceOp(Op):
    op: Literal["ftrace"]
    enable: bool
    vmlinux: bool = False


def _ftrace(ctx: Any, op: FtraceOp) -> None:
    results = ctx.machine.hook.permalloc_runtime_patch(machine=ctx.machine, kind="ftrace", params=op.model_dump())
    if all(result is None for result in results):
        raise SpecError("ftrace: no plugin patches ftrace sites")


@hookimpl
def permalloc_runtime_patch(machine: Machine, kind: str, params: dict[str, Any]) -> int | None:
    if kind != "ftrace":
        return None
    return toggle(machine, bool(params.get("enable")), bool(params.get("vmlinux", False)))


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return [
        OpType("ftrace", FtraceOp, _ftrace, kind="runtime_patch",
               description="function tracing on/off: patch every mcount site of the loaded modules "
               "(and vmlinux's with vmlinux=true) in text_poke_bp batches"),
    ]


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    st = machine.state("ftrace", lambda: None)
    if st is None:
        return None
    return {"ftrace": {
        "enabled": st.enabled, "toggles": st.toggles, "sites_patched": st.sites_patched, "batches": st.batches,
        "modules": len(st.modules), "record_pages": sum(1 << o for r in st.modules.values() for _, o in r.blocks),
    }}


@hookimpl(trylast=True)
def permalloc_machine_release(machine: Machine) -> None:
    # After the module loader unloaded everything nothing is left; free what still is.
    st = machine.state("ftrace", lambda: None)
    if st is not None:
        for records in st.modules.values():
            for pfn, order in records.blocks:
                machine.free_order(pfn, order, source="ftrace_release_mod")
        st.modules.clear()
