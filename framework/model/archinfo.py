"""The arch description: a data table per arch, as mm/execmem.c keeps (6.12)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

_MASK64 = (1 << 64) - 1


def _signed64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


class VRange(BaseModel):
    """A kernel virtual address range [start, end)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> VRange:
        if self.end <= self.start:
            raise ValueError(f"range {self.name}: end must be above start")
        return self

    @property
    def size(self) -> int:
        return self.end - self.start

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.start <= addr < self.end


class ArchInfo(BaseModel):
    """What the core needs to know about an arch; returned by ``permalloc_arch_describe``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    machine: str | None = Field(
        None, description="ELF machine of the kernels it models, as uname -m prints it (x86_64, aarch64); "
        "None: any (workloads of every machine run on it)"
    )
    page_offset: int = Field(description="virtual base of the direct map (PAGE_OFFSET)")
    ranges: dict[str, VRange] = Field(
        description="named kernel ranges; 'module', 'vmalloc' and 'kernel_image' are expected"
    )
    module_load_offset_max_pages: int = Field(
        0, ge=0, description="KASLR: the module area starts 1..N pages in (0: no randomisation)"
    )
    bpf_range: str = Field(
        "module", description="the range bpf_jit_alloc_exec takes JIT images from (module_alloc, or vmalloc)"
    )
    direct_map_gbpages: bool = Field(False, description="the direct map may use 1 GiB leaves")
    huge_vmap: bool = Field(False, description="vmalloc space may be mapped with 2 MiB leaves")
    text_poke: bool = Field(False, description="has a temporary-mm text_poke (local flush only)")
    reloc_reach: dict[str, int | None] = Field(
        default_factory=dict,
        description="relocation type -> largest positive distance in bytes it can encode, two's "
        "complement (2**31 - 1 for a signed 32-bit field; None: any)",
    )
    reloc_absolute32: frozenset[str] = Field(
        default_factory=frozenset,
        description="relocation types that hold a sign-extended 32-bit absolute address",
    )
    reloc_absolute32_unsigned: frozenset[str] = Field(
        default_factory=frozenset,
        description="relocation types that hold a zero-extended 32-bit absolute address",
    )
    reloc_plt: frozenset[str] = Field(
        default_factory=frozenset,
        description="branch relocation types that the module loader re-points at a PLT entry when their "
        "target is out of reach (arm64 CALL26/JUMP26, module_emit_plt_entry)",
    )
    page_table_levels: int = Field(4, ge=2, le=5, description="levels of the kernel's page tables (x86 with LA57: 5)")
    features: frozenset[str] = Field(default_factory=frozenset)
    cpu_features: frozenset[str] = Field(
        default_factory=frozenset,
        description="the CPU features (/proc/cpuinfo flag names) the arch acts on; a spec that names "
        "another is refused",
    )

    def reloc_in_reach(self, rtype: str, place: int, target: int) -> bool:
        """Whether relocation ``rtype`` at address ``place`` can encode ``target``.

        PC-relative types use the 64-bit wrap-around difference (which is how code in the top
        2 GiB reaches zero-based per-CPU data); absolute 32-bit types check the value itself.
        Types the arch does not list are not constrained.
        """
        if rtype in self.reloc_absolute32:
            return -(1 << 31) <= _signed64(target) < (1 << 31)
        if rtype in self.reloc_absolute32_unsigned:
            return 0 <= target & _MASK64 < (1 << 32)
        reach = self.reloc_reach.get(rtype)
        return reach is None or -(reach + 1) <= _signed64(target - place) <= reach

    @model_validator(mode="after")
    def _needs_ranges(self) -> ArchInfo:
        missing = {"module", "vmalloc"} - set(self.ranges)
        if missing:
            raise ValueError(f"arch {self.name}: missing ranges {sorted(missing)}")
        return self
