"""Module layouts: how a module's sections become allocations.

* ``contiguous``: 6.1's ``module_layout`` (kernel/module/main.c: layout_sections, 6.1
  l.1436): one core and one init allocation, each ``[text][rodata][ro_after_init][data]``
  with page-aligned boundaries (strict_align under CONFIG_STRICT_MODULE_RWX), the core
  kallsyms appended after the data (kallsyms.c: layout_symtab).
* ``rfc``: the RFC's module loader change ("treat each of its 4 permission regions as
  separate allocations"): per lifetime, text RX, rodata R, ro_after_init, data RW.
* ``module-memory``: 6.4+'s ``struct module_memory`` (6.12 main.c: __layout_sections,
  module_memory_alloc): up to seven types, each its own PAGE_ALIGNed allocation.

A layout only plans; the loader allocates, relocates and changes permissions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from permalloc import Perm
from permalloc.model.pages import PAGE_SIZE, align_up

from .workload import MemClass, ModuleInfo

CORE = (MemClass.TEXT, MemClass.RODATA, MemClass.RO_AFTER_INIT, MemClass.DATA)
INIT = (MemClass.INIT_TEXT, MemClass.INIT_RODATA, MemClass.INIT_DATA)
KALLSYMS_ALIGN = 8  # .symtab sh_addralign on x86-64 (kallsyms.c: layout_symtab)

# The final permission of each class, and what it becomes after init (ro_after_init).
FINAL_PERM = {
    MemClass.TEXT: Perm.RX,
    MemClass.RODATA: Perm.R,
    MemClass.RO_AFTER_INIT: Perm.RW,
    MemClass.DATA: Perm.RW,
    MemClass.INIT_TEXT: Perm.RX,
    MemClass.INIT_RODATA: Perm.R,
    MemClass.INIT_DATA: Perm.RW,
}


@dataclass
class Region:
    """One allocation of a module.

    ``classes`` maps each memory class inside it to its [start, end) offsets; for a
    contiguous region the boundaries are the 6.1 ``module_layout`` fields.
    """

    name: str
    init: bool
    size: int  # bytes allocated (page granular where the kernel rounds)
    requested: int  # bytes of sections and kallsyms, without padding
    classes: dict[MemClass, tuple[int, int]] = field(default_factory=dict)
    perm: Perm | None = None  # final permission; None: mixed (contiguous)
    after_init: Perm | None = None  # permission after init (ro_after_init)

    @property
    def mixed(self) -> bool:
        return self.perm is None

    @property
    def lifetime(self) -> str:
        """The ``lifetime`` hint of its perm_alloc: the core sections (text, rodata,
        ro_after_init, data) live until the module is unloaded, the init sections are freed
        after init. RFC cover letter (Nov 2020), idea 4, ll.94-97: "Often a bunch of modules
        are loaded at boot. If we placed the long lived 'core sections' of these modules
        sequentially into the 2MB blocks, there is probably a good chance we could get some
        decent utilization out of one."
        """
        return "short" if self.init else "long"


def _place(mod: ModuleInfo, cls: MemClass, size: int) -> tuple[int, int]:
    """module_get_offset: each section at ALIGN(size, sh_addralign ?: 1)."""
    for sec in mod.sections:
        if sec.mem_class == cls:
            size = _align_any(size, sec.align or 1) + sec.size
    return size, sum(s.size for s in mod.sections if s.mem_class == cls)


def _align_any(value: int, align: int) -> int:
    return -(-value // align) * align


def _kallsyms(mod: ModuleInfo, cls: MemClass) -> int:
    if cls == MemClass.DATA:
        return mod.kallsyms_core_bytes
    if cls == MemClass.INIT_DATA:
        return mod.kallsyms_init_bytes
    return 0


class ContiguousLayout:
    name = "contiguous"
    description = "6.1 module_layout: one core and one init allocation, page-aligned permission boundaries"

    def plan(self, mod: ModuleInfo) -> list[Region]:
        regions = []
        for lifetime, classes in (("core", CORE), ("init", INIT)):
            size = requested = 0
            bounds: dict[MemClass, tuple[int, int]] = {}
            for cls in classes:
                start = size
                size, raw = _place(mod, cls, size)
                requested += raw
                if cls != MemClass.DATA and cls != MemClass.INIT_DATA:
                    size = align_up(size, PAGE_SIZE)  # strict_align after m0, m1, m2
                bounds[cls] = (start, size)
            size = align_up(size, PAGE_SIZE)  # strict_align after m4
            # layout_symtab: core kallsyms appended to core data; the init copy (symtab,
            # strtab, mod_kallsyms, typetab) to the init layout; then strict_align again.
            extra = _kallsyms(mod, classes[-1])
            if extra:
                size = align_up(align_up(size, KALLSYMS_ALIGN) + extra, PAGE_SIZE)
                requested += extra
            data_cls = classes[-1]
            bounds[data_cls] = (bounds[data_cls][0], size)
            if size:
                regions.append(Region(lifetime, lifetime == "init", size, requested, bounds))
        return regions


class SeparateLayout:
    """One allocation per memory class (``rfc`` and ``module-memory``)."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description

    def plan(self, mod: ModuleInfo) -> list[Region]:
        regions = []
        for cls in (*CORE, *INIT):
            size, raw = _place(mod, cls, 0)
            extra = _kallsyms(mod, cls)
            if extra:
                size = align_up(size, KALLSYMS_ALIGN) + extra
                raw += extra
            if not size:
                continue  # module_memory_alloc: a type of size 0 gets no allocation
            after = Perm.R if cls == MemClass.RO_AFTER_INIT else None
            regions.append(
                Region(cls.value, cls.is_init, align_up(size, PAGE_SIZE), raw, {cls: (0, size)}, FINAL_PERM[cls], after)
            )
        return regions


LAYOUTS = (
    ContiguousLayout(),
    SeparateLayout("rfc", "the RFC: each permission region of each lifetime its own perm_alloc"),
    SeparateLayout("module-memory", "6.4+ module_memory: up to seven types, each its own allocation"),
)
