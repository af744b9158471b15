"""The facts of the kernels that ingest knows, where Linux 6.1 and 6.12 differ.

Ingest follows the code of the kernel whose modules it reads: it takes the version from
the kernel release (``6.1.0-57-amd64`` -> 6.1, ``6.12.118+deb12-amd64`` -> 6.12) and
refuses a version whose rules it does not have, rather than guess them. Everything here was
read in Debian's ``linux-source-6.1`` (6.1.192) and ``linux-source-6.12`` (6.12.118) trees;
each rule names its ``file:function`` or struct.

The ELF machine is the other key: what the loader leaves to the arch (``elf_check_arch``,
``module_frob_arch_sections``, the tables of ``module_finalize``, relocation names) comes
from the arches, as :class:`~permalloc.model.elfmachine.ElfMachine` objects
(``permalloc_elf_machines``); this module has only what kernel/module/ does itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from permalloc.model.elfmachine import ElfMachine

__all__ = [
    "KernelRules",
    "RULES",
    "kernel_version",
    "rules_for",
    "table_entry_sizes",
    "version_key",
]

# Entry sizes of the generic tables the module loader and its patchers walk, the same struct
# on every arch and in both kernels.
_TABLES_COMMON: dict[str, int] = {
    "__jump_table": 16,  # include/linux/jump_label.h: struct jump_entry {s32 code; s32 target; long key}
    "__mcount_loc": 8,  # kernel/module/main.c:find_module_sections: unsigned long per site
    "__patchable_function_entries": 8,  # one pointer per entry (gcc -fpatchable-function-entry)
}


@dataclass(frozen=True)
class KernelRules:
    """What ingest does differently for one kernel version."""

    version: tuple[int, int]
    #: generic table section -> sizeof one entry (the arch's tables: ElfMachine.tables)
    table_entry_sizes: dict[str, int]
    #: kernel/module/main.c:layout_and_allocate: the sections that get SHF_RO_AFTER_INIT
    ro_after_init_sections: tuple[str, ...]
    #: whether layout_sections places an init section that has SHF_RO_AFTER_INIT (in the init
    #: layout's writable part) or leaves it out
    init_ro_after_init_placed: bool


RULES: dict[tuple[int, int], KernelRules] = {
    (6, 1): KernelRules(
        version=(6, 1),
        table_entry_sizes=dict(_TABLES_COMMON),
        # main.c 6.1 layout_and_allocate: ".data..ro_after_init" and "__jump_table"
        ro_after_init_sections=(".data..ro_after_init", "__jump_table"),
        # main.c 6.1 layout_sections: "RO after init doesn't apply to init_layout", an m2
        # section lands after init ro_size, in the writable part
        init_ro_after_init_placed=True,
    ),
    (6, 12): KernelRules(
        version=(6, 12),
        table_entry_sizes=dict(_TABLES_COMMON),
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


def version_key(rules: KernelRules) -> str:
    """``(6, 12)`` -> ``"6.12"``: the key of :attr:`ElfMachine.tables`."""
    return f"{rules.version[0]}.{rules.version[1]}"


def table_entry_sizes(rules: KernelRules, machine: ElfMachine) -> dict[str, int]:
    """Every table this kernel's loader walks on ``machine``: the generic ones and the arch's."""
    return {**rules.table_entry_sizes, **machine.tables.get(version_key(rules), {})}
