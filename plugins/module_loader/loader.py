"""Loading and unloading modules on a machine, the way kernel/module/main.c does.

Per module: plan the allocations (a layout), allocate through the perm_alloc contract,
write sections and relocations at the writable address (move_module, apply_relocations,
add_kallsyms), let the load-time patchers work on the staged copy (module_finalize), make
it live (complete_formation), let the COMING patchers run (jump labels, static calls), run
init, make ro_after_init read-only and free the init allocations (do_init_module,
do_free_init). How "make it live" is done depends on the layout and the policy:

* ``contiguous``: 6.1's exact set_memory_* sequence (kernel/module/strict_rwx.c 6.1:
  module_enable_ro/nx/x in complete_formation, module_enable_ro(mod, true) after init);
* ``module-memory`` with ``text_loading=set_memory``: 6.12's sequence (strict_rwx.c 6.12:
  module_enable_rodata_ro, module_enable_data_nx, module_enable_text_rox);
* ``module-memory`` with ``rox_cache`` (mode ``rox``): upstream with the execmem ROX cache
  (kernel/module/main.c @21d4fdc8 in linux-mm/linux-mm, strict_rwx.c as in openSUSE/kernel
  @6d2d663c): module_memory_alloc takes every type with execmem_alloc_rw; text types
  (EXECMEM_MODULE_TEXT) are perm_allocs of RX that the arch carves from its ROX cache and
  makes RW+NX, data types are RW (execmem_force_rw still runs on them: two set_memory calls
  that change nothing). complete_formation: module_enable_rodata_ro, module_enable_data_nx,
  module_enable_text_rox (is_rox -> execmem_restore_rox: ``finish``). After init only
  MOD_RO_AFTER_INIT becomes RO (module_enable_rodata_ro_after_init); do_free_init frees init
  text, data, rodata in that order (execmem_free: text goes back to the cache);
* otherwise (``rfc``, or text_poke loading): each region is a perm_alloc of its final
  permission and goes live with ``finish``; ro_after_init with ``change``.
"""

from __future__ import annotations

import difflib
import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import ValidationError

from permalloc import ContractError, Machine, Perm, PermAllocation, PermallocError, SpecError
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT
from permalloc.run.modelfile import format_validation_error
from permalloc.run.workloads import WorkloadSource, policy_workload, resolve_workload

from .layouts import ContiguousLayout, Region, SeparateLayout
from .relocgraph import RelocGraph
from .workload import MemClass, ModuleInfo, Workload, load_workload

_WORKLOADS: dict[str, Workload] = {}


def get_workload(path: str | os.PathLike[str]) -> Workload:
    """The workload file at ``path``, loaded once per process. SpecError (one line) when bad."""
    key = str(Path(path).resolve())
    if key not in _WORKLOADS:
        try:
            _WORKLOADS[key] = load_workload(path)
        except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise SpecError(f"workload {path}: not a workload file ({' '.join(str(exc).split())})") from None
        except OSError as exc:
            raise SpecError(f"workload {path}: cannot read: {exc.strerror or exc}") from None
        except ValidationError as exc:
            raise SpecError(f"workload {path}: {format_validation_error(exc)}") from None
        except KeyError as exc:  # a compact document without one of its tables
            raise SpecError(f"workload {path}: not a workload file (no {exc} in its body)") from None
        except (ValueError, TypeError, IndexError) as exc:  # bad JSON or a bad compact row
            raise SpecError(f"workload {path}: not a workload file ({' '.join(str(exc).split())})") from None
    return _WORKLOADS[key]


