"""Hook specifications: everything that a plugin can implement.

Every hook takes keyword arguments (pluggy's rule) and a plugin implements only the ones it
needs, with any subset of the arguments. Each hook's docstring says what its arguments are,
when it is called and what its return value means; ``permalloc hooks -v`` prints them with
their signatures, families and ordering advice. Four families (:data:`FAMILIES`, one per
section of this file):

* **arch hooks** describe the arch, choose its mechanisms, boot its memory and carry out the
  steps of the perm_alloc contract. Most are ``firstresult``: the first implementation that
  returns something other than ``None`` wins. The ``generic`` arch implements the contract
  and boot hooks with ``trylast``, so a specialised arch (``x86``) overrides what it does
  better and inherits the rest; a new arch can start from ``permalloc_arch_describe`` alone.
* **consumer hooks** are called on every implementation: the module loader, the text
  patchers, the BPF JIT and friends use them to talk to each other without importing each
  other.
* **observer hooks** follow a machine's life (boot stages, start, release, teardown) and see
  every event.
* **registry and report hooks** contribute named policies, scenarios, scenario ops, event
  kinds, workloads, ELF machines, measurement replays, report rows and CLI commands.

A :class:`~permalloc.machine.Machine` has its own plugin manager holding the selected arch,
the generic fallback and every consumer/observer plugin that applies to the arch (see
``permalloc plugins``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

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
_F = TypeVar("_F", bound=Callable[..., Any])


def watching(*kinds: str) -> Callable[[_F], _F]:
    """Mark a ``permalloc_event`` implementation as seeing only events of ``kinds``.

    The machine then calls it for those kinds only: most of a run's events (page-table
    walks, allocations, metric-only kinds) reach no observer at all. An implementation
    without the mark sees every event.
    """

    def mark(function: _F) -> _F:
        function.permalloc_watches = frozenset(kinds)  # type: ignore[attr-defined]
        return function

    return mark


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

    Called on every implementation, one by one (not as a firstresult call), each time a
    :class:`Machine` is built and whenever arches are listed: each implementation describes its
    own arch, the spec's ``arch`` picks one by ``ArchInfo.name``, and the arch plugins not
    picked (other than ``generic``) are unregistered from that machine.

    Return an :class:`~permalloc.model.archinfo.ArchInfo`: that makes the plugin an *arch
    plugin*, selectable with ``--arch``. Return None when the plugin does not serve this spec
    or policy (a kernel it does not model): it is left out of this machine's choices, and
    naming its arch gives an error that says so. Any other result is an error naming the
    plugin.
    """


@hookspec
def permalloc_applies(arch: ArchInfo, policy: PolicySpec) -> bool:
    """Whether this plugin takes part in a machine of ``arch`` under ``policy``.

    :param arch: the :class:`~permalloc.model.archinfo.ArchInfo` of the arch chosen for the
        machine.
    :param policy: the machine's policy.

    Called on each implementation separately, once per machine, right after the arch is
    chosen and before anything else of the machine is built. A plugin without it takes part
    everywhere.

    Return True to take part, False to be left out of that machine entirely (a patcher of x86
    tables on an arm64 machine). Anything but a bool is an error naming the plugin.
    """


@hookspec(firstresult=True)
def permalloc_arch_mechanisms(machine: Machine) -> ArchMechanisms | None:
    """Choose the arch's mechanisms for ``machine``: TLB invalidation, text patching,
    whether the direct map can be changed (:class:`~permalloc.mechanisms.archmechanisms.ArchMechanisms`).

    :param machine: the machine being built: ``machine.spec`` (e.g. its ``cpu_features``),
        ``machine.policy``, ``machine.arch`` and ``machine.kernel`` are set; nothing has
        booted yet (no physical memory, no direct map).

    Called once per machine after its arch is described and its kernel image chosen, and
    before it boots.

    Return an :class:`~permalloc.mechanisms.archmechanisms.ArchMechanisms`. The ``generic`` arch
    answers with IPI flushes (ceiling 33) and the fixmap patcher. Stops at the first non-None
    result; None from every plugin is an error.
    """


