"""What module ingestion needs to know of one ELF machine: the arch's part of the module loader.

``permalloc ingest`` follows kernel/module/main.c, which is the same on every arch, except
where the loader calls into the arch: ``elf_check_arch`` (which ``e_machine`` it accepts),
``module_frob_arch_sections`` (an arch may resize sections before layout, e.g. arm64's module
PLTs), ``ARCH_SHF_SMALL``, ``module_finalize`` (which arch tables it walks) and the
relocation type names. An arch contributes an :class:`ElfMachine` through the
``permalloc_elf_machines`` hook; ingest knows no machine of its own.

An ElfMachine crosses into ingest's worker processes, so it is plain data plus, for
``frob_sections``, a module-level function (picklable by reference).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ElfMachine", "ElfSections"]


@dataclass
class ElfSections:
    """The section headers of one module as ``module_frob_arch_sections`` sees them.

    The lists are the loader's copy of ``sechdrs`` (after rewrite_section_headers): a frob
    function edits them in place, as the kernel edits the headers. ``symtab`` is the
    symbol table (numpy structured array with ``shndx``), ``rela(i)`` the entries of
    SHT_RELA section ``i`` (``offset``, ``info``, ``addend``)."""

    names: list[str]
    types: list[int]
    flags: list[int]
    sizes: list[int]
    aligns: list[int]
    infos: list[int]
    symtab: np.ndarray
    rela: Callable[[int], np.ndarray]


@dataclass(frozen=True)
class ElfMachine:
    """One ELF machine that ingest can read modules of."""

    #: ``e_machine`` as pyelftools names it (``"EM_X86_64"``, ``"EM_AARCH64"``)
    e_machine: str
    #: the machine name a workload records (``uname -m``: ``"x86_64"``, ``"aarch64"``)
    name: str
    #: relocation type number -> name; a number not in it is ``reloc_prefix + str(number)``
    reloc_names: Mapping[int, str]
    reloc_prefix: str
    #: include/linux/ftrace.h FTRACE_CALLSITE_SECTION: the table ftrace records for this arch
    ftrace_callsite_section: str
    #: kernel version ("6.1", "6.12") -> the arch tables module_finalize walks, section name ->
    #: sizeof one entry (added to the generic ones of the module loader)
    tables: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: kernel/module/internal.h ARCH_SHF_SMALL (0 unless the arch defines it)
    arch_shf_small: int = 0
    #: module_frob_arch_sections(sections, version): edits the headers in place; None when the
    #: arch keeps the weak default (which does nothing)
    frob_sections: Callable[[ElfSections, str], None] | None = None

    def reloc_name(self, rtype: int) -> str:
        return self.reloc_names.get(rtype) or f"{self.reloc_prefix}{rtype}"
