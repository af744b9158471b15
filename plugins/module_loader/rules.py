"""The facts of the kernels that ingest knows, where Linux 6.1 and 6.12 differ.

Ingest follows the code of the kernel whose modules it reads: it takes the version from
the kernel release (``6.1.0-57-amd64`` -> 6.1, ``6.12.118+deb12-amd64`` -> 6.12) and
refuses a version whose rules it does not have, rather than guess them. Everything here was
read in Debian's ``linux-source-6.1`` (6.1.192) and ``linux-source-6.12`` (6.12.118) trees;
each rule names its ``file:function`` or struct.

The ELF machine is the other key: ``MACHINES`` maps ``e_machine`` to the name the
workload records (``uname -m`` style). Only x86-64 has rules today; an arm64 entry
(EM_AARCH64, 183) comes with arm64 module ingestion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FTRACE_CALLSITE_SECTION",
    "KernelRules",
    "MACHINES",
    "RULES",
    "kernel_version",
    "rules_for",
]

#: ELF e_machine (pyelftools' name) -> machine name of the workload.
MACHINES: dict[str, str] = {"EM_X86_64": "x86_64"}

#: The section whose entries ftrace records (include/linux/ftrace.h: FTRACE_CALLSITE_SECTION is
#: "__patchable_function_entries" only with CONFIG_FTRACE_MCOUNT_USE_PATCHABLE_FUNCTION_ENTRY,
#: which arch/x86/Kconfig never selects; kernel/module/main.c:find_module_sections reads that
#: one section). x86 modules of 6.12 also carry __patchable_function_entries, made by
#: -fpatchable-function-entry for CONFIG_CALL_PADDING (arch/x86/Makefile): not ftrace sites.
FTRACE_CALLSITE_SECTION: dict[str, str] = {"x86_64": "__mcount_loc"}

_S32 = 4

# Entry sizes of the tables the load-time patchers walk (x86-64). The same struct in both
# kernels unless said otherwise.
_TABLES_COMMON: dict[str, int] = {
    "__jump_table": 16,  # include/linux/jump_label.h: struct jump_entry {s32 code; s32 target; long key}
    "__mcount_loc": 8,  # kernel/module/main.c:find_module_sections: unsigned long per site
    "__patchable_function_entries": 8,  # one pointer per entry (gcc -fpatchable-function-entry)
    ".orc_unwind_ip": _S32,  # arch/x86/kernel/unwind_orc.c:unwind_module_init: int
    ".static_call_sites": 8,  # include/linux/static_call_types.h: {s32 addr; s32 key}
    ".retpoline_sites": _S32,  # arch/x86/kernel/alternative.c:apply_retpolines: s32
    ".return_sites": _S32,  # alternative.c:apply_returns: s32
    ".ibt_endbr_seal": _S32,  # alternative.c:apply_ibt_endbr (6.1), apply_seal_endbr (6.12): s32
    ".smp_locks": _S32,  # alternative.c:alternatives_smp_module_add: s32
}


@dataclass(frozen=True)
class KernelRules:
    """What ingest does differently for one kernel version."""

    version: tuple[int, int]
    #: table section -> sizeof one entry (only the tables this kernel's loader reads)
    table_entry_sizes: dict[str, int]
    #: kernel/module/main.c:layout_and_allocate: the sections that get SHF_RO_AFTER_INIT
    ro_after_init_sections: tuple[str, ...]
    #: whether layout_sections places an init section that has SHF_RO_AFTER_INIT (in the init
    #: layout's writable part) or leaves it out
    init_ro_after_init_placed: bool


RULES: dict[tuple[int, int], KernelRules] = {
    (6, 1): KernelRules(
        version=(6, 1),
        table_entry_sizes={
            **_TABLES_COMMON,
            # arch/x86/include/asm/alternative.h 6.1: struct alt_instr {s32; s32; u16 cpuid;
            # u8 instrlen; u8 replacementlen} __packed
            ".altinstructions": 12,
            # asm/paravirt_types.h 6.1: struct paravirt_patch_site {u8 *instr; u8 type; u8 len}
            ".parainstructions": 16,
        },
        # main.c 6.1 layout_and_allocate: ".data..ro_after_init" and "__jump_table"
        ro_after_init_sections=(".data..ro_after_init", "__jump_table"),
        # main.c 6.1 layout_sections: "RO after init doesn't apply to init_layout", an m2
        # section lands after init ro_size, in the writable part
        init_ro_after_init_placed=True,
    ),
    (6, 12): KernelRules(
        version=(6, 12),
        table_entry_sizes={
            **_TABLES_COMMON,
            # arch/x86/include/asm/alternative.h 6.12: struct alt_instr {s32; s32; union {u32
            # cpuid:16, flags:16; u32 ft_flags}; u8 instrlen; u8 replacementlen} __packed
            ".altinstructions": 14,
            # arch/x86/kernel/module.c 6.12 module_finalize: call depth tracking and FineIBT
            ".call_sites": _S32,
            ".cfi_sites": _S32,
        },
        # main.c 6.12 layout_and_allocate: the same two sections
        ro_after_init_sections=(".data..ro_after_init", "__jump_table"),
        # main.c 6.12 __layout_sections: init_m_to_mem_type[2] is MOD_INVALID, "if
        # (WARN_ON_ONCE(type == MOD_INVALID)) continue;": the section is not placed
        init_ro_after_init_placed=False,
    ),
}

_VERSION = re.compile(r"^(\d+)\.(\d+)")


def kernel_version(release: str) -> tuple[int, int]:
    """``"6.12.118+deb12-amd64"`` -> ``(6, 12)``; ValueError for anything else."""
    match = _VERSION.match(release)
    if match is None:
        raise ValueError(f"kernel release {release!r} does not start with a version (such as 6.1)")
    return int(match[1]), int(match[2])


def rules_for(release: str) -> KernelRules:
    """The rules of the kernel with release ``release``; ValueError for a version ingest lacks."""
    version = kernel_version(release)
    rules = RULES.get(version)
    if rules is None:
        known = ", ".join(f"{a}.{b}" for a, b in RULES)
        raise ValueError(
            f"kernel release {release}: ingest has the module loader rules of Linux {known} only"
        )
    return rules
