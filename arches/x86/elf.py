"""x86-64 modules as the module loader reads them (the arch's part of kernel/module/main.c).

* ``elf_check_arch``: EM_X86_64 (arch/x86/include/asm/elf.h).
* relocation names: the x86-64 psABI (pyelftools' table, plus the types it does not name).
* FTRACE_CALLSITE_SECTION is ``__mcount_loc`` (include/linux/ftrace.h: "__patchable_function_entries"
  only with CONFIG_FTRACE_MCOUNT_USE_PATCHABLE_FUNCTION_ENTRY, which arch/x86/Kconfig never
  selects). x86 modules of 6.12 also carry __patchable_function_entries, made by
  -fpatchable-function-entry for CONFIG_CALL_PADDING (arch/x86/Makefile): not ftrace sites.
* the tables module_finalize walks (arch/x86/kernel/module.c) and their entry sizes, per
  kernel version; ARCH_SHF_SMALL is 0 and there is no module_frob_arch_sections (weak
  default in kernel/module/main.c).
"""

from __future__ import annotations

from elftools.elf.enums import ENUM_RELOC_TYPE_x64

from permalloc.model.elfmachine import ElfMachine

_S32 = 4

_RELOCS = {v: k for k, v in ENUM_RELOC_TYPE_x64.items() if isinstance(v, int)}
# Types pyelftools 0.33 does not name (x86-64 psABI):
_RELOCS.setdefault(32, "R_X86_64_SIZE32")
_RELOCS.setdefault(33, "R_X86_64_SIZE64")
_RELOCS.setdefault(38, "R_X86_64_RELATIVE64")
_RELOCS.setdefault(41, "R_X86_64_GOTPCRELX")

# The same struct in both kernels unless said otherwise.
_TABLES_COMMON: dict[str, int] = {
    ".orc_unwind_ip": _S32,  # arch/x86/kernel/unwind_orc.c:unwind_module_init: int
    ".static_call_sites": 8,  # include/linux/static_call_types.h: {s32 addr; s32 key}
    ".retpoline_sites": _S32,  # arch/x86/kernel/alternative.c:apply_retpolines: s32
    ".return_sites": _S32,  # alternative.c:apply_returns: s32
    ".ibt_endbr_seal": _S32,  # alternative.c:apply_ibt_endbr (6.1), apply_seal_endbr (6.12): s32
    ".smp_locks": _S32,  # alternative.c:alternatives_smp_module_add: s32
}

X86_64 = ElfMachine(
    e_machine="EM_X86_64",
    name="x86_64",
    reloc_names=_RELOCS,
    reloc_prefix="R_X86_64_",
    ftrace_callsite_section="__mcount_loc",
    tables={
        "6.1": {
            **_TABLES_COMMON,
            # arch/x86/include/asm/alternative.h 6.1: struct alt_instr {s32; s32; u16 cpuid;
            # u8 instrlen; u8 replacementlen} __packed
            ".altinstructions": 12,
            # asm/paravirt_types.h 6.1: struct paravirt_patch_site {u8 *instr; u8 type; u8 len}
            ".parainstructions": 16,
        },
        "6.12": {
            **_TABLES_COMMON,
            # arch/x86/include/asm/alternative.h 6.12: struct alt_instr {s32; s32; union {u32
            # cpuid:16, flags:16; u32 ft_flags}; u8 instrlen; u8 replacementlen} __packed
            ".altinstructions": 14,
            # arch/x86/kernel/module.c 6.12 module_finalize: call depth tracking and FineIBT
            ".call_sites": _S32,
            ".cfi_sites": _S32,
        },
    },
)