@hookspec(firstresult=True)
def permalloc_arch_boot_memory(spec: MachineSpec, image: KernelImage | None) -> BootMemory | None:
    """Describe the machine's memory as its firmware and boot loader leave it.

    :param spec: the machine spec (RAM size, NUMA nodes, ``platform``, ``initrd`` size, seed).
    :param image: the kernel image that boots (its size decides where it fits), or None.

    Called once per machine at the start of boot, before anything is allocated.

    Return a :class:`~permalloc.model.memblock.BootMemory`: the platform's firmware map, the RAM
    the kernel's memblock ends up with (per NUMA node), early reservations, the zone limits,
    and where the kernel image and the initrd were put (x86: e820, KASLR). The ``generic`` arch
    gives RAM from 0 with no holes. Stops at the first non-None result; None from every plugin
    is an error.
    """


@hookspec(firstresult=True)
def permalloc_arch_direct_map(spec: MachineSpec, memblock: Memblock) -> tuple[list[tuple[int, int, int]], dict[int, int]] | None:
    """Build the direct map (linear map of RAM) as the arch's boot code does.

    :param spec: the machine spec (``gbpages``: whether 1 GiB leaves may be used).
    :param memblock: memblock.memory and the reservations made so far (early reservations,
        the kernel image, the initrd); an implementation may allocate from it, as x86's
        init_mem_mapping probe does.

    Called once per machine during boot, after the boot memory was reserved and before the
    struct page array is allocated.

    Return ``(leaves, counts)``: the mapped ``(start_pfn, end_pfn, leaf_pages)`` ranges and the
    boot value of the DirectMap counters by leaf size in pages (x86: direct_pages_count[] after
    init_mem_mapping). The ``generic`` arch maps every RAM range with the largest aligned
    leaves. Stops at the first non-None result; None from every plugin is an error.
    """


