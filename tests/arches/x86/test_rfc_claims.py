"""The RFC cover letter's own claims, on single allocations, with counts from the kernel rules.

"So during this load operation, 4 shootdowns may take place and the direct map will be
broken to 4k pages across whichever random pages got used in the executable region."
"In its current state it takes module load's down to usually one kernel range shootdown,
and BPF JIT load's down to usually zero on x86."
"""

from __future__ import annotations

from permalloc import Machine
from permalloc.model.pages import PAGES_PER_PMD

from .conftest import fresh_frontier, load, page_frames, policy_for, x86

RFC = policy_for(block_cache=True, text_poke=True)  # the RFC as posted: optimisations 1 and 2


def _flush_sources(events) -> list[str]:
    return [e.source for e in events if e.kind in ("flush_all", "flush_range")]


def test_switches_off_rx_load_costs_four_shootdowns_and_4k_splits_where_it_landed():
    m = x86(gbpages=True)
    fresh_frontier(m, gigabyte=True)  # pages under an intact 1 GiB leaf, as the cover letter's case
    seen = []
    m.trace = seen.append
    a = load(m, 16384)
    c = m.metrics.counters
    # set_memory_ro: 1G->2M and 2M->4K splits of the alias (one flush_tlb_all each) and its
    # cpa_flush (force_flush_all); set_memory_x: one per-page flush (4 pages <= 33)
    assert c["shootdowns"] == 4
    assert _flush_sources(seen) == ["set_memory_ro/alias/split_large_page"] * 2 + [
        "set_memory_ro/cpa_flush", "set_memory_x/cpa_flush"]
    assert c["local_flushes"] == 0 and c["sync_ipis"] == 0  # no text_poke on this path
    used = {pfn // PAGES_PER_PMD for pfn in page_frames(m, a)}
    # the direct map is broken to 4 KiB exactly in the 2 MiB ranges of the pages it used
    assert (m.directmap.split_2m - m.baseline['split_2m']) == used
    assert all(m.directmap.perm(pfn) == 1 for pfn in page_frames(m, a))  # ... and read-only there


def test_switches_off_on_an_aged_machine_every_intact_leaf_touched_splits():
    # "When a split is required it can be even more": wherever the pages landed
    m = x86(gbpages=True, memory="64G", memory_state="aged-4")
    a = m.perm.alloc(16384, "RX")
    pfns = page_frames(m, a)
    intact = {pfn // PAGES_PER_PMD for pfn in pfns if m.directmap.leaf_size(pfn) > 4096}
    # a page of the kernel image's span has a high-map alias too (cpa_process_alias changes it)
    intact_high = {(alias.name, pfn // PAGES_PER_PMD) for alias in m.aliases for pfn in pfns
                   if alias.covers(pfn) and alias.map.leaf_size(pfn) > 4096}
    m.perm.write(a, 0, 16384)
    m.perm.finish(a)
    c = m.metrics.counters
    assert (m.directmap.split_2m - m.baseline['split_2m']) == intact
    # one flush per split (1G and 2M), plus set_memory_ro's and set_memory_x's cpa_flush
    assert c["shootdowns"] == c["directmap_splits_1g"] + c["directmap_splits_2m"] + 2
    assert c["directmap_splits_2m"] == len(intact) + len(intact_high)


def test_the_rfc_list_of_four_with_a_lazy_area_pending():
    # The cover letter's own list: set_memory_ro, a vm_unmap_aliases flush, set_memory_x.
    # Since 5.x vm_unmap_aliases runs first; with 2 MiB leaves and a lazily freed area:
    m = x86(gbpages=False)
    fresh_frontier(m)
    m.vmalloc.vfree(m.vmalloc.vmalloc(4096, "vmalloc", reset_perms=False))
    seen = []
    m.trace = seen.append
    load(m, 16384)
    assert _flush_sources(seen) == [
        "set_memory_ro/vm_unmap_aliases",  # the lazy area is purged: one flush
        "set_memory_ro/alias/split_large_page",  # 2M -> 4K
        "set_memory_ro/cpa_flush",  # RO, force_flush_all
        "set_memory_x/cpa_flush",  # X (NX-only: no alias)
    ]
    assert m.metrics.counters["shootdowns"] == 4


def _module(m: Machine) -> list:
    # one module as the RFC's separate allocations: text RX, rodata R, data RW
    return [load(m, 40960, "RX"), load(m, 12288, "R"), load(m, 8192, "RW")]


def test_rfc_module_load_costs_one_range_shootdown_cold_and_none_warm():
    m = x86(RFC, gbpages=False)
    seen = []
    m.trace = seen.append
    first = _module(m)
    # cold: one refill of the block cache, i.e. the one _vm_unmap_aliases flush over the
    # 2 MiB direct-map range; the loads themselves are text_poke_copy (local flushes only)
    assert _flush_sources(seen) == ["perm_alloc/refill/_vm_unmap_aliases"]
    assert m.metrics.counters["sync_ipis"] == 0
    assert m.metrics.counters["directmap_splits_2m"] == 0  # a whole 2 MiB leaf went NP
    seen.clear()
    second = _module(m)
    assert _flush_sources(seen) == []  # warm: nothing but local flushes
    for a in first + second:
        m.perm.free(a)


def test_rfc_module_load_with_gbpages_adds_the_1g_split_of_the_first_refill():
    m = x86(RFC, gbpages=True)
    fresh_frontier(m, gigabyte=True)  # the refill's block in an intact GiB
    _module(m)
    c = m.metrics.counters
    # __set_pages_np on a 2 MiB block inside a 1 GiB leaf splits that leaf (one flush_tlb_all)
    assert (c["shootdowns"], c["directmap_splits_1g"], c["directmap_splits_2m"]) == (2, 1, 0)


def test_rfc_bpf_load_costs_nothing_once_the_cache_is_warm():
    m = x86(RFC, gbpages=True)
    m.perm.free(load(m, 512))  # warms the block cache (one refill)
    before = dict(m.metrics.counters)
    for _ in range(100):
        prog = load(m, 512)
        m.perm.free(prog)
    c = m.metrics.counters
    assert c["shootdowns"] == before["shootdowns"]  # 100 loads and frees: zero shootdowns
    assert c["sync_ipis"] == before["sync_ipis"]
    # each load: one text_poke_copy chunk, a local flush through poking_mm
    assert c["local_flushes"] - before["local_flushes"] == 100
    assert m.vmalloc.pending_lazy > 0  # the lazily unmapped aliases are flushed later, in bulk
    assert m.teardown() == []


def test_bpf_load_without_the_rfc_costs_shootdowns_every_time():
    m = x86(gbpages=True)
    m.perm.free(load(m, 512))
    before = m.metrics.counters["shootdowns"]
    m.perm.free(load(m, 512))
    # set_memory_ro (cpa_flush: the alias was split already), set_memory_x, vm_reset_perms
    assert m.metrics.counters["shootdowns"] - before == 3


# examples/rfc-switches: the 16 KiB RX alloc+write+finish+free of examples/rx-16k.json on the
# CLI's default machine (8 CPUs, 16 GiB q35, 1 GiB pages, seed 0), freshly booted. Without (1)
# or (4) its pages are order-0 pages from the free tail of the pageblock after the kernel image
# (the unused brk: deferred init left the block UNMOVABLE, its first page is the image's), which
# the high kernel map still maps up to the next 2 MiB (cleanup_highmap keeps the PMD holding
# _brk_end). So the first permission change splits two leaves, the direct map's and the high
# map's (set_memory_ro's cpa_process_alias; (2)'s unmap likewise), a flush each. Switches off:
# those 2, set_memory_ro 1 (cpa_flush), set_memory_x 1, vfree 1. (1): the refill's one flush
# over a 2 MiB block's direct map, set_memory_ro and set_memory_x one each, the free none (back
# to the cache). (2): the aliases go NP at alloc (one flush), text_poke loads are local, vfree
# 1. (3) keeps the freed range live (two local text_poke_set chunks) instead of flushing. (4): a
# new 2 MiB region costs its one flush, and none with (1) or (3).
RX16K_TABLE = {  # bits (1)(2)(3)(4): (shootdowns, local_flushes, splits_1g, splits_2m)
    "0000": (5, 0, 0, 2), "0001": (2, 4, 0, 0), "0010": (4, 2, 0, 2), "0011": (1, 4, 0, 0),
    "0100": (4, 2, 0, 2), "0101": (2, 4, 0, 0), "0110": (3, 4, 0, 2), "0111": (1, 4, 0, 0),
    "1000": (3, 0, 0, 0), "1001": (1, 4, 0, 0), "1010": (3, 2, 0, 0), "1011": (1, 4, 0, 0),
    "1100": (1, 2, 0, 0), "1101": (1, 4, 0, 0), "1110": (1, 4, 0, 0), "1111": (1, 4, 0, 0),
}


def test_rx16k_table_for_every_combination_of_switches():
    from pathlib import Path

    from permalloc import MachineSpec
    from permalloc.run.scenario import load_scenario_file
    from permalloc.run.simulation import run

    from .conftest import ALL_POLICIES

    scenario = load_scenario_file(Path(__file__).parents[3] / "examples" / "rx-16k.json")
    spec = MachineSpec(arch="x86", cpus=8, memory="16G", seed=0)
    for policy in ALL_POLICIES:
        result = run(scenario, spec, policy, strict=True)
        t = result.totals
        got = (t["shootdowns"], t["local_flushes"], t["directmap_splits_1g"], t["directmap_splits_2m"])
        assert got == RX16K_TABLE[policy.name.split("-")[1]], policy.name
        assert result.problems == [] and t["wx_violations"] == 0
