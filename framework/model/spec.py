"""The machine spec: a frozen pydantic model that fully determines a simulated machine."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(value: Any) -> int:
    """Parse ``16G``, ``512MiB``, ``4T`` or a plain byte count into bytes (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16G or a byte count")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"invalid size {value!r}: use a byte count or a number with K/M/G/T (e.g. 16G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


Size = Annotated[int, BeforeValidator(parse_size)]


class CostModel(BaseModel):
    """Time estimates per primitive operation, in nanoseconds.

    The counts (shootdowns, splits, pokes) are the primary output; ``cost_ns`` is folded
    from them with these constants, so every one is overridable in the spec. The defaults
    are order-of-magnitude figures from published measurements, not fits.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Amit, "Optimizing the TLB Shootdown Algorithm with Page Access Tracking", USENIX ATC
    # 2017, section 1: a TLB shootdown "can take microseconds", and its cost grows with the
    # number of target CPUs (the initiator waits for every acknowledgement).
    shootdown_ns: float = Field(2000.0, ge=0, description="initiator cost of one all-CPU flush round")
    shootdown_per_cpu_ns: float = Field(150.0, ge=0, description="added per target CPU of a round")
    # Same paper, section 2: an INVLPG costs on the order of a hundred cycles; a full local
    # flush more, because every entry must be refilled afterwards.
    # A hardware-broadcast invalidation (arm64 TLBI ...IS + DSB; AMD INVLPGB + TLBSYNC) waits for
    # the other CPUs' acknowledgement in hardware, with no interrupt: estimated at the order of
    # a remote cache-line round trip, a few hundred ns.
    broadcast_flush_ns: float = Field(500.0, ge=0, description="one hardware-broadcast TLB invalidation")
    local_flush_page_ns: float = Field(100.0, ge=0)
    local_flush_all_ns: float = Field(500.0, ge=0)
    # arch/x86/mm/pat/set_memory.c: split_large_page allocates a page-table page and writes
    # 512 entries; estimated at a few hundred ns per cache line of entries.
    split_ns: float = Field(1500.0, ge=0)
    pte_update_ns: float = Field(5.0, ge=0, description="per page-table entry written")
    page_alloc_ns: float = Field(150.0, ge=0, description="per order-0 page from the buddy allocator")
    # arch/x86/kernel/alternative.c: __text_poke switches to poking_mm and back (two CR3
    # writes plus a local INVLPG): about a microsecond.
    text_poke_ns: float = Field(1000.0, ge=0)
    poke_byte_ns: float = Field(0.25, ge=0)


class MachineSpec(BaseModel):
    """Everything that defines one simulated machine. Frozen: two equal specs give equal runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: str = Field("generic", description="arch backend, by the name its plugin gives")
    cpus: int = Field(8, ge=1, le=1 << 16, description="online CPUs")
    memory: Size = Field(16 << 30, ge=256 << 20, le=1 << 52, description="RAM in bytes (accepts 16G)")
    numa_nodes: int = Field(1, ge=1, le=1024, description="NUMA nodes (bpf_prog_pack keeps one pack per node)")
    platform: str | None = Field(
        None, description="firmware platform of the arch (x86: q35, server-2s); default: the arch's own default"
    )
    initrd: Size = Field(0, ge=0, description="size of the initramfs the machine booted with (unpacked to the page cache, then freed)")
    memory_state: str = Field(
        "fresh",
        pattern=r"^(fresh|pagecache-(100|[1-9]?[0-9])|aged-[1-9][0-9]{0,2})$",
        description="what the machine did before the scenario: fresh (just booted), pagecache-N (page cache "
        "filled to N % of free memory), aged-H (H hours of mixed page-cache, process and kernel-allocation churn)",
    )
    gbpages: bool = Field(True, description="the CPU has 1 GiB pages (X86_FEATURE_GBPAGES) for the direct map")
    cpu_features: frozenset[str] = Field(
        frozenset(), description="CPU features the arch acts on, by /proc/cpuinfo flag name (x86: la57, invlpgb)"
    )
    seed: int = Field(0, ge=0, description="seeds every random choice of the run")
    cost: CostModel = Field(default_factory=CostModel)