@hookspec(firstresult=True)
def permalloc_kernel_image(machine: Machine) -> KernelImage | None:
    """The kernel image (vmlinux layout) that ``machine`` runs.

    :param machine: the machine being built: its spec, policy, arch and ``workload`` are set;
        nothing else is (no page tables, no mechanisms, no memory).

    Called once per machine, first thing after its plugins are chosen, before its mechanisms
    and its boot. The module loader answers from the machine's workload (``machine.workload``,
    else the policy's).

    Return a :class:`~permalloc.model.kernelimage.KernelImage`, or None to boot without an
    image (no image reservation or image-mapping work). Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_alloc(
    machine: Machine, size: int, perm: Perm, vrange: VRange, lifetime: str
) -> PermAllocation | None:
    """Reserve memory that will end up with permission ``perm`` (RFC: ``perm_alloc``).

    :param machine: the machine to allocate on.
    :param size: bytes requested (not rounded).
    :param perm: the final permission; never W and X together, never NONE.
    :param vrange: the kernel range to allocate in (module or vmalloc area).
    :param lifetime: how long the caller expects to keep the allocation: ``"long"`` (e.g. a
        module's core sections, kept until it is unloaded), ``"short"`` (a module's init
        sections, freed after init; a BPF JIT image) or ``"unknown"`` (the default of
        ``machine.perm.alloc``). A hint for placement, after the RFC cover letter's idea 4
        (long-lived allocations placed together in 2 MiB pages): an arch may group
        allocations by it (x86 with ``huge_pack_by_lifetime``) or ignore it, and an
        implementation may leave the argument out. The contract has checked the value and
        stores it on the answer (``PermAllocation.lifetime``).

    Called by ``machine.perm.alloc`` (the ``alloc`` op, the module loader, the BPF JIT) after
    the contract checked the request.

    Return a :class:`~permalloc.plugin.contract.PermAllocation` of exactly ``size`` and ``perm``
    (anything else is a ContractError) whose ``addr`` is the final address, ``staging`` the
    address the caller writes through until ``finish`` and ``allocated`` what it really costs.
    Stops at the first non-None result; None from every plugin is an error.
    """


@hookspec(firstresult=True)
def permalloc_writable(machine: Machine, alloc: PermAllocation) -> int | None:
    """The address where the caller writes the content of ``alloc`` before ``finish``.

    :param machine: the machine of the allocation.
    :param alloc: an allocation in the STAGING state.

    Called by ``machine.perm.writable`` and by every ``write`` / ``write_sites`` before finish.

    Return that address (an int): the final address while that is still writable (the pre-RFC
    path) or a separate staging buffer (the RFC's ``perm_writable_addr``). Stops at the first
    non-None result.
    """


@hookspec(firstresult=True)
def permalloc_finish(machine: Machine, alloc: PermAllocation) -> bool | None:
    """Make ``alloc`` live at its final permission (RFC: ``perm_writable_finish``).

    :param machine: the machine of the allocation.
    :param alloc: a STAGING allocation whose content was written.

    Called by ``machine.perm.finish``, once per allocation; the contract marks it LIVE after.
    Load the staged content (copy with the arch's text patching, or change the permissions of
    the mapping that was written) so that no step leaves a page writable and executable, and
    leave every page of the allocation mapped with exactly ``alloc.perm`` and no writable alias
    of an executable page (the contract suite checks all three; the contract observer checks
    the last two after every finish and counts ``contract_violations``).

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_change(machine: Machine, alloc: PermAllocation, perm: Perm) -> bool | None:
    """Change a live allocation's permission (e.g. ro_after_init: RW -> R).

    :param machine: the machine of the allocation.
    :param alloc: a LIVE allocation; ``alloc.perm`` is still the old permission (the contract
        sets the new one after).
    :param perm: the new permission: different from the old, never W+X, never NONE.

    Called by ``machine.perm.change`` (the ``change`` op, the module loader's ro_after_init).
    Drop rights before granting new ones, so that no step is W+X, and leave every page at
    exactly ``perm`` with no writable alias of an executable page (the contract observer checks).

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_poke(machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool | None:
    """Patch ``length`` bytes at ``offset`` of a live allocation (text_poke style).

    :param machine: the machine of the allocation.
    :param alloc: a LIVE allocation.
    :param offset: where the bytes start, inside the allocation.
    :param length: how many bytes (``offset + length <= alloc.size``).

    Called by ``machine.perm.poke`` (the ``poke`` op). An arch with a text patching mechanism
    writes executable memory through it (``machine.text``), which keeps W^X; the ``generic``
    arch makes the pages writable in place (set_memory_rw, store, set_memory_ro), a W+X window
    the invariants count. Writable data may simply be stored to.

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_free(machine: Machine, alloc: PermAllocation) -> bool | None:
    """Release ``alloc``: its mapping, its pages, its direct-map permissions.

    :param machine: the machine of the allocation.
    :param alloc: a STAGING or LIVE allocation.

    Called by ``machine.perm.free``; the contract marks it FREED after. An arch may keep the
    memory in a cache instead, which ``permalloc_shrink`` and its teardown give back. A page it
    gives back to the page allocator must have no vmalloc alias left and no executable
    translation cached (VM_FLUSH_RESET_PERMS; the contract observer checks).

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_shrink(machine: Machine, pages: int) -> int | None:
    """Memory pressure: give back up to ``pages`` cached pages.

    :param machine: the machine under pressure.
    :param pages: the most pages to give back (>= 0).

    Called by ``machine.perm.shrink``: the ``pressure`` op (a shrinker's ``scan_objects``) and
    the contract suite.

    Return how many pages were freed (0 when the arch caches nothing). Stops at the first
    non-None result.
    """


@hookspec(firstresult=True)
def permalloc_set_memory(
    machine: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm, source: str
) -> bool | None:
    """Change the permission of ``npages`` pages mapped at ``addr`` (the ``set_memory_*`` API).

    :param machine: the machine.
    :param addr: the virtual address of the first page (module/vmalloc space, a linear alias
        such as x86's kernel high mapping, or the direct map).
    :param npages: how many pages.
    :param set_mask: permission bits to set.
    :param clear_mask: permission bits to clear.
    :param source: the kernel function being modelled (``set_memory_ro``, ...), for events.

    Called by ``machine.perm.set_memory(name, addr, npages)``: consumers that follow a kernel
    which calls ``set_memory_*`` itself (the 6.1 module loader, the pre-5.18 BPF JIT) and arches
    that finish or change allocations with it (``generic``). The ``generic`` arch runs the CPA
    engine (``machine.cpa``).

    Return True when done. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def permalloc_bpf_jit_image(machine: Machine, kind: str, insns: int) -> tuple[int, int, int] | None:
    """Size the arch's BPF JIT image of one program.

    :param machine: the machine (its arch and its policy's kernel decide the JIT).
    :param kind: ``"ebpf"`` or ``"seccomp"`` (a classic filter, converted first).
    :param insns: instructions as loaded (eBPF slots, or cBPF instructions).

    Called by the BPF JIT consumer for every program it loads, and once per machine to learn
    whether the arch has a JIT at all. The JIT of each arch is its own
    (arch/*/net/bpf_jit_comp.c).

    Return ``(jited_len, binary_align, pack_align)``: the bytes the arch's JIT emits and the
    alignment it passes to bpf_jit_binary_alloc and to bpf_jit_binary_pack_alloc. Stops at the
    first non-None result; None from every plugin means the arch has no JIT size model: no JIT
    program at boot, and ``load_bpf`` is refused.
    """


# ---------------------------------------------------------------------------------------
# Consumer hooks (every implementation runs)
# ---------------------------------------------------------------------------------------


@hookspec
def permalloc_module_layouts() -> list[Any]:
    """Contribute module layout policies (objects with ``name``, ``description``, ``plan``).

    Called on every implementation when the module loader is first used on a machine (a
    module op, or a patcher reading the workload's vmlinux); a policy's ``module_layout``
    names one of the layouts.

    Return a list of layouts (the module loader's own are ``contiguous``, ``rfc`` and
    ``module-memory``).
    """


@hookspec
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    """Patch a module's staged copy before it goes live (alternatives, ORC, jump labels, ...).

    :param machine: the machine the module is loaded on.
    :param module: the loaded-module record of the module loader (``info``, ``regions``,
        ``allocs``).
    :param staging: where writes land (``staging.writable(cls)``, ``staging.store(...)``,
        ``staging.store_sites(...)``: through the allocations' writable addresses).

    Called on every implementation once per module load, after the sections were copied and
    relocated and before the allocations are finished (kernel/module/main.c: post_relocation
    -> module_finalize).

    Return a report ``{"patcher": name, "writes": n, "bytes": b, ...}`` (summed per patcher in
    the run's result), or None when the module has nothing of yours.
    """


@hookspec
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    """A module's text is live (RO+X) and it is about to run its init (MODULE_STATE_COMING).

    :param machine: the machine the module is loaded on.
    :param module: the loaded-module record of the module loader.

    Called on every implementation once per module load, after its allocations were
    finished. Patchers that the kernel runs from the COMING notifier (jump labels, static
    calls) patch live text here, through ``machine.text``.

    Return a report like ``permalloc_module_finalize``, or None.
    """


@hookspec
def permalloc_module_going(machine: Machine, module: Any) -> None:
    """A module is being unloaded: release what you hold for it (ftrace records, keys).

    :param machine: the machine the module is unloaded from.
    :param module: the loaded-module record of the module loader.

    Called on every implementation once per unload, before the module's allocations are freed.

    Return nothing (the result is ignored).
    """


@hookspec
def permalloc_runtime_patch(machine: Machine, kind: str, params: dict[str, Any]) -> int | None:
    """A run-time text change was requested (``static_key`` flip, ``ftrace`` toggle).

    :param machine: the machine whose live text changes.
    :param kind: the op name (``static_key``, ``ftrace``).
    :param params: the op's fields.

    Called on every implementation by the op of that kind.

    Return how many sites you patched, or None when you own no site of that kind; the op fails
    when every implementation returns None.
    """


# ---------------------------------------------------------------------------------------
# Observer hooks (every implementation runs)
# ---------------------------------------------------------------------------------------


@hookspec
def permalloc_machine_start(machine: Machine) -> None:
    """A machine was built and booted: set up per-machine state.

    :param machine: the machine, booted and in its memory state, with its metrics reset.

    Called once per machine, last thing when it is built (after the three
    ``permalloc_machine_boot`` stages), before the first op of a scenario.

    Return nothing (the result is ignored).
    """


@hookspec
def permalloc_machine_boot(machine: Machine, stage: str) -> None:
    """Boot-time work of the kernel on a machine whose page allocator is up.

    :param machine: the machine booting (``machine.booting`` is True).
    :param stage: ``"mm_init"`` (start_kernel, right after memblock_free_all: the early part
        of RAM is in the buddy allocator; x86 preallocates vmalloc page tables, maps its image
        and write-protects the IDT), ``"initcalls"`` (all RAM is free, watermarks are set and
        the kernel's initcalls run: consumers allocate what the kernel allocates at boot, e.g.
        the BPF JIT's ptp classifier program) or ``"late"`` (the end of kernel_init: the arch
        frees init memory and write-protects the kernel image, x86 free_initmem and
        mark_rodata_ro).

    Called three times per machine, in that order, before ``permalloc_machine_start``. Boot
    events shape the machine's state (DirectMap, free lists) but no observer sees them and the
    run's metrics start after them.

    Return nothing (the result is ignored).
    """


@hookspec
def permalloc_machine_release(machine: Machine) -> None:
    """The run is over: consumers release everything they still hold (unload modules, programs).

    :param machine: the machine whose run ended.

    Called by ``machine.teardown`` (at the end of every run, after the scenario's own
    allocations were freed), before ``permalloc_machine_teardown``, so that arch caches are
    drained after the last free.

    Return nothing (the result is ignored).
    """


@hookspec
def permalloc_machine_teardown(machine: Machine) -> list[str] | None:
    """After release: arches drain their caches, observers check.

    :param machine: the machine whose run ended.

    Called by ``machine.teardown`` after ``permalloc_machine_release``. The invariants plugin
    implements it ``trylast``: it checks for leaks after every other implementation gave its
    memory back.

    Return the problems found (one line each, e.g. leaks), or None / an empty list.
    """


@hookspec
def permalloc_event(machine: Machine, event: Event) -> None:
    """See one event (after its cost was folded into the metrics). Called very often: be quick.

    :param machine: the machine that emitted it (``machine.atomic_depth`` > 0 inside a
        kernel operation whose intermediate states nobody can observe).
    :param event: the :class:`~permalloc.model.events.Event`.

    Called by ``machine.emit`` for every event after boot (boot events are not shown), on every
    implementation in pluggy's order; the machine calls the implementations itself, not
    through the hook caller, so a wrapper implementation is not supported. An implementation
    marked with :func:`watching` is called only for the kinds it names. An observer may
    emit events of its own (the invariants emit ``wx_violation``).

    Return nothing (the result is ignored).
    """


# ---------------------------------------------------------------------------------------
# Registry and report hooks (every implementation contributes)
# ---------------------------------------------------------------------------------------


@hookspec
def permalloc_event_kinds() -> list[EventKind]:
    """Declare the event kinds you emit (:class:`~permalloc.model.events.EventKind`).

    Called on every implementation once per machine when it is built, before any event: each
    kind says which counters it feeds, whether it is an IPI round and what it costs.

    Return a list of EventKind. A kind declared twice (or a core kind declared again) is an
    error, and so is an event of an undeclared kind, naming the kind and its source.
    """


@hookspec
def permalloc_register_ops() -> list[OpType]:
    """Contribute scenario ops (:class:`~permalloc.run.scenario.OpType`): name, model, handler.

    Called on every implementation of a machine's plugins at the start of each run
    (``permalloc run``, ``compare``, ``validate``), before the scenario is validated.

    Return a list of OpType; an op name registered twice is an error.
    """


@hookspec
def permalloc_register_policies() -> list[PolicySpec]:
    """Contribute named policies (:class:`~permalloc.plugin.policy.PolicySpec`).

    Called on every implementation whenever policies are listed or looked up by name
    (``permalloc policies``, ``run -p NAME``, ``compare``, ``validate``).

    Return a list of PolicySpec.
    """


@hookspec
def permalloc_register_scenarios() -> list[ScenarioSource]:
    """Contribute named scenarios (:class:`~permalloc.run.scenario.ScenarioSource`).

    Called on every implementation whenever scenarios are listed or looked up by name
    (``permalloc scenarios``, ``run -s NAME``, ``compare``).

    Return a list of ScenarioSource.
    """


@hookspec(firstresult=True)
def permalloc_measurement_op(event: str, row: dict[str, str]) -> dict[str, Any] | None:
    """Translate one row of a measurement file (docs/measurements.md) into a scenario op.

    :param event: the row's ``event`` column (``mod_load``, ``bpf_load`` ...).
    :param row: every column of the row, as text.

    Called by ``permalloc validate`` for each measured event, in order.

    Return the op (a dict as in a scenario file) that does what the measured operation did, or
    None if the event is not yours. Stops at the first non-None result; None from every plugin
    is an error naming the row.
    """


@hookspec
def permalloc_measurement_check(machine: Machine, event: str, row: dict[str, str]) -> dict[str, list[float]] | None:
    """After a measured event was replayed: compare columns you can check on ``machine``.

    :param machine: the machine the event was replayed on.
    :param event: the row's ``event`` column.
    :param row: every column of the row, as text.

    Called on every implementation by ``permalloc validate`` after each measured event was
    replayed.

    Return ``{column: [measured, simulated]}`` (e.g. the module loader checks
    ``proc_modules_size`` after ``mod_load``), or None.
    """


@hookspec
def permalloc_elf_machines() -> list[ElfMachine]:
    """Contribute the ELF machines whose modules ``permalloc ingest`` can read
    (:class:`~permalloc.model.elfmachine.ElfMachine`): ``e_machine``, relocation names, the
    arch's module tables per kernel version and its ``module_frob_arch_sections``.

    Called on every implementation, one by one, once per ingest (in the main process; the
    machines are sent to the workers).

    Return a list of ElfMachine: an arch contributes its own machine. An e_machine contributed
    twice is an error naming both plugins; a module of a machine nobody contributes is refused
    with its file name, as ``elf_check_arch`` refuses it.
    """


@hookspec
def permalloc_register_workloads() -> list[WorkloadSource]:
    """Contribute named workloads (:class:`~permalloc.run.workloads.WorkloadSource`).

    A workload is the data of one kernel package (its modules and vmlinux facts, as
    ``permalloc ingest`` writes them).

    Called on every implementation whenever workloads are listed or resolved
    (``permalloc workloads``, ``--workload NAME``, a policy's ``workload``, the default
    workload of a run).

    Return a list of WorkloadSource, each built with :func:`~permalloc.run.workloads.read_header`
    from its file.
    """


@hookspec
def permalloc_report_columns() -> list[ReportColumn]:
    """Contribute extra rows of the totals table (:class:`~permalloc.report.tables.ReportColumn`).

    Called on every implementation when ``permalloc run`` or ``compare`` prints its tables.

    Return a list of ReportColumn (each computes its value from a run's result, typically from
    what ``permalloc_result_extra`` put there).
    """


@hookspec
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    """Add plugin-specific figures to a run's result (e.g. per-patcher write counts).

    :param machine: the machine after the scenario's last op.

    Called on every implementation once per run, after the last op and before the scenario's
    allocations are freed and the machine is torn down.

    Return a dict merged into the result's ``extra`` (one key of your own, e.g. your plugin's
    name), or None.
    """


@hookspec
def permalloc_run_report(args: argparse.Namespace, result: Any, console: Any) -> None:
    """After ``permalloc run`` printed its tables: print extra views asked for by your options.

    :param args: the parsed command line of ``permalloc run`` (with the options you added to it
        in ``permalloc_add_commands``).
    :param result: the run's :class:`~permalloc.run.simulation.PolicyResult`.
    :param console: the rich console the tables went to.

    Called on every implementation once per ``permalloc run`` in table format.

    Return nothing (the result is ignored).
    """


@hookspec
def permalloc_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add sub-commands (or options of existing ones) to the ``permalloc`` CLI.

    :param subparsers: the argparse sub-parsers of ``permalloc``: ``add_parser`` a command and
        set ``func=`` to a callable returning an exit code, or find one in ``choices`` (``run``)
        and add options to it.

    Called on every implementation once per ``permalloc`` invocation, before the command line
    is parsed.

    Return nothing (the result is ignored).
    """


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

# The family of every hook: the section of this file it is in (``permalloc hooks -v``;
# tests/framework/test_cli.py holds this table to the section comments).
FAMILIES: dict[str, str] = {
    **dict.fromkeys((
        "permalloc_arch_describe", "permalloc_applies", "permalloc_arch_mechanisms", "permalloc_arch_boot_memory",
        "permalloc_arch_direct_map", "permalloc_kernel_image", "permalloc_alloc", "permalloc_writable",
        "permalloc_finish", "permalloc_change", "permalloc_poke", "permalloc_free", "permalloc_shrink",
        "permalloc_set_memory", "permalloc_bpf_jit_image",
    ), "arch"),
    **dict.fromkeys((
        "permalloc_module_layouts", "permalloc_module_finalize", "permalloc_module_coming", "permalloc_module_going",
        "permalloc_runtime_patch",
    ), "consumer"),
    **dict.fromkeys((
        "permalloc_machine_start", "permalloc_machine_boot", "permalloc_machine_release",
        "permalloc_machine_teardown", "permalloc_event",
    ), "observer"),
    **dict.fromkeys((
        "permalloc_event_kinds", "permalloc_register_ops", "permalloc_register_policies",
        "permalloc_register_scenarios", "permalloc_measurement_op", "permalloc_measurement_check",
        "permalloc_elf_machines", "permalloc_register_workloads", "permalloc_report_columns",
        "permalloc_result_extra", "permalloc_run_report", "permalloc_add_commands",
    ), "registry"),
}

# What an implementer of each family needs to know, whatever the hook.
FAMILY_ADVICE: dict[str, str] = {
    "arch": "A machine registers only the arch it runs and generic (besides the consumers that apply "
    "to it), so an arch answers only where it differs from generic.",
    "consumer": "Consumers talk to each other through these hooks, never by importing each other: "
    "return None for a module, kind or site that is not yours.",
    "observer": "Plugin modules are shared between machines: keep per-machine state in "
    "machine.state(key, factory).",
    "registry": "Called when the framework builds a registry or a report, not per event: return "
    "fresh objects, and prefix the names you contribute where they could clash. An implementation "
    "that raises or returns anything but a list of its type is named in a warning and left out.",
}

# Hooks whose implementations the framework calls one by one (impl.function) instead of
# through pluggy's hook call: firstresult does not apply and a wrapper is not supported.
CALLED_PER_IMPLEMENTATION: dict[str, str] = {
    "permalloc_arch_describe": "every implementation describes its own arch: an ArchInfo, or None for a spec it "
    "does not serve",
    "permalloc_applies": "every implementation answers for itself and must return a bool",
    "permalloc_event": "the machine does it for speed, for every event: be quick",
    "permalloc_elf_machines": "every implementation contributes; an e_machine contributed twice is an error",
    **dict.fromkeys(("permalloc_register_policies", "permalloc_register_scenarios", "permalloc_register_workloads",
                     "permalloc_register_ops", "permalloc_event_kinds", "permalloc_report_columns"),
                    "every implementation contributes; one that raises or returns anything but a list of the type "
                    "is named in a warning and left out"),
}
