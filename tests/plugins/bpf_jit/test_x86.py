"""BPF JIT costs on the x86 arch. Skipped only while the x86 backend is not registered."""

from __future__ import annotations

import pytest

from permalloc import MachineSpec
from permalloc.plugin.pluginmanager import arch_plugins, registry_manager
from permalloc.plugins.bpf_jit.ops import load_program
from permalloc.testing import fresh_frontier

# TODO(lead): remove this skip once arches/x86 has landed.
pytestmark = pytest.mark.skipif(
    "x86" not in arch_plugins(registry_manager(), MachineSpec()), reason="x86 arch not registered yet"
)


def test_pack_loads_cost_no_all_cpu_flush_once_a_pack_exists(make, delta):
    m = make("pack", arch="x86", cpus=8)
    load_program(m, "first", 64)  # creates the pack: set_memory_ro + set_memory_x, flushes
    for i in range(100):
        with delta(m) as d:
            load_program(m, f"p{i}", 64 + i)
        # bpf_arch_text_copy = text_poke_copy: poking_mm, local flush only (alternative.c)
        assert d["shootdowns"] == 0 and d["sync_ipis"] == 0 and d["ipis"] == 0
        assert d["local_flushes"] >= 1


def test_per_program_splits_1g_then_2m(make, delta):
    m = make("per-program", arch="x86", cpus=8, gbpages=True, memory=16 << 30)
    fresh_frontier(m, 1, gigabyte=True)
    with delta(m) as d:
        load_program(m, "p0", 64)
    # set_memory_ro on a module address changes the direct-map alias: the 1 GiB leaf is split
    # to 2 MiB, then the 2 MiB leaf to 4 KiB (__split_large_page, flush_tlb_all each)
    assert d["directmap_splits_1g"] == 1 and d["directmap_splits_2m"] == 1
    # two split flushes + cpa_flush (forced full) for set_memory_ro + a range flush for
    # set_memory_x (NX only, 1 page)
    assert d["shootdowns"] == 4
