"""arm64 modules as the module loader reads them (the arch's part of kernel/module/main.c).

* ``elf_check_arch``: EM_AARCH64 (arch/arm64/include/asm/elf.h); relocation names from the
  AArch64 ELF ABI (pyelftools' table).
* FTRACE_CALLSITE_SECTION is ``__patchable_function_entries``: arch/arm64/Kconfig selects
  FTRACE_MCOUNT_USE_PATCHABLE_FUNCTION_ENTRY with DYNAMIC_FTRACE_WITH_REGS (6.1) /
  DYNAMIC_FTRACE_WITH_ARGS (6.12), both set in Debian's config.
* module_finalize (arch/arm64/kernel/module.c, 6.1 and 6.12) walks ``.altinstructions``
  (apply_alternatives_module; struct alt_instr {s32 orig_offset; s32 alt_offset; u16
  cpufeature (6.12: cpucap); u8 orig_len; u8 alt_len} = 12 bytes, asm/alternative-macros.h).
* module_frob_arch_sections (arch/arm64/kernel/module-plts.c) sizes the module PLTs before
  layout: :func:`frob_sections`.
"""

from __future__ import annotations

import numpy as np
from elftools.elf.enums import ENUM_RELOC_TYPE_AARCH64

from permalloc.model.elfmachine import ElfMachine, ElfSections

__all__ = ["AARCH64", "frob_sections", "count_plts"]

R_AARCH64_JUMP26, R_AARCH64_CALL26 = 282, 283
SHT_RELA, SHT_NOBITS = 4, 8
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
PLT_ENTRY_SIZE = 12  # asm/module.h: struct plt_entry {__le32 adrp; __le32 add; __le32 br}
PLT_ENTRY_ALIGN = 4  # __alignof__(struct plt_entry)
L1_CACHE_BYTES = 64  # asm/cache.h: L1_CACHE_SHIFT 6
# asm/ftrace.h: NR_FTRACE_PLTS, 2 in 6.1 (FTRACE_PLT_IDX, FTRACE_REGS_PLT_IDX), 1 in 6.12
NR_FTRACE_PLTS = {"6.1": 2, "6.12": 1}
# module-plts.c 6.12 also sizes .init.text.ftrace_trampoline (asm/module.lds.h 6.12)
TRAMPOLINES = {"6.1": (".text.ftrace_trampoline",),
               "6.12": (".text.ftrace_trampoline", ".init.text.ftrace_trampoline")}


def count_plts(symtab_shndx: np.ndarray, rela: np.ndarray, dstidx: int) -> int:
    """module-plts.c:count_plts for one RELA section whose target is section ``dstidx``.

    CALL26/JUMP26 against a symbol defined in another section need a PLT entry
    (CONFIG_RANDOMIZE_BASE=y in Debian: in 6.1 the check is under IS_ENABLED); after
    partition_branch_plt_relas and the sort by (type, symbol, addend), one entry per
    distinct (type, symbol) with addend 0, and one per relocation with a non-zero addend.
    The ADRP veneers of erratum 843419 depend on the CPU (ARM64_WORKAROUND_843419 is a
    Cortex-A53 capability): the modelled CPUs do not need it, so ADRPs add none."""
    info = rela["info"]
    rtype = (info & np.uint64(0xFFFFFFFF)).astype(np.int64)
    sym = (info >> np.uint64(32)).astype(np.int64)
    branch = ((rtype == R_AARCH64_JUMP26) | (rtype == R_AARCH64_CALL26)) & (symtab_shndx[sym] != dstidx)
    addend = rela["addend"][branch]
    keys = (rtype[branch] << 32) | sym[branch]
    return int((addend != 0).sum()) + int(np.unique(keys[addend == 0]).size)


def _module_init_layout_section(name: str) -> bool:
    # kernel/module/main.c:module_init_layout_section: module_init_section() (".init*"); exit
    # sections stay in core with CONFIG_MODULE_UNLOAD=y (Debian)
    return name.startswith(".init")


def frob_sections(sec: ElfSections, version: str) -> None:
    """module-plts.c:module_frob_arch_sections (6.1 and 6.12)."""
    names = sec.names
    if ".plt" not in names or ".init.plt" not in names:
        raise ValueError("module PLT section(s) missing")
    shndx = sec.symtab["shndx"].astype(np.int64)
    core_plts = init_plts = 0
    for i, kind in enumerate(sec.types):
        if kind != SHT_RELA:
            continue
        dst = sec.infos[i]
        if dst >= len(names) or not sec.flags[dst] & SHF_EXECINSTR:  # "non-exec sections"
            continue
        n = count_plts(shndx, sec.rela(i), dst)
        if _module_init_layout_section(names[dst]):
            init_plts += n
        else:
            core_plts += n
    for name, count in ((".plt", core_plts), (".init.plt", init_plts)):
        i = names.index(name)
        sec.types[i], sec.flags[i], sec.aligns[i] = SHT_NOBITS, SHF_EXECINSTR | SHF_ALLOC, L1_CACHE_BYTES
        sec.sizes[i] = (count + 1) * PLT_ENTRY_SIZE
    for name in TRAMPOLINES[version]:
        if name in names:
            i = names.index(name)
            sec.types[i], sec.flags[i], sec.aligns[i] = SHT_NOBITS, SHF_EXECINSTR | SHF_ALLOC, PLT_ENTRY_ALIGN
            sec.sizes[i] = NR_FTRACE_PLTS[version] * PLT_ENTRY_SIZE


AARCH64 = ElfMachine(
    e_machine="EM_AARCH64",
    name="aarch64",
    reloc_names={v: k for k, v in ENUM_RELOC_TYPE_AARCH64.items() if isinstance(v, int)},
    reloc_prefix="R_AARCH64_",
    ftrace_callsite_section="__patchable_function_entries",
    tables={"6.1": {".altinstructions": 12}, "6.12": {".altinstructions": 12}},
    frob_sections=frob_sections,
)
