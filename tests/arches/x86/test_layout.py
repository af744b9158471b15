"""The x86-64 arch description: ranges, KASLR module offset, direct-map leaves, reach table."""

from __future__ import annotations

import pytest

from permalloc import MachineSpec
from permalloc.arches.x86 import layout

from .conftest import fresh_frontier, x86

GiB, MiB = 1 << 30, 1 << 20


def test_four_level_layout():
    info = layout.describe(MachineSpec(arch="x86"))
    assert info.name == "x86"
    assert info.page_offset == 0xFFFF888000000000
    assert info.ranges["kernel_image"].start == 0xFFFFFFFF81000000
    assert (info.ranges["module"].start, info.ranges["module"].end) == (0xFFFFFFFFC0000000, 0xFFFFFFFFFF000000)
    assert info.ranges["module"].size == 1008 * MiB  # MODULES_LEN with KASLR
    assert (info.ranges["vmalloc"].start, info.ranges["vmalloc"].size) == (0xFFFFC90000000000, 32 << 40)
    assert info.ranges["percpu"].start == 0  # zero-based per-CPU area
    assert info.module_load_offset_max_pages == 1024
    assert info.huge_vmap and info.text_poke and info.direct_map_gbpages
    assert {"unmapped-block-cache", "live-cache", "percpu_zero_based"} <= info.features
    assert "rox-cache" in info.features  # execmem_arch_setup: EXECMEM_ROX_CACHE on X86_64 + PSE


def test_module_area_starts_one_to_1024_pages_in():
    offsets = set()
    for seed in range(8):
        m = x86(seed=seed)
        offset = m.spaces["module"].base - layout.MODULES_VADDR
        assert 4096 <= offset <= 1024 * 4096 and offset % 4096 == 0
        offsets.add(offset)
        a = m.perm.alloc(4096, "RX")
        assert a.addr >= m.spaces["module"].base  # allocations honour the offset
        m.perm.free(a)
    assert len(offsets) > 1  # randomised per boot (seed)


@pytest.mark.parametrize("gbpages", [True, False])
def test_direct_map_uses_1g_leaves_only_with_gbpages(gbpages: bool):
    m = x86(memory="16G", gbpages=gbpages)
    assert bool(m.gauges()["directmap_1g_bytes"]) == gbpages
    fresh_frontier(m, 1, gigabyte=gbpages)
    a = m.perm.alloc(4096, "RX")
    m.perm.write(a, 0, 4096)
    m.perm.finish(a)
    c = m.metrics.counters
    # set_memory_ro's alias: 1G -> 2M -> 4K with gbpages (two splits), 2M -> 4K without
    assert (c["directmap_splits_1g"], c["directmap_splits_2m"]) == ((1, 1) if gbpages else (0, 1))


def test_reach_table_in_arch_info():
    info = layout.describe(MachineSpec(arch="x86"))
    assert info.reloc_reach["R_X86_64_PC32"] == info.reloc_reach["R_X86_64_PLT32"] == 2**31 - 1
    assert info.reloc_reach["R_X86_64_64"] is None and info.reloc_reach["R_X86_64_PC64"] is None
    assert info.reloc_absolute32 == {"R_X86_64_32S"}


MOD = 0xFFFFFFFFC0100000
IMAGE = 0xFFFFFFFF81200000
VMALLOC = 0xFFFFC90000100000


@pytest.mark.parametrize(
    "rtype, place, target, ok",
    [
        ("R_X86_64_PC32", MOD, IMAGE, True),  # module -> kernel image: < 1 GiB apart
        ("R_X86_64_PLT32", MOD, IMAGE, True),
        ("R_X86_64_PC32", MOD, VMALLOC, False),  # module -> vmalloc space: terabytes apart
        ("R_X86_64_PC32", VMALLOC, VMALLOC + 2**31 - 1, True),  # the largest positive displacement
        ("R_X86_64_PC32", VMALLOC, VMALLOC + 2**31, False),  # one byte beyond
        ("R_X86_64_PC32", VMALLOC + 2**31, VMALLOC, True),  # the most negative displacement
        ("R_X86_64_PC32", MOD, 0x1F000, True),  # zero-based per-CPU symbol from the top 2 GiB
        ("R_X86_64_PC32", IMAGE, 0x1F000, True),
        ("R_X86_64_PC32", VMALLOC, 0x1F000, False),  # ... but not from vmalloc space
        ("R_X86_64_32S", MOD, IMAGE, True),  # sign-extended 32-bit: the top 2 GiB
        ("R_X86_64_32S", MOD, 0xFFFFFFFF7FFFFFFF, False),  # just below -2 GiB
        ("R_X86_64_32S", VMALLOC, VMALLOC, False),
        ("R_X86_64_32S", MOD, 0x1F000, True),  # per-CPU offsets are small positive numbers
        ("R_X86_64_32", MOD, IMAGE, False),  # zero-extended: never a kernel address
        ("R_X86_64_64", VMALLOC, 0x1F000, True),  # 64-bit: anywhere
        ("R_X86_64_PC64", MOD, VMALLOC, True),
    ],
)
def test_relocation_reach(rtype: str, place: int, target: int, ok: bool):
    assert layout.describe(MachineSpec(arch="x86")).reloc_in_reach(rtype, place, target) is ok


def test_types_outside_the_table_are_not_constrained():
    assert layout.describe(MachineSpec(arch="x86")).reloc_in_reach("R_X86_64_NONE", MOD, 0xFFFFC90000000000)


def test_flushes_are_ipi_rounds_unless_the_cpu_has_invlpgb():
    from permalloc import Machine
    from permalloc.mechanisms.tlbflush import BroadcastFlush, IpiFlush

    plain = Machine(MachineSpec(arch="x86")).mechanisms.tlb
    amd = Machine(MachineSpec(arch="x86", cpu_features=frozenset({"invlpgb"}))).mechanisms.tlb
    assert type(plain) is IpiFlush and type(amd) is BroadcastFlush
    assert plain.ceiling == amd.ceiling == 33  # tlb_single_page_flush_ceiling, both paths


def test_with_invlpgb_kernel_flushes_send_no_ipis_but_cpa_flush_still_does():
    """flush_tlb_all / flush_tlb_kernel_range broadcast (v6.15); cpa_flush of a few pages is
    on_each_cpu(__cpa_flush_tlb) whatever the CPU."""
    from permalloc import Machine, Perm

    def run(features: frozenset[str]) -> dict:
        m = Machine(MachineSpec(arch="x86", cpus=8, memory="2G", cpu_features=features))
        a = m.perm.alloc(16384, Perm.RX)
        m.perm.write(a, 0, 16384)
        m.perm.finish(a)
        m.perm.free(a)
        m.vmalloc.purge()
        return m.metrics.counters

    plain, amd = run(frozenset()), run(frozenset({"invlpgb"}))
    assert plain["shootdowns"] == amd["shootdowns"] > 0
    assert plain["flush_ipis"] == plain["shootdowns"] * 7  # every round interrupts the 7 other CPUs
    assert 0 < amd["flush_ipis"] < plain["flush_ipis"]  # only cpa_flush's small ranges


def test_a_cpu_feature_the_arch_does_not_act_on_is_refused():
    from permalloc import Machine, SpecError

    with pytest.raises(SpecError, match="arch x86 does not act on invlpg .it knows: invlpgb, la57"):
        Machine(MachineSpec(arch="x86", cpu_features=frozenset({"invlpg"})))
