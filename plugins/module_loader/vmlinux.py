"""vmlinux: what the patchers and the kernel-image model need to know about a kernel image.

``permalloc ingest`` reads the package's ``boot/vmlinuz-*`` (:mod:`.kernel_image`) and keeps
a :class:`VmlinuxInfo` in the workload (``Workload.vmlinux``):

* **sections**: every SHF_ALLOC section (name, address, size, flags, alignment) and the
  PT_LOAD segments (where the image wants to be placed);
* **layout**: the markers of arch/x86/kernel/vmlinux.lds.S as addresses. Debian's image is
  stripped (``boot/System.map`` only says "The real System.map is in the
  linux-image-<version>-dbg package"), so each marker is derived from the section headers by
  the rule of the linker script that defines it;
* **tables**: the entry counts of the tables that boot-time and run-time patchers walk. The
  tables with an output section of their own (.altinstructions, .parainstructions,
  .retpoline_sites, .return_sites, .call_sites, .ibt_endbr_seal, .smp_locks,
  .orc_unwind_ip) are counted from their section; the three that the linker script puts
  inside bigger sections (__mcount_loc in .init.data, __jump_table and .static_call_sites
  in the ro_after_init part of .rodata) are found by the shape of their entries, with the
  checks the kernel itself makes on them;
* **jump_keys**: per static key used by ``__jump_table`` (in key address order) its
  run-time entries, init entries and initial state (JUMP_TYPE_TRUE).

How the facts are read is :mod:`.kernel_image`; this module is only the model, so that
loading a workload does not import the readers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "LAYOUT_MARKERS",
    "VmlinuxInfo",
    "VmlinuxSection",
    "VmlinuxSegment",
    "VmlinuxTables",
]

#: The markers :attr:`VmlinuxInfo.layout` holds (arch/x86/kernel/vmlinux.lds.S and
#: include/asm-generic/vmlinux.lds.h symbols). ``None`` for the two that the stripped image
#: cannot tell: __start_bss_decrypted and __start_bss_decrypted_unused depend on the size of
#: the .bss..decrypted input sections, which the linker merged into .bss (NOBITS: no bytes,
#: no header of their own).
LAYOUT_MARKERS: tuple[str, ...] = (
    "_text", "_stext", "_etext",
    "__start_rodata", "__start___jump_table", "__stop___jump_table", "__start_static_call_sites",
    "__stop_static_call_sites", "__stop_static_call_tramp_key", "__end_rodata", "__end_rodata_aligned",
    "__end_rodata_hpage_align",
    "_sdata", "_edata", "__vvar_page",
    "__init_begin", "__per_cpu_load", "__per_cpu_start", "__per_cpu_end", "_sinittext", "_einittext",
    "__stop_mcount_loc", "__init_end",
    "__smp_locks", "__smp_locks_end",
    "__bss_start", "__start_bss_decrypted", "__start_bss_decrypted_unused", "__end_bss_decrypted", "__bss_stop",
    "__end_of_kernel_reserve", "__brk_base", "__brk_limit", "_end",
    "__init_scratch_begin", "__init_scratch_end",
)  # fmt: skip


_FROZEN = ConfigDict(frozen=True, extra="forbid")


class VmlinuxSection(BaseModel):
    """One SHF_ALLOC section of vmlinux."""

    model_config = _FROZEN

    name: str
    addr: int = Field(ge=0)
    size: int = Field(ge=0)
    flags: str = Field(description="ELF flags as readelf -S prints them, e.g. 'AX', 'WA'")
    align: int = Field(ge=0)
    nobits: bool = Field(False, description="SHT_NOBITS: takes memory, no bytes in the image")


class VmlinuxSegment(BaseModel):
    """One PT_LOAD program header: where the image is linked and loaded."""

    model_config = _FROZEN

    vaddr: int = Field(ge=0)
    paddr: int = Field(ge=0)
    memsz: int = Field(ge=0)
    flags: str = Field(description="R, W, X as readelf -l prints them")
    align: int = Field(ge=0)


class VmlinuxTables(BaseModel):
    """Entry counts of the vmlinux tables that patchers walk (0: the image has none)."""

    model_config = _FROZEN

    mcount_loc: int = Field(0, ge=0, description="ftrace call sites: non-NULL __mcount_loc entries in kernel text "
                            "(ftrace_process_locs skips the NULL ones and any outside text)")
    mcount_loc_init: int = Field(0, ge=0, description="of those, in .init.text (dropped by ftrace_free_init_mem)")
    jump_entries: int = Field(0, ge=0, description="__jump_table entries (struct jump_entry)")
    jump_entries_init: int = Field(0, ge=0, description="of those, with code in .init.text")
    jump_entries_2byte: int = Field(0, ge=0, description="of those, a 2-byte site (NOP2 or JMP8); the others are 5 bytes")
    jump_keys: int = Field(0, ge=0, description="distinct static keys of __jump_table")
    jump_keys_true: int = Field(0, ge=0, description="of those, initialised true (JUMP_TYPE_TRUE)")
    static_call_sites: int = Field(0, ge=0, description=".static_call_sites entries (struct static_call_site)")
    static_call_sites_init: int = Field(0, ge=0, description="of those, in .init.text")
    static_call_keys: int = Field(0, ge=0, description="distinct static call keys of the sites")
    static_call_tramp_keys: int = Field(0, ge=0, description=".static_call_tramp_key entries")
    altinstructions: int = Field(0, ge=0)
    parainstructions: int = Field(0, ge=0)
    retpoline_sites: int = Field(0, ge=0)
    return_sites: int = Field(0, ge=0)
    call_sites: int = Field(0, ge=0)
    ibt_endbr_seal: int = Field(0, ge=0)
    cfi_sites: int = Field(0, ge=0)
    smp_locks: int = Field(0, ge=0, description="non-zero .smp_locks entries (alternatives_smp_lock skips zeros)")
    orc_unwind_ip: int = Field(0, ge=0)

    @property
    def mcount_loc_runtime(self) -> int:
        """ftrace records left after boot (the init-text ones are freed with the init memory)."""
        return self.mcount_loc - self.mcount_loc_init


class VmlinuxInfo(BaseModel):
    """What the workload keeps of one kernel image."""

    model_config = _FROZEN

    machine: Literal["x86_64", "aarch64"]
    kernel_release: str = Field(description="the release in linux_banner (init/version-timestamp.c)")
    sections: list[VmlinuxSection]
    segments: list[VmlinuxSegment] = Field(default_factory=list)
    layout: dict[str, int | None]
    tables: VmlinuxTables
    jump_keys: list[tuple[int, int, bool]] = Field(
        default_factory=list,
        description="per static key of __jump_table, in key address order: (run-time entries, init entries, "
        "initialised true)",
    )

    @field_validator("layout")
    @classmethod
    def _known_markers(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        unknown = set(value) - set(LAYOUT_MARKERS)
        if unknown:
            raise ValueError(f"unknown layout markers: {sorted(unknown)}")
        return value

    def marker(self, name: str) -> int:
        """Address of a layout marker; KeyError (naming it) when the image does not tell it."""
        value = self.layout.get(name)
        if value is None:
            raise KeyError(f"vmlinux layout has no {name}")
        return value

    @property
    def text_size(self) -> int:
        """Bytes of kernel text, _etext - _text."""
        return self.marker("_etext") - self.marker("_text")

    @property
    def image_size(self) -> int:
        """Bytes from _text to _end: what the kernel mapping has to hold."""
        return self.marker("_end") - self.marker("_text")


