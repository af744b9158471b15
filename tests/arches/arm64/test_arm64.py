"""The arm64 arch: layout per kernel version, change_memory_common, broadcast TLBI, JIT sizes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from permalloc import Machine, MachineSpec, Perm
from permalloc.arches.arm64 import POLICIES, bpfjit, layout
from permalloc.arches.arm64.image import image_size
from permalloc.errors import ContractError
from permalloc.testing import ContractSuite

ARM64_61, ARM64_612 = POLICIES


class TestArm64Contract(ContractSuite):
    arch = "arm64"
    policies = list(POLICIES)


@given(st.integers(0, 2**32))
def test_kaslr_places_the_kernel_and_the_module_window_as_the_kernel_does(seed):
    spec = MachineSpec(arch="arm64", seed=seed)
    for policy, vsize in ((ARM64_61, 128 << 20), (ARM64_612, 2 << 30)):
        info = layout.describe(spec, policy)
        text, end = info.ranges["kernel_image"].start, info.ranges["kernel_image"].end
        kimage = layout.MODULES_VADDR + vsize
        assert text % (2 << 20) == 0 and end - text == image_size(policy.kernel)
        mod = info.ranges["module"]
        if policy is ARM64_61:  # kaslr_early_init 6.1: [32 TiB, 96 TiB) above KIMAGE_VADDR
            assert kimage + (32 << 40) <= text < kimage + (96 << 40)
            assert end - (2 << 30) <= mod.start < text and mod.end <= min(mod.start + (128 << 20), text)
        else:  # 6.12: the middle half of [KIMAGE_VADDR, VMALLOC_END); a 2 GiB box around the kernel
            span = (layout.vmalloc_end("6.12") - kimage) // 2
            assert kimage + span // 2 <= text <= kimage + span // 2 + span
            assert mod.start <= text and end <= mod.end == mod.start + (2 << 30)
        assert info == layout.describe(spec, policy)  # the same seed, the same layout


def test_the_address_map_follows_memory_h():
    assert layout.PAGE_OFFSET == 0xFFFF000000000000 and layout.MODULES_VADDR == 0xFFFF800000000000
    assert layout.vmalloc_end("6.1") == 0xFFFFFBFFF0000000
    assert layout.vmalloc_end("6.12") == 0xFFFFFDFFBF800000


def _machine(policy=ARM64_61, cpus: int = 8) -> Machine:
    return Machine(MachineSpec(arch="arm64", cpus=cpus, memory="2G"), policy, strict=True)


def test_set_memory_ro_changes_every_linear_alias_page_with_broadcast_flushes_and_no_split():
    m = _machine()
    a = m.perm.alloc(4 * 4096, Perm.RX)
    m.perm.write(a, 0, 4 * 4096)
    before = dict(m.metrics.counters)
    m.perm.set_memory("set_memory_ro", a.addr, 2)  # two of the area's four pages
    c = m.metrics.counters
    # one flush per page of the whole area's linear alias, then the range flush
    assert c["shootdowns"] - before["shootdowns"] == 4 + 1
    assert c["ipis"] == c["flush_ipis"] == 0 and c["directmap_splits_2m"] == c["directmap_splits_1g"] == 0
    mapping, _ = m.pagetables.lookup(a.addr)
    assert all(not m.directmap.perm(pfn) & Perm.W for pfn in mapping.pfns)
    before = dict(m.metrics.counters)
    m.perm.set_memory("set_memory_x", a.addr, 2)  # PXN only: the alias is left alone
    assert m.metrics.counters["shootdowns"] - before["shootdowns"] == 1


def test_set_memory_outside_one_vmalloc_area_is_einval():
    m = _machine()
    a = m.perm.alloc(4096, Perm.RX)
    with pytest.raises(ContractError, match="not inside one vmalloc area"):
        m.perm.set_memory("set_memory_ro", a.addr, 2)


def test_set_memory_rox_is_ro_then_x():
    m = _machine(ARM64_612)
    a = m.perm.alloc(8192, Perm.RX)
    m.perm.write(a, 0, 8192)
    m.perm.set_memory("set_memory_rox", a.addr, 2)
    mapping, index = m.pagetables.lookup(a.addr)
    assert mapping.perms[index] == Perm.RX and m.metrics.counters["wx_violations"] == 0
    assert m.metrics.counters["shootdowns"] == 2 + 1 + 1  # two alias pages, the ro range, the x range


def test_flushes_above_max_tlbi_ops_are_flush_tlb_all():
    m = _machine()
    before = m.metrics.counters["shootdowns"]
    m.flush_kernel_range(0, 513 * 4096)
    assert m.metrics.counters["shootdowns"] == before + 1 and m.metrics.counters["ipis"] == 0


def test_a_tiny_ebpf_image_is_sized_as_the_6_1_jit_lays_it_out():
    # one instruction of the mix rounds up to 2 A64 instructions (140 per 100): prologue 13 +
    # body 2 + epilogue 9 = 24, +1 NOP so that the PLT target is 8-aligned (24 + 2 is even...)
    idx = 13 + 2 + 9
    idx += (idx + 2) % 2
    assert bpfjit.image_bytes("ebpf", 1, "6.1") == 4 * (idx + 2) + 8
    assert bpfjit.image_bytes("ebpf", 1, "6.12") == 4 * (10 + 2 + 7 + 1 + 2) + 8  # 19 + a NOP
    assert bpfjit.A64_PER_100 == 140


def test_bpf_churn_on_arm64_sends_no_ipis_and_splits_nothing():
    from permalloc.plugin.pluginmanager import registry_manager
    from permalloc.run.registry import resolve_scenario
    from permalloc.run.simulation import run

    scenario = resolve_scenario(registry_manager(), "bpf-churn")
    for policy in POLICIES:
        t = run(scenario, MachineSpec(arch="arm64", cpus=8, memory="4G"), policy, strict=True).totals
        assert t["shootdowns"] > 0 and t["ipis"] == 0 and t["directmap_splits_2m"] == 0 and t["wx_violations"] == 0