def norm(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class LoadedModule:
    """A module on the machine (what consumers get in the module hooks)."""

    info: ModuleInfo
    regions: list[Region]
    allocs: dict[str, PermAllocation] = field(default_factory=dict)
    mode: str = "contract"  # "6.1", "6.12", "rox" (the kernel's set_memory sequences) or "contract"
    state: str = "coming"
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    def region_of(self, cls: MemClass) -> tuple[Region, PermAllocation, int] | None:
        """(region, allocation, offset) holding memory class ``cls``."""
        for region in self.regions:
            if cls in region.classes and region.name in self.allocs:
                return region, self.allocs[region.name], region.classes[cls][0]
        return None

    def address(self, cls: MemClass, offset: int = 0) -> int | None:
        """Final address of byte ``offset`` of class ``cls`` (None when absent)."""
        found = self.region_of(cls)
        if found is None:
            return None
        _, alloc, start = found
        return alloc.addr + start + offset

    def class_size(self, cls: MemClass) -> int:
        found = self.region_of(cls)
        if found is None:
            return 0
        region = found[0]
        start, end = region.classes[cls]
        return end - start


@dataclass
class Staging:
    """Where load-time writes land, for the module-finalize hook.

    ``writable(cls)`` is the address to write class ``cls`` at (the staging buffer of the
    perm_alloc contract, or the final mapping while it is still RW); ``store`` records a
    plain write there, ``store_sites`` one write per site of a table.
    """

    machine: Machine
    module: LoadedModule

    def writable(self, cls: MemClass) -> int | None:
        found = self.module.region_of(cls)
        if found is None:
            return None
        _, alloc, start = found
        return self.machine.perm.writable(alloc) + start

    def store(self, cls: MemClass, offset: int, length: int, source: str) -> None:
        found = self.module.region_of(cls)
        if found is None or length <= 0:
            return
        _, alloc, start = found
        self.machine.perm.write(alloc, start + offset, length)

    def store_sites(self, cls: MemClass, offsets: list[int], length: int, source: str) -> None:
        """``length`` bytes at each offset of class ``cls`` (one event for a whole table)."""
        found = self.module.region_of(cls)
        if found is None or length <= 0 or not offsets:
            return
        _, alloc, start = found
        self.machine.perm.write_sites(alloc, [start + offset for offset in offsets], length, source)


class ModuleLoader:
    """The module loader of one machine (machine.state("module_loader")).

    ``source``/``workload`` are the machine's workload (the policy's default when the machine
    has none): the modules that ``load`` takes by default and the vmlinux the patchers use.
    """

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        source = machine.workload or policy_workload(machine.pm, machine.policy, machine.arch.machine)
        if source is None:
            raise SpecError("no workload: no plugin registers one (permalloc workloads) and the machine has none")
        self.source = source
        self.workload = self.open(source)
        layouts = {layout.name: layout for batch in machine.hook.permalloc_module_layouts() for layout in batch}
        name = machine.policy.module_layout
        if name not in layouts:
            raise PermallocError(
                f"policy {machine.policy.name!r}: unknown module_layout {name!r}; known: {', '.join(sorted(layouts))}"
            )
        self.layout = layouts[name]
        self.loaded: dict[str, LoadedModule] = {}
        self.graph = RelocGraph(machine.arch)
        self.patchers: dict[str, dict[str, int]] = {}
        self.violations = 0
        self.plt_relocs = 0  # branches that went through a PLT entry

    def open(self, source: WorkloadSource) -> Workload:
        """Load a workload for this machine: its ELF machine must be the arch's."""
        workload = get_workload(source.path)
        arch = self.m.arch
        if arch.machine and workload.machine != arch.machine:
            raise SpecError(f"workload {source.name} is {workload.machine}, arch {arch.name!r} is {arch.machine}")
        return workload

    def resolve(self, name_or_file: str | None) -> tuple[WorkloadSource, Workload]:
        """The workload a load_module op names (None: the machine's)."""
        if name_or_file is None:
            return self.source, self.workload
        source = resolve_workload(self.m.pm, name_or_file)
        return source, self.open(source)

    # -- load order ----------------------------------------------------------------------
    def load_order(self, source: WorkloadSource, workload: Workload, name: str) -> list[str]:
        """``name`` and the dependencies not loaded yet, dependencies first (modinfo depends)."""
        deps = nx.DiGraph()
        todo = [norm(name)]
        while todo:
            mod = todo.pop()
            if mod in deps and deps.nodes[mod].get("seen"):
                continue
            info = self._info(source, workload, mod)
            deps.add_node(mod, seen=True)
            for dep in info.depends:
                dep = norm(dep)
                deps.add_edge(dep, mod)
                if dep not in self.loaded:
                    todo.append(dep)
        try:
            order = list(nx.lexicographical_topological_sort(deps))
        except nx.NetworkXUnfeasible:
            cycle = " -> ".join(a for a, _ in nx.find_cycle(deps))
            raise SpecError(f"module {name}: dependency cycle {cycle}") from None
        return [mod for mod in order if mod not in self.loaded]

    def _info(self, source: WorkloadSource, workload: Workload, name: str) -> ModuleInfo:
        try:
            return workload.modules[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(workload.modules), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SpecError(
                f"module {name!r} is not in workload {source.name} ({workload.package} {workload.version}){hint}"
            ) from None

    # -- loading --------------------------------------------------------------------------
    def mode_for(self) -> str:
        policy = self.m.policy
        if isinstance(self.layout, ContiguousLayout):
            return "6.1"
        if self.layout.name == "module-memory" and policy.text_loading == "set_memory":
            return "rox" if policy.rox_cache else "6.12"
        return "contract"

    def load(self, name: str, measure: Callable[[str], Any], from_workload: str | None = None) -> list[str]:
        """Load ``name`` with its dependencies from the machine's workload (or from the workload
        name or file ``from_workload``); each module is one ``module_load`` sample and one
        ``module_init_free`` sample. Returns the modules loaded."""
        source, data = self.resolve(from_workload)
        order = self.load_order(source, data, name)
        for mod in order:
            info = self._info(source, data, mod)
            with measure("module_load"):
                loaded = self._load_one(info)
            with measure("module_init_free"):
                self._do_init_module(loaded)
        return order

    def _load_one(self, info: ModuleInfo) -> LoadedModule:
        m = self.m
        mode = self.mode_for()
        # finit_module -> kernel_read_file: the whole .ko into vmalloc(i_size) (fs/kernel_read_file.c)
        copy = m.vmalloc.vmalloc(info.file_size, "vmalloc", Perm.RW, reset_perms=False,
                                 source="kernel_read_file") if info.file_size else None
        lm = LoadedModule(info, self.layout.plan(info), mode=mode)
        # layout_and_allocate -> move_module: one allocation per region
        for region in lm.regions:
            lifetime = region.lifetime  # core sections long, init sections short (layouts.py)
            if mode == "contract":
                end = max(e for _, e in region.classes.values())
                lm.allocs[region.name] = m.perm.alloc(end, region.perm or Perm.RW, "module", lifetime=lifetime)
            elif mode == "rox" and region.perm == Perm.RX:
                # main.c:module_memory_alloc -> execmem_alloc_rw(EXECMEM_MODULE_TEXT): ROX cache, RW+NX
                lm.allocs[region.name] = m.perm.alloc(region.size, Perm.RX, "module", lifetime=lifetime)
            else:  # module_alloc / execmem_alloc: RW+NX, page-aligned size
                lm.allocs[region.name] = m.perm.alloc(region.size, Perm.RW, "module", lifetime=lifetime)
                if mode == "rox":
                    # execmem_alloc_rw(EXECMEM_MODULE_DATA) -> execmem_force_rw: no PTE changes
                    for name in ("set_memory_nx", "set_memory_rw"):
                        self._set_memory(name, lm, region.name, 0, region.size)
        self.loaded[info.name] = lm
        self._place(lm)
        # move_module (memcpy of every section), apply_relocations, add_kallsyms: plain
        # writes to the writable address, the final mapping while it is still RW.
        for region in lm.regions:
            alloc = lm.allocs[region.name]
            m.perm.write(alloc, 0, alloc.size)
        staging = Staging(m, lm)
        for report in m.hook.permalloc_module_finalize(machine=m, module=lm, staging=staging):
            if report:
                self._record(lm, report)
        self._complete_formation(lm)
        for report in m.hook.permalloc_module_coming(machine=m, module=lm):
            if report:
                self._record(lm, report)
        if copy is not None:  # load_module: "Get rid of temporary copy." (free_copy -> vfree)
            m.vmalloc.vfree(copy, source="free_copy")
        lm.state = "live"
        return lm

    def _record(self, lm: LoadedModule, report: dict[str, Any]) -> None:
        lm.reports.append(report)
        totals = self.patchers.setdefault(str(report.get("patcher", "?")), {})
        for key, value in report.items():
            if key != "patcher" and isinstance(value, int | float):
                totals[key] = totals.get(key, 0) + value

    def _place(self, lm: LoadedModule) -> None:
        """Add the module's allocations and relocations to the graph and check reach."""
        g = self.graph
        nodes: dict[MemClass, str] = {}
        for region in lm.regions:
            alloc = lm.allocs[region.name]
            node = f"{lm.name}:{region.name}"
            g.add_node(node, lm.name, alloc.addr, alloc.addr + alloc.size)
            for cls in region.classes:
                nodes[cls] = node
        for reloc in lm.info.relocations:
            source = nodes.get(MemClass(reloc.source_class))
            if source is None:
                continue
            kind, target_name = reloc.target_kind, reloc.target_name
            if kind == "self":
                target = nodes.get(MemClass(target_name))
            elif kind == "module":
                target = self._farthest_core_node(norm(target_name), source)
            else:
                target = kind
            if target is not None:
                g.add_relocs(source, target, reloc.type, reloc.count)
        found = g.check_module(lm.name)
        # arch/arm64/kernel/module.c: apply_relocate_add, -ERANGE on CALL26/JUMP26 ->
        # module_emit_plt_entry; the slots were reserved in .plt at load (module-plts.c)
        self.plt_relocs += sum(v.count for v in found if v.plt)
        violations = [v for v in found if not v.plt]
        if violations:
            count = sum(v.count for v in violations)
            self.violations += count
            if self.m.strict:
                raise PermallocError(str(violations[0]))
            self.m.emit(ev.RELOC_OUT_OF_RANGE, count, source=f"{lm.name}: {violations[0]}")

    def _farthest_core_node(self, module: str, source: str) -> str | None:
        """A reference to another module's export: checked against its farthest core allocation."""
        target = self.loaded.get(module)
        if target is None:
            return None
        nodes = [f"{module}:{r.name}" for r in target.regions if not r.init and r.name in target.allocs]
        return max(nodes, key=lambda n: abs(self.graph.worst_distance(source, n)), default=None)

    # -- permissions ----------------------------------------------------------------------
    def _set_memory(self, name: str, lm: LoadedModule, region: str, start: int, end: int) -> None:
        alloc = lm.allocs.get(region)
        if alloc is None:
            # a region the layout did not allocate (6.12 module_set_memory: base NULL -> no call)
            return
        self.m.perm.set_memory(name, alloc.addr + start, (end - start) >> PAGE_SHIFT)

    def _frob(self, lm: LoadedModule, lifetime: str, what: str) -> tuple[str, int, int]:
        """6.1 strict_rwx.c frob_text/frob_rodata/frob_ro_after_init/frob_writable_data ranges."""
        region = next((r for r in lm.regions if r.name == lifetime), None)
        if region is None:
            return lifetime, 0, 0
        text_cls, ro_cls = (MemClass.INIT_TEXT, MemClass.INIT_RODATA) if region.init else (MemClass.TEXT, MemClass.RODATA)
        text_size = region.classes[text_cls][1]
        ro_size = region.classes[ro_cls][1]
        ro_after_init_size = ro_size if region.init else region.classes[MemClass.RO_AFTER_INIT][1]
        return {
            "text": (lifetime, 0, text_size),
            "rodata": (lifetime, text_size, ro_size),
            "ro_after_init": (lifetime, ro_size, ro_after_init_size),
            "data": (lifetime, ro_after_init_size, region.size),
        }[what]

    def _complete_formation(self, lm: LoadedModule) -> None:
        m = self.m
        if lm.mode == "contract":
            for alloc in lm.allocs.values():
                m.perm.finish(alloc)
            return
        if lm.mode == "rox":
            self._complete_formation_rox(lm)
            return
        for alloc in lm.allocs.values():
            m.perm.finish(alloc)  # RW allocations: live as they are; permissions follow
        if lm.mode == "6.1":
            # strict_rwx.c 6.1 l.92 module_enable_ro(mod, false)
            for lifetime, what in (("core", "text"), ("core", "rodata"), ("init", "text"), ("init", "rodata")):
                self._set_memory("set_memory_ro", lm, *self._frob(lm, lifetime, what))
            # l.113 module_enable_nx
            for lifetime, what in (("core", "rodata"), ("core", "ro_after_init"), ("core", "data"),
                                   ("init", "rodata"), ("init", "data")):
                self._set_memory("set_memory_nx", lm, *self._frob(lm, lifetime, what))
            # l.82 module_enable_x
            for lifetime in ("core", "init"):
                self._set_memory("set_memory_x", lm, *self._frob(lm, lifetime, "text"))
        else:
            # strict_rwx.c 6.12 l.47 module_enable_rodata_ro(mod, false), l.67
            # module_enable_data_nx, l.32 module_enable_text_rox
            for cls in (MemClass.RODATA, MemClass.INIT_RODATA):
                self._set_memory_type("set_memory_ro", lm, cls)
            for cls in (MemClass.DATA, MemClass.RODATA, MemClass.RO_AFTER_INIT, MemClass.INIT_DATA, MemClass.INIT_RODATA):
                self._set_memory_type("set_memory_nx", lm, cls)
            for cls in (MemClass.TEXT, MemClass.INIT_TEXT):
                self._set_memory_type("set_memory_rox", lm, cls)

    def _complete_formation_rox(self, lm: LoadedModule) -> None:
        """complete_formation with the ROX cache (main.c @21d4fdc8; strict_rwx.c)."""
        m = self.m
        text = (MemClass.TEXT, MemClass.INIT_TEXT)
        for name, alloc in lm.allocs.items():
            if MemClass(name) not in text:
                m.perm.finish(alloc)  # RW data: live as it is; permissions follow
        for cls in (MemClass.RODATA, MemClass.INIT_RODATA):  # module_enable_rodata_ro
            self._set_memory_type("set_memory_ro", lm, cls)
        for cls in (MemClass.DATA, MemClass.RODATA, MemClass.RO_AFTER_INIT, MemClass.INIT_DATA, MemClass.INIT_RODATA):
            self._set_memory_type("set_memory_nx", lm, cls)  # module_enable_data_nx
        for cls in text:  # module_enable_text_rox: is_rox -> execmem_restore_rox (set_memory_rox)
            alloc = lm.allocs.get(cls.value)
            if alloc is not None:
                m.perm.finish(alloc)

    def _set_memory_type(self, name: str, lm: LoadedModule, cls: MemClass) -> None:
        alloc = lm.allocs.get(cls.value)
        if alloc is not None:
            self._set_memory(name, lm, cls.value, 0, alloc.size)

    def _do_init_module(self, lm: LoadedModule) -> None:
        """After init: ro_after_init becomes RO, then do_free_init frees the init allocations."""
        m = self.m
        if lm.mode == "6.1":
            # module_enable_ro(mod, true): the same four calls, plus ro_after_init
            for lifetime, what in (("core", "text"), ("core", "rodata"), ("init", "text"), ("init", "rodata"),
                                   ("core", "ro_after_init")):
                self._set_memory("set_memory_ro", lm, *self._frob(lm, lifetime, what))
        elif lm.mode == "6.12":
            for cls in (MemClass.RODATA, MemClass.INIT_RODATA, MemClass.RO_AFTER_INIT):
                self._set_memory_type("set_memory_ro", lm, cls)
        elif lm.mode == "rox":
            # main.c:do_init_module -> module_enable_rodata_ro_after_init: MOD_RO_AFTER_INIT only
            self._set_memory_type("set_memory_ro", lm, MemClass.RO_AFTER_INIT)
        else:
            for region in lm.regions:
                if region.after_init is not None and region.name in lm.allocs:
                    m.perm.change(lm.allocs[region.name], region.after_init)
        # do_free_init: 6.1 one vfree of the init layout, 6.12 three execmem_free (upstream
        # main.c @21d4fdc8: init_text, init_data, init_rodata, in that order)
        init = [region.name for region in lm.regions if region.init and region.name in lm.allocs]
        if lm.mode == "rox":
            order = (MemClass.INIT_TEXT.value, MemClass.INIT_DATA.value, MemClass.INIT_RODATA.value)
            init.sort(key=lambda name: order.index(name) if name in order else len(order))
        for name in init:
            m.perm.free(lm.allocs.pop(name))
            self.graph.g.remove_node(f"{lm.name}:{name}")

    # -- unloading ------------------------------------------------------------------------
    def dependents(self, name: str) -> list[str]:
        return sorted(other for other, lm in self.loaded.items() if name in map(norm, lm.info.depends))

    def unload(self, name: str) -> None:
        name = norm(name)
        lm = self.loaded.get(name)
        if lm is None:
            raise ContractError(f"module {name} is not loaded")
        users = self.dependents(name)
        if users:
            raise ContractError(f"module {name} is in use by {', '.join(users)}")
        self.m.hook.permalloc_module_going(machine=self.m, module=lm)
        # free_module: 6.12 free_mod_mem frees every type, MOD_DATA last
        for region_name in sorted(lm.allocs, key=lambda r: r == MemClass.DATA.value):
            self.m.perm.free(lm.allocs.pop(region_name))
        self.graph.remove_module(name)
        del self.loaded[name]

    def unload_all(self) -> None:
        while self.loaded:
            leaves = [n for n in self.loaded if not self.dependents(n)]
            for name in sorted(leaves):
                self.unload(name)

    # -- /proc/modules --------------------------------------------------------------------
    def proc_size(self, lm: LoadedModule) -> int:
        """The size /proc/modules shows for the kernel the policy models.

        6.1 procfs.c m_show: init_layout.size + core_layout.size (init is 0 once live);
        6.12 module_total_size: the sum of the PAGE_ALIGNed sizes of the types still held.
        """
        init_live = lm.state != "live"
        if self.m.kernel >= (6, 4):
            plan = SeparateLayout("module-memory", "").plan(lm.info)
        else:
            plan = ContiguousLayout().plan(lm.info)
        return sum(r.size for r in plan if init_live or not r.init)

    def proc_modules(self) -> list[dict[str, Any]]:
        rows = []
        for name, lm in self.loaded.items():
            users = self.dependents(name)
            text = lm.address(MemClass.TEXT)
            rows.append({
                "name": name,
                "size": self.proc_size(lm),
                "used_by": users,
                "state": "Live" if lm.state == "live" else "Loading",
                "address": hex(text) if text is not None else None,
                "allocated": sum(a.allocated for a in lm.allocs.values()),
            })
        return rows

