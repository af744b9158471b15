"""The simulated machine: one per run, shared by the arch backend and every consumer.

It owns physical memory, the direct map, kernel page tables and address ranges, the TLB
state, the event log and the metrics; it knows no arch and no consumer by name. The
mechanisms of generic kernel code that every arch shares (mm/vmalloc.c, the set_memory
engine, text_poke) live in their own modules and act through the primitives below.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from permalloc import memstate
from permalloc.boot import BOOT_CPU, boot
from permalloc.errors import ContractError, PermallocError, PluginError
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.cpa import Cpa
from permalloc.mechanisms.process import Processes
from permalloc.mechanisms.vmalloc import Vmalloc
from permalloc.model import events as ev
from permalloc.model.archinfo import ArchInfo, VRange
from permalloc.model.buddy import UNMOVABLE
from permalloc.model.directmap import LEAF_2M, DirectMap, LinearAlias
from permalloc.model.kernelimage import KernelImage
from permalloc.model.metrics import Metrics
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PAGEBLOCK_ORDER, PAGES_PER_PMD
from permalloc.model.pagetable import KernelPageTables, Mapping
from permalloc.model.perms import Perm
from permalloc.model.physmem import PhysMem
from permalloc.model.spec import MachineSpec
from permalloc.model.tlb import TLBState
from permalloc.model.vspace import AddressSpace
from permalloc.plugin.contract import PermAlloc
from permalloc.plugin.pluginmanager import collect, machine_manager
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec

if TYPE_CHECKING:
    from permalloc.run.workloads import WorkloadSource

T = TypeVar("T")
_W, _X = int(Perm.W), int(Perm.X)


def kernel_version(text: str) -> tuple[int, int]:
    """``"6.12"`` -> ``(6, 12)``: the kernel whose code paths a policy follows."""
    try:
        major, minor = text.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise PermallocError(f"policy kernel {text!r}: expected a version such as 6.1 or 6.12") from None


def _bind_observer(function: Callable[..., Any], argnames: tuple[str, ...]) -> Callable[[Machine, ev.Event], Any]:
    """Adapt a permalloc_event implementation (any subset of its arguments) to (machine, event)."""
    if argnames == ("machine", "event"):
        return function
    return lambda machine, event: function(*[machine if name == "machine" else event for name in argnames])


def event_kinds(pm: Any) -> list[ev.EventKind]:
    """The core's event kinds and every plugin's (permalloc_event_kinds); a name twice is an error."""
    kinds = list(ev.CORE_KINDS)
    seen = {kind.name: "the core" for kind in kinds}
    for plugin, kind in collect(pm, "permalloc_event_kinds", ev.EventKind):
        if kind.name in seen:
            raise PluginError(f"plugin {plugin!r}: event kind {kind.name!r} is already declared by {seen[kind.name]}")
        seen[kind.name] = f"plugin {plugin!r}"
        kinds.append(kind)
    return kinds


def _check_policy(policy: PolicySpec, arch: ArchInfo) -> None:
    """Refuse a policy whose mechanisms the arch does not have, rather than ignore them."""
    needs = {
        "text_loading=text_poke": (policy.text_loading == "text_poke", arch.text_poke),
        "huge_mappings": (policy.huge_mappings, arch.huge_vmap),
        "directmap=unmapped-block-cache": (policy.directmap == "unmapped-block-cache", "unmapped-block-cache" in arch.features),
        "live_cache": (policy.live_cache, "live-cache" in arch.features),
        "rox_cache": (policy.rox_cache, "rox-cache" in arch.features),
    }
    missing = [name for name, (wanted, has) in needs.items() if wanted and not has]
    if missing:
        raise PermallocError(f"policy {policy.name!r} needs {', '.join(missing)}, which arch {arch.name!r} does not provide")


class Machine:
    """A simulated machine built from a :class:`MachineSpec` under a :class:`PolicySpec`.

    ``workload`` is the kernel whose data the consumers use (its modules, its vmlinux facts);
    None lets them take the policy's default (``permalloc.run.workloads.policy_workload``).
    """

    def __init__(
        self,
        spec: MachineSpec | None = None,
        policy: PolicySpec | None = None,
        plugins: Sequence[Any] = (),
        strict: bool = False,
        workload: WorkloadSource | None = None,
    ) -> None:
        self.spec = spec or MachineSpec()
        self.policy = policy or DEFAULT_POLICY
        if self.policy.arch and self.policy.arch != self.spec.arch:
            raise PermallocError(
                f"policy {self.policy.name!r} is for arch {self.policy.arch!r}, machine is {self.spec.arch!r}"
            )
        self.strict = strict
        self.kernel = kernel_version(self.policy.kernel)
        self.pm, self.arch = machine_manager(self.spec, self.policy, plugins)
        _check_policy(self.policy, self.arch)
        if workload is not None and self.arch.machine and workload.machine != self.arch.machine:
            raise PermallocError(
                f"workload {workload.name} is {workload.machine}, arch {self.arch.name!r} is {self.arch.machine}"
            )
        self.workload = workload
        self.hook = self.pm.hook
        self.rng = random.Random(self.spec.seed)
        # The task that runs the scenario starts on a CPU the scheduler picks; with nothing
        # else running, which one is arbitrary: a seeded choice (ops may name a CPU).
        self.cpu = self.rng.randrange(self.spec.cpus)
        self.kernel_image: KernelImage | None = self.hook.permalloc_kernel_image(machine=self)
        self.pagetables = KernelPageTables()
        self.tlb = TLBState()
        self.event_kinds = event_kinds(self.pm)
        self.metrics = Metrics(self.spec.cpus, self.spec.cost, self.event_kinds)
        self.aliases: list[LinearAlias] = []  # other linear maps of RAM (x86: the kernel's high mapping)
        self.ranges: dict[str, VRange] = dict(self.arch.ranges)
        self.spaces: dict[str, AddressSpace] = {}
        by_bounds: dict[tuple[int, int], AddressSpace] = {}
        for name, vrange in self.ranges.items():
            bounds = (vrange.start, vrange.end)
            if bounds in by_bounds:  # e.g. generic: module_alloc allocates from vmalloc space
                self.spaces[name] = by_bounds[bounds]
                continue
            offset = 0
            if name == "module" and self.arch.module_load_offset_max_pages:
                # arch/x86/kernel/module.c: get_module_load_offset, 1..1024 pages under KASLR
                offset = self.rng.randint(1, self.arch.module_load_offset_max_pages) * PAGE_SIZE
            self.spaces[name] = by_bounds[bounds] = AddressSpace(vrange, offset)
        self.vmalloc = Vmalloc(self)
        self.cpa = Cpa(self)
        self.mechanisms: ArchMechanisms = self.call_arch("permalloc_arch_mechanisms", machine=self)
        self.tlb_flush = self.mechanisms.tlb
        self.text = self.mechanisms.text
        self.perm = PermAlloc(self)
        self.now_ms = 0.0
        self._state: dict[str, Any] = {}
        self._seq = 0
        self.op_index = -1
        # permalloc_event runs for every primitive operation (millions per run): its
        # implementations are called directly, in pluggy's order (last registered first),
        # to spare pluggy's per-call dispatch. They are already guarded (pluginmanager._guard).
        self._observers = [
            (_bind_observer(impl.function, impl.argnames), getattr(impl.function, "permalloc_watches", None))
            for impl in reversed(self.hook.permalloc_event.get_hookimpls())
        ]
        self._observers_of: dict[str, list[Callable[[Machine, ev.Event], Any]]] = {}  # per kind (hookspecs.watching)
        self.trace: Callable[[ev.Event], None] | None = None
        self.atomic_depth = 0
        self.booting = True
        self.phys: PhysMem
        self.directmap: DirectMap
        self.processes = Processes(self)
        self.aged_slab: list[tuple[int, int, int]] = []
        task_cpu, self.cpu = self.cpu, BOOT_CPU  # start_kernel and kernel_init run on the boot CPU
        boot(self)
        self.cpu = task_cpu
        memstate.apply(self)  # the history before the scenario: part of the starting state
        self.booting = False
        # what the kernel holds before the scenario (boot, memory state): teardown checks
        # that the run gives back everything else
        self.baseline = {
            "allocated_pages": self.phys.allocated_pages - self.page_cache.explicit,
            "directmap_nondefault": self.directmap.nondefault_pages(),
            "areas": self.busy_areas(),
            "mappings": len(self.pagetables),
            "split_2m": frozenset(self.directmap.split_2m),
            "perm_allocs": len(self.perm.live),
        }
        self.tlb.flush_all()  # the boot CPU flushed everything before init ran
        self.metrics = Metrics(self.spec.cpus, self.spec.cost, self.event_kinds)  # boot is the starting state
        self.hook.permalloc_machine_start(machine=self)

    # -- per-plugin state -----------------------------------------------------------------
    def state(self, key: str, factory: Callable[[], T]) -> T:
        """Per-machine state of a plugin (plugin modules are shared between machines)."""
        value = self._state.get(key)
        if value is None:
            value = self._state[key] = factory()
        return value

    def range(self, name: str) -> VRange:
        try:
            return self.ranges[name]
        except KeyError:
            raise ContractError(f"unknown range {name!r}; arch {self.arch.name} has {sorted(self.ranges)}") from None

    # -- events ---------------------------------------------------------------------------
    def emit(
        self,
        kind: str,
        n: int = 1,
        addr: int = 0,
        pfns: Iterable[int] | None = None,
        source: str = "",
        **extra: Any,
    ) -> ev.Event:
        """Record one primitive operation: fold it into the metrics and show it to observers."""
        self._seq += 1
        event = ev.Event(kind, n, addr, tuple(pfns) if pfns is not None else None, source, 0.0, self._seq, self.op_index, extra or None)
        self.metrics.fold(event)
        if self.booting:
            return event
        if self.trace is not None:
            self.trace(event)
        observers = self._observers_of.get(kind)
        if observers is None:
            observers = self._observers_of[kind] = [
                observe for observe, kinds in self._observers if kinds is None or kind in kinds
            ]
        for observe in observers:
            observe(self, event)
        return event

    @contextlib.contextmanager
    def atomic(self, source: str) -> Iterator[None]:
        """One kernel operation (a CPA call, vm_reset_perms, a text_poke) whose intermediate
        states nobody can observe: invariants are checked when the outermost one ends."""
        self.atomic_depth += 1
        try:
            yield
        finally:
            self.atomic_depth -= 1
            if not self.atomic_depth:
                self.emit(ev.SETTLED, 0, source=source)

    def busy_areas(self) -> int:
        """Reserved areas over every address range (shared ranges counted once)."""
        return sum(len(space) for space in {id(s): s for s in self.spaces.values()}.values())

    def gauges(self) -> dict[str, int]:
        g = self.directmap.meminfo()
        g["huge_mappings"] = self.pagetables.huge_leaves
        return g

    # -- physical pages -------------------------------------------------------------------
    def alloc_pages(self, count: int, source: str = "", mt: int = UNMOVABLE) -> list[int]:
        """``count`` order-0 pages on the current CPU, as vm_area_alloc_pages takes them
        (__alloc_pages_bulk in calls of up to 100 pages, then alloc_page)."""
        pfns = self.phys.alloc_bulk(count, mt, self.cpu)
        self.emit(ev.PAGE_ALLOC, count, source=source)
        return pfns

    def alloc_order(self, order: int, source: str = "", mt: int = UNMOVABLE, may_fail: bool = False,
                    node: int | None = None) -> int | None:
        """alloc_pages(gfp, order) on the current CPU (alloc_pages_node with ``node``); None
        only when ``may_fail``."""
        pfn = self.phys.alloc(order, mt, self.cpu, may_fail=may_fail, node=node)
        if pfn is not None:
            self.emit(ev.PAGE_ALLOC, 1 << order, source=source, order=order)
        return pfn

    def alloc_block(self, source: str = "") -> int | None:
        """One order-9 block (2 MiB of physically contiguous pages) for a huge mapping, or None
        (__vmalloc_area_node falls back to order-0 pages when it cannot get one)."""
        return self.alloc_order(PAGEBLOCK_ORDER, source, may_fail=True)

    def free_pages(self, pfns: Iterable[int], source: str = "") -> None:
        pfns = list(pfns)
        for pfn in pfns:
            self.phys.free(pfn, self.cpu)
        self.emit(ev.PAGE_FREE, len(pfns), pfns=pfns, source=source)

    def free_order(self, pfn: int, order: int, source: str = "") -> None:
        self.phys.free(pfn, self.cpu)
        self.emit(ev.PAGE_FREE, 1 << order, pfns=range(pfn, pfn + (1 << order)), source=source, order=order)

    def free_block(self, pfn: int, source: str = "") -> None:
        self.free_order(pfn, PAGEBLOCK_ORDER, source)

    # -- kernel page tables ---------------------------------------------------------------
    def map(self, addr: int, pfns: list[int], perm: Perm, huge: bool = False, source: str = "") -> Mapping:
        """Write PTEs (or PMD leaves when ``huge``) for ``pfns`` at ``addr``."""
        mapping = self.pagetables.map(addr, pfns, perm, huge, source)
        entries = len(pfns) // PAGES_PER_PMD if huge else len(pfns)
        self.emit(ev.MAP, entries, addr, pfns, source, perm=str(perm))
        return mapping

    def unmap(self, mapping: Mapping, source: str = "") -> None:
        """Clear the PTEs of ``mapping`` with no flush: its translations stay cached (stale)."""
        self.pagetables.unmap(mapping)
        self.tlb.add(mapping.start, mapping.pfns, mapping.perms)
        self.emit(ev.UNMAP, mapping.npages, mapping.start, mapping.pfns, source)

    def change_ptes(self, mapping: Mapping, first: int, count: int, set_mask: Perm, clear_mask: Perm, source: str) -> list[int]:
        """Change PTE permissions without flushing; old translations stay cached until a flush."""
        old = bytes(mapping.perms[first : first + count])
        changed, splits = self.pagetables.change(mapping, first, count, set_mask, clear_mask)
        for _ in range(splits):
            # arch/x86/mm/pat/set_memory.c: __split_large_page ends with flush_tlb_all()
            self.emit(ev.VMAP_SPLIT_2M, 1, mapping.start, source=source)
            self.flush_all(source=f"{source}/split_large_page")
        if changed:
            pfns = [mapping.pfns[i] for i in changed]
            for i, pfn in zip(changed, pfns):
                self.tlb.add(mapping.start + (i << PAGE_SHIFT), (pfn,), (old[i - first],))
            self.emit(ev.PTE_PERM, len(changed), mapping.start + (changed[0] << PAGE_SHIFT), pfns, source)
        return changed

    def collapse_ptes(self, mapping: Mapping, first: int, count: int, source: str) -> int:
        """Collapse 2 MiB chunks of ``mapping`` around pages [first, first+count) into PMD
        leaves where possible, without flushing (the caller flushes, as
        cpa_collapse_large_pages does with one flush_tlb_all). Returns the leaves made."""
        chunks = self.pagetables.collapse(mapping, first, count)
        for chunk in chunks:
            self.emit(ev.VMAP_COLLAPSE_2M, 1, mapping.start + chunk * PAGES_PER_PMD * PAGE_SIZE, source=source)
        return len(chunks)

    def change_directmap(self, pfns: Iterable[int], set_mask: Perm, clear_mask: Perm, source: str) -> list[int]:
        """Change direct-map permissions (splitting leaves as needed) without flushing."""
        pfns = list(pfns)
        dm = self.directmap
        old = [dm.perm(pfn) for pfn in pfns]
        changed, s1g, s2m = dm.change(pfns, set_mask, clear_mask)
        # Every split flushes all TLBs, "noflush" callers included (set_memory.c:
        # __split_large_page -> flush_tlb_all); a 1 GiB leaf is split 1G -> 2M -> 4K.
        for kind, count in ((ev.SPLIT_1G, s1g), (ev.SPLIT_2M, s2m)):
            for _ in range(count):
                self.emit(kind, 1, source=source)
                self.flush_all(source=f"{source}/split_large_page")
        if changed and not self.booting:
            olds = dict(zip(pfns, old))
            base = self.arch.page_offset
            for pfn in changed:
                self.tlb.add(base + (pfn << PAGE_SHIFT), (pfn,), (olds[pfn],))
            self.emit(ev.DIRECTMAP_PERM, len(changed), base + (changed[0] << PAGE_SHIFT), changed, source)
        return changed

    def change_alias(self, alias: LinearAlias, pfns: Iterable[int], set_mask: Perm, clear_mask: Perm,
                     source: str) -> list[int]:
        """Change the permissions of ``pfns`` in another linear map (no flush). Its splits
        flush everything and, when the alias is ``counted``, count in the DirectMap lines."""
        pfns = [pfn for pfn in pfns if alias.covers(pfn)]
        old = [alias.map.perm(pfn) for pfn in pfns]
        changed, _s1g, s2m = alias.map.change(pfns, set_mask, clear_mask)
        for _ in range(s2m):
            if alias.counted:
                self.directmap.count_split(LEAF_2M)
                self.emit(ev.SPLIT_2M, 1, source=f"{source}/{alias.name}")
            else:
                self.emit(ev.VMAP_SPLIT_2M, 1, source=f"{source}/{alias.name}")
            self.flush_all(source=f"{source}/split_large_page")
        if changed and not self.booting:  # boot ends with a full flush: no stale entries to track
            olds = dict(zip(pfns, old))
            for pfn in changed:
                self.tlb.add(alias.addr(pfn), (pfn,), (olds[pfn],))
            self.emit(ev.DIRECTMAP_PERM, len(changed), alias.addr(changed[0]), changed, source)
        return changed

    def alias_at(self, addr: int) -> LinearAlias | None:
        """The linear alias whose virtual range holds ``addr``."""
        for alias in self.aliases:
            if alias.base <= addr < alias.base + (alias.npages << PAGE_SHIFT):
                return alias
        return None

    def directmap_addr(self, pfn: int) -> int:
        return self.arch.page_offset + (pfn << PAGE_SHIFT)

    # -- TLB flushes ----------------------------------------------------------------------
    def flush_kernel_range(self, start: int, end: int, source: str = "") -> None:
        """flush_tlb_kernel_range, as the arch delivers it (IPI rounds, or a hardware broadcast)."""
        self.tlb_flush.kernel_range(self, start, end, source)

    def flush_all(self, source: str = "") -> None:
        """flush_tlb_all, as the arch delivers it."""
        self.tlb_flush.all(self, source)

    def flush_range_ipi(self, start: int, end: int, source: str = "") -> None:
        """A per-page flush of [start, end) that every other CPU does in an IPI handler, whatever
        the arch's flush_tlb_kernel_range does (x86 cpa_flush: on_each_cpu(__cpa_flush_tlb))."""
        pfns = self.tlb.flush_range(start, end)
        self.emit(ev.FLUSH_RANGE, (end - start + PAGE_SIZE - 1) >> PAGE_SHIFT, start, pfns, source)

    def flush_local(self, start: int = 0, end: int = 0, source: str = "") -> None:
        """A flush on this CPU only (``end == 0``: all of its TLB). Remote entries stay stale."""
        npages = (end - start + PAGE_SIZE - 1) >> PAGE_SHIFT if end else 0
        self.emit(ev.FLUSH_LOCAL, max(npages, 1), start, source=source, full=not end)

    def sync_cores(self, source: str = "") -> None:
        """text_poke_sync: on_each_cpu(do_sync_core) — one IPI round, no TLB flush."""
        self.emit(ev.SYNC_IPI, 1, source=source)

    # -- memory accesses --------------------------------------------------------------------
    def store(self, addr: int, length: int, source: str = "") -> None:
        """Plain stores to [addr, addr+length): every page must be mapped writable."""
        first, last = addr >> PAGE_SHIFT, (addr + length - 1) >> PAGE_SHIFT
        for vpn in range(first, last + 1):
            va = vpn << PAGE_SHIFT
            found = self.pagetables.lookup(va)
            if found is None:
                raise ContractError(f"write to unmapped address {va:#x} ({source or 'store'})")
            mapping, index = found
            if not mapping.perms[index] & Perm.W:
                raise ContractError(f"write to read-only address {va:#x} ({source or 'store'})")
        self.emit(ev.STORE, length, addr, source=source)

    def store_sites(self, addrs: list[int], length: int, source: str = "") -> None:
        """Plain stores of ``length`` bytes at each address; each page touched must be writable."""
        vpns = {vpn for addr in addrs for vpn in range(addr >> PAGE_SHIFT, ((addr + length - 1) >> PAGE_SHIFT) + 1)}
        for vpn in sorted(vpns):
            va = vpn << PAGE_SHIFT
            found = self.pagetables.lookup(va)
            if found is None or not found[0].perms[found[1]] & _W:
                raise ContractError(f"write to {'unmapped' if found is None else 'read-only'} address {va:#x} ({source or 'store'})")
        self.emit(ev.STORE, length * len(addrs), min(addrs), source=source, sites=len(addrs))

    # -- aliases (W^X) --------------------------------------------------------------------
    def page_access(self, pfn: int) -> tuple[bool, bool]:
        """(writable, executable) through any alias of ``pfn``: vmalloc, direct map, stale TLB."""
        w = bool(self.directmap.perm(pfn) & _W) or pfn in self.tlb.stale_w
        x = pfn in self.tlb.stale_x
        for alias in self.aliases:
            if alias.covers(pfn):
                perm = alias.map.perm(pfn)
                w = w or bool(perm & _W)
                x = x or bool(perm & _X)
        found = self.pagetables.rmap.get(pfn)
        if found is not None:
            perm = found[0].perms[found[1]]
            w = w or bool(perm & _W)
            x = x or bool(perm & _X)
        return w, x

    # -- contract ---------------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """End of run: consumers release, arches drain, observers check; returns the problems found."""
        self.hook.permalloc_machine_release(machine=self)
        self.processes.release()
        problems: list[str] = []
        for found in self.hook.permalloc_machine_teardown(machine=self):
            problems.extend(found or [])
        return problems

    def call_arch(self, hookname: str, **kwargs: Any) -> Any:
        """Call an arch hook; None means no plugin handled it, which is a plugin error."""
        result = getattr(self.hook, hookname)(**kwargs)
        if result is None:
            raise PluginError(f"no plugin implements {hookname} for arch {self.arch.name!r}")
        return result
