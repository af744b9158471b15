"""Hook specifications: everything that a plugin can implement.

Every hook takes keyword arguments (pluggy's rule) and a plugin implements only the ones it
needs, with any subset of the arguments. Three families:

* **arch hooks** carry out the steps of the perm_alloc contract and describe the arch. They
  are ``firstresult``: the first implementation that returns something other than ``None``
  wins. The ``generic`` arch implements all of them with ``trylast``, so a specialised arch
  (``x86``) overrides what it does better and inherits the rest; a new arch can start from
  ``permalloc_arch_describe`` alone.
* **consumer hooks** are called on every implementation: the module loader, the text
  patchers, the BPF JIT and friends use them to talk to each other without importing each
  other.
* **observer and registry hooks** see every event and contribute named policies, scenarios,
  scenario ops, report columns and CLI commands.

A :class:`~permalloc.machine.Machine` has its own plugin manager holding the selected arch,
the generic fallback and every consumer/observer plugin (see ``permalloc plugins``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from permalloc.machine import Machine
    from permalloc.mechanisms.archmechanisms import ArchMechanisms
    from permalloc.model.archinfo import ArchInfo, VRange
    from permalloc.model.elfmachine import ElfMachine
    from permalloc.model.events import Event, EventKind
    from permalloc.model.kernelimage import KernelImage
    from permalloc.model.memblock import BootMemory, Memblock
    from permalloc.model.perms import Perm
    from permalloc.model.spec import MachineSpec
    from permalloc.plugin.contract import PermAllocation
    from permalloc.plugin.policy import PolicySpec
    from permalloc.report.tables import ReportColumn
    from permalloc.run.scenario import OpType, ScenarioSource
    from permalloc.run.workloads import WorkloadSource

PROJECT = "permalloc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------
# Arch hooks (firstresult)
# ---------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def permalloc_arch_describe(spec: MachineSpec, policy: PolicySpec) -> ArchInfo | None:
    """Describe the arch: address ranges, page sizes, relocation reach, features.

    :param spec: the machine spec (an arch may size its ranges from it).
    :param policy: the policy of the run: its ``kernel`` names the kernel whose layout to
        follow (arm64's module area changed in 6.5). Listing arches (``permalloc plugins``)
        passes the default policy.

    Called once when a :class:`Machine` is built. An implementation that returns an
    :class:`~permalloc.model.archinfo.ArchInfo` makes its plugin an *arch plugin*, selectable by
    ``ArchInfo.name`` with ``--arch``. Stops at the first non-None result.
    """


@hookspec
def permalloc_applies(arch: ArchInfo, policy: PolicySpec) -> bool:
    """Whether this plugin takes part in a machine of ``arch`` under ``policy``.

    Called on each implementation separately, once per machine, right after the arch is
    chosen: a plugin that answers False is left out of that machine entirely (a patcher of
    x86 tables on an arm64 machine). A plugin without it takes part everywhere. Must return
    a bool.
    """


@hookspec(firstresult=True)
def permalloc_arch_mechanisms(machine: Machine) -> ArchMechanisms | None:
    """Choose the arch's mechanisms for ``machine``: TLB invalidation, text patching,
    whether the direct map can be changed (:class:`~permalloc.mechanisms.archmechanisms.ArchMechanisms`).

    Called once per machine after its arch is described and before it boots, so
    ``machine.spec`` (e.g. its ``cpu_features``), ``machine.policy`` and ``machine.kernel``
    are known and nothing has run yet. The ``generic`` arch answers with IPI flushes
    (ceiling 33) and the fixmap patcher. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_arch_boot_memory(spec: MachineSpec, image: KernelImage | None) -> BootMemory | None:
    """Describe the machine's memory as its firmware and boot loader leave it.

    :param spec: the machine spec (RAM size, NUMA nodes, ``platform``, ``initrd`` size, seed).
    :param image: the kernel image that boots (its size decides where it fits), or None.

    Called once per machine, before anything is allocated. Return a
    :class:`~permalloc.model.memblock.BootMemory`: the platform's firmware map, the RAM the
    kernel's memblock ends up with (per NUMA node), early reservations, the zone limits, and
    where the kernel image and the initrd were put (x86: e820, KASLR). The ``generic`` arch
    gives RAM from 0 with no holes. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_arch_direct_map(spec: MachineSpec, memblock: Memblock) -> tuple[list[tuple[int, int, int]], dict[int, int]] | None:
    """Build the direct map (linear map of RAM) as the arch's boot code does.

    :param memblock: memblock.memory and the reservations made so far.

    Return ``(leaves, counts)``: the mapped ``(start_pfn, end_pfn, leaf_pages)`` ranges and
    the boot value of the DirectMap counters by leaf size in pages (x86:
    direct_pages_count[] after init_mem_mapping). The ``generic`` arch maps every RAM range
    with the largest aligned leaves. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_kernel_image(machine: Machine) -> KernelImage | None:
    """The kernel image (vmlinux layout) ``machine`` runs, before it boots: the module loader
    answers from the machine's workload (``machine.workload``, or the policy's). None: boot
    without an image (no image reservation or image-mapping work). Stops at the first
    non-None result."""


@hookspec(firstresult=True)
def permalloc_alloc(machine: Machine, size: int, perm: Perm, vrange: VRange) -> PermAllocation | None:
    """Reserve memory that will end up with permission ``perm`` (RFC: ``perm_alloc``).

    :param machine: the machine to allocate on.
    :param size: bytes requested (not rounded).
    :param perm: the final permission; never W and X together.
    :param vrange: the kernel range to allocate in (module or vmalloc area).

    Return a :class:`~permalloc.plugin.contract.PermAllocation` whose ``addr`` is the final address
    and whose ``staging`` is the address the caller writes through until ``finish``. Stops at
    the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_writable(machine: Machine, alloc: PermAllocation) -> int | None:
    """Return the address where the caller writes the content of ``alloc`` before ``finish``.

    It is the final address while that is still writable (the pre-RFC path) or a separate
    staging buffer (the RFC's ``perm_writable_addr``). Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_finish(machine: Machine, alloc: PermAllocation) -> bool | None:
    """Make ``alloc`` live at its final permission (RFC: ``perm_writable_finish``).

    Load the staged content (copy with text_poke, or change the permissions of the mapping
    that was written) and leave no writable alias of an executable page. Return True when
    done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_change(machine: Machine, alloc: PermAllocation, perm: Perm) -> bool | None:
    """Change a live allocation's permission (e.g. ro_after_init: RW -> R). Return True when done.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_poke(machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool | None:
    """Patch ``length`` bytes at ``offset`` of a live allocation (text_poke style).

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_free(machine: Machine, alloc: PermAllocation) -> bool | None:
    """Release ``alloc``: its mapping, its pages, its direct-map permissions. Return True when done.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_shrink(machine: Machine, pages: int) -> int | None:
    """Memory pressure: give back up to ``pages`` cached pages; return how many were freed.

    Called by the ``pressure`` op (a shrinker's ``scan_objects``). Stops at the first
    non-None result.
    """


@hookspec(firstresult=True)
def permalloc_set_memory(
    machine: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str
) -> bool | None:
    """Change the permission of ``npages`` pages mapped at ``addr`` (the ``set_memory_*`` API).

    :param set_mask: permission bits to set; :param clear_mask: bits to clear.
    :param source: the kernel function being modelled (``set_memory_ro``, ...), for events.

    Used by consumers that follow a kernel which calls ``set_memory_*`` itself (the 6.1
    module loader, the pre-5.18 BPF JIT). Return True when done. Stops at the first non-None
    result.
    """


@hookspec(firstresult=True)
def permalloc_bpf_jit_image(machine: Machine, kind: str, insns: int) -> tuple[int, int, int] | None:
    """Size the arch's BPF JIT image of one program.

    :param kind: ``"ebpf"`` or ``"seccomp"`` (a classic filter, converted first).
    :param insns: instructions as loaded (eBPF slots, or cBPF instructions).

    Called by the BPF JIT consumer for every program it loads. Return ``(jited_len,
    binary_align, pack_align)``: the bytes the arch's JIT emits and the alignment it passes
    to bpf_jit_binary_alloc and to bpf_jit_binary_pack_alloc. The JIT of each arch is its
    own (arch/*/net/bpf_jit_comp.c). Stops at the first non-None result; None from every
    plugin means the arch has no JIT size model, which is an error.
    """


# ---------------------------------------------------------------------------------------
# Consumer hooks (every implementation runs)
# ---------------------------------------------------------------------------------------


@hookspec
def permalloc_module_layouts() -> list[Any]:
    """Contribute module layout policies (objects with ``name``, ``description``, ``plan``).

    Called by the module loader when it starts; a policy's ``module_layout`` names one.
    """


@hookspec
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    """Patch a module's staged copy before it goes live (alternatives, ORC, jump labels, ...).

    :param module: the loaded-module record of the module loader.
    :param staging: where writes land (the allocations and whether they are still writable).

    Called once per module load, after relocation and before ``finish``. Return a report
    ``{"patcher": name, "writes": n, "bytes": b, ...}`` or None.
    """


@hookspec
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    """A module's text is live (RO+X) and it is about to run its init (MODULE_STATE_COMING).

    Patchers that the kernel runs from the COMING notifier (jump labels, static calls) patch
    live text here, with text_poke machinery. Return a report like ``permalloc_module_finalize``.
    """


@hookspec
def permalloc_module_going(machine: Machine, module: Any) -> None:
    """A module is being unloaded: release what you hold for it (ftrace records, keys)."""


@hookspec
def permalloc_runtime_patch(machine: Machine, kind: str, params: dict[str, Any]) -> int | None:
    """A run-time text change was requested (``static_key`` flip, ``ftrace`` toggle).

    :param kind: the op name; :param params: its fields.

    Implementations that own sites of that kind patch live text and return how many sites
    they patched; others return None.
    """


# ---------------------------------------------------------------------------------------
# Observer and registry hooks
# ---------------------------------------------------------------------------------------


@hookspec
def permalloc_machine_start(machine: Machine) -> None:
    """A machine was built and its arch described; set up per-machine state."""


@hookspec
def permalloc_machine_boot(machine: Machine, stage: str) -> None:
    """Boot-time work of the kernel on a machine whose page allocator is up.

    :param stage: ``"mm_init"`` (start_kernel, right after memblock_free_all: the early part
        of RAM is in the buddy allocator; x86 preallocates vmalloc page tables, maps its image
        and write-protects the IDT), ``"initcalls"`` (all RAM is free, watermarks are set and
        the kernel's initcalls run: consumers allocate what the kernel allocates at boot, e.g.
        the BPF JIT's ptp classifier program) or ``"late"`` (the end of kernel_init: the arch
        frees init memory and write-protects the kernel image, x86 free_initmem and
        mark_rodata_ro).

    Called three times per machine, in that order, before ``permalloc_machine_start``. Boot events
    shape the machine's state (DirectMap, free lists) but are not counted in the run's metrics.
    """


@hookspec
def permalloc_machine_release(machine: Machine) -> None:
    """The run is over: consumers release everything they still hold (unload modules, programs).

    Called before ``permalloc_machine_teardown``, so that arch caches are drained after the
    last free.
    """


@hookspec
def permalloc_machine_teardown(machine: Machine) -> list[str] | None:
    """After release: arches drain their caches, observers check; return problems found (leaks)."""


@hookspec
def permalloc_event(machine: Machine, event: Event) -> None:
    """See one event (after its cost was folded into the metrics). Called very often: be quick."""


@hookspec
def permalloc_event_kinds() -> list[EventKind]:
    """Declare the event kinds you emit (:class:`~permalloc.model.events.EventKind`): which
    counters each feeds, whether it is an IPI round, its cost. An event of an undeclared kind
    is an error naming the kind and its source."""


@hookspec
def permalloc_register_ops() -> list[OpType]:
    """Contribute scenario ops (:class:`~permalloc.run.scenario.OpType`): name, model, handler."""


@hookspec
def permalloc_register_policies() -> list[PolicySpec]:
    """Contribute named policies (:class:`~permalloc.plugin.policy.PolicySpec`)."""


@hookspec
def permalloc_register_scenarios() -> list[ScenarioSource]:
    """Contribute named scenarios (:class:`~permalloc.run.scenario.ScenarioSource`)."""


@hookspec(firstresult=True)
def permalloc_measurement_op(event: str, row: dict[str, str]) -> dict[str, Any] | None:
    """Translate one row of a measurement file (docs/measurements.md) into a scenario op.

    :param event: the row's ``event`` column (``mod_load``, ``bpf_load`` ...).
    :param row: every column of the row, as text.

    Called by ``permalloc validate`` for each measured event, in order. Return the op (a dict
    as in a scenario file) that does what the measured operation did, or None if the event is
    not yours. Stops at the first non-None result.
    """


@hookspec
def permalloc_measurement_check(machine: Machine, event: str, row: dict[str, str]) -> dict[str, list[float]] | None:
    """After a measured event was replayed: compare columns you can check on ``machine``.

    Return ``{column: [measured, simulated]}`` (e.g. the module loader checks
    ``proc_modules_size`` after ``mod_load``), or None. Every implementation runs.
    """


@hookspec
def permalloc_elf_machines() -> list[ElfMachine]:
    """Contribute the ELF machines whose modules ``permalloc ingest`` can read
    (:class:`~permalloc.model.elfmachine.ElfMachine`): ``e_machine``, relocation names, the
    arch's module tables per kernel version and its ``module_frob_arch_sections``.

    Called once per ingest (in the main process; the machines are sent to the workers). An
    arch contributes its own machine; a module of a machine nobody contributes is refused
    with its file name, as ``elf_check_arch`` refuses it.
    """


@hookspec
def permalloc_register_workloads() -> list[WorkloadSource]:
    """Contribute named workloads (:class:`~permalloc.run.workloads.WorkloadSource`).

    A workload is the data of one kernel package (its modules and vmlinux facts, as
    ``permalloc ingest`` writes them). Build each source with
    :func:`~permalloc.run.workloads.read_header` from its file. ``permalloc workloads``
    lists them; ``--workload NAME`` and a policy's ``workload`` name them.
    """


@hookspec
def permalloc_report_columns() -> list[ReportColumn]:
    """Contribute extra rows of the totals table (:class:`~permalloc.report.tables.ReportColumn`)."""


@hookspec
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    """Add plugin-specific figures to a run's result (e.g. per-patcher write counts)."""


@hookspec
def permalloc_run_report(args: argparse.Namespace, result: Any, console: Any) -> None:
    """After ``permalloc run`` printed its tables: print extra views asked for by your options."""


@hookspec
def permalloc_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands to the ``permalloc`` CLI; set ``func=`` to a callable returning an exit code."""


# What an implementation must return (None is always allowed). Checked at call time, so a
# plugin that returns the wrong type is named in the error.
RETURN_TYPES: dict[str, str] = {
    "permalloc_arch_describe": "ArchInfo",
    "permalloc_arch_mechanisms": "ArchMechanisms",
    "permalloc_arch_boot_memory": "BootMemory",
    "permalloc_arch_direct_map": "tuple",
    "permalloc_kernel_image": "KernelImage",
    "permalloc_alloc": "PermAllocation",
    "permalloc_writable": "int",
    "permalloc_finish": "bool",
    "permalloc_change": "bool",
    "permalloc_poke": "bool",
    "permalloc_free": "bool",
    "permalloc_shrink": "int",
    "permalloc_set_memory": "bool",
    "permalloc_bpf_jit_image": "tuple",
    "permalloc_module_layouts": "list",
    "permalloc_module_finalize": "dict",
    "permalloc_module_coming": "dict",
    "permalloc_runtime_patch": "int",
    "permalloc_machine_teardown": "list",
    "permalloc_register_ops": "list",
    "permalloc_event_kinds": "list",
    "permalloc_register_policies": "list",
    "permalloc_register_scenarios": "list",
    "permalloc_register_workloads": "list",
    "permalloc_elf_machines": "list",
    "permalloc_report_columns": "list",
    "permalloc_result_extra": "dict",
    "permalloc_measurement_op": "dict",
    "permalloc_measurement_check": "dict",
}
