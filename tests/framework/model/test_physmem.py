"""Zones, watermarks and per-CPU lists around the buddy allocator, on machines that boot."""

from __future__ import annotations

import os

import pytest

from permalloc import Machine, MachineSpec, OutOfMemory
from permalloc.model.buddy import MOVABLE, UNMOVABLE, Zone
from permalloc.model.pcp import PerCpuPages, order_to_pindex, zone_batchsize, zone_highsize
from permalloc.model.physmem import PhysMem, min_free_kbytes

ARCH = os.environ.get("PERMALLOC_ARCH", "generic")


def machine(memory: str = "2G", cpus: int = 2, **spec) -> Machine:
    return Machine(MachineSpec(arch=ARCH, cpus=cpus, memory=memory, **spec))


def test_pcp_sizes_follow_zone_batchsize_and_the_low_watermark():
    assert zone_batchsize(500_000) == 63  # min(488, 256) / 4 = 64 -> rounddown_pow_of_two(96) - 1
    assert zone_batchsize(3900) == 0  # a tiny zone: 0, which zone_set_pageset_high_and_batch makes 1
    assert zone_highsize(13_966, 63, 2) == 6983
    assert zone_highsize(100, 63, 8) == 252  # at least four batches
    assert min_free_kbytes(2_000_000) == 5656


def test_khugepaged_raises_min_free_kbytes_per_zone():
    m = machine()
    zones = {(z.node, z.name) for z in m.phys.zones}
    # set_recommended_min_free_kbytes: 512 * zones * (2 + 3 * 3) pages, in KiB
    assert m.phys.min_free_kbytes == 512 * len(zones) * 11 * 4
    top = max(m.phys.zones, key=lambda z: z.managed)
    assert top.watermark["min"] < top.watermark["low"] < top.watermark["high"]


def test_refills_come_in_batches_and_frees_are_reused_first():
    m = machine(cpus=4)  # CPUs 2 and 3 did nothing at boot: their lists are empty
    zone = m.phys.zonelist(0, 99)[0]
    pcp = m.phys.pcp(2, zone)
    first = m.phys.alloc(0, UNMOVABLE, cpu=2)
    assert pcp.count == pcp.batch - 1  # rmqueue_bulk took a batch, one was handed out
    pages = pcp.lists[order_to_pindex(UNMOVABLE, 0)]
    head = pages[0]
    second = m.phys.alloc(0, UNMOVABLE, cpu=2)
    assert second == head and pcp.count == pcp.batch - 2  # the next page of the batch, no refill
    m.phys.free(second, cpu=2)
    assert m.phys.alloc(0, UNMOVABLE, cpu=2) == second  # list head: the freed page comes back first
    other = m.phys.alloc(0, UNMOVABLE, cpu=3)
    assert other not in (first, second) and m.phys.pcp(3, zone).count == pcp.batch - 1  # CPU 3 has its own list


def test_free_pcppages_bulk_gives_pages_back_above_high():
    zone = Zone("DMA32", 1, 0, 0, 1 << 14, 11, 9)
    zone.add_boot_run(0, 16)
    pcp = PerCpuPages(batch=7, high=28)
    pfns = [zone.rmqueue(0, UNMOVABLE) for _ in range(40)]
    for pfn in pfns[:27]:
        pcp.free(zone, pfn, 0, UNMOVABLE)
    assert pcp.count == 27
    pcp.free(zone, pfns[27], 0, UNMOVABLE)  # reaches high: nr_pcp_free(batch << free_factor)
    assert pcp.count == 28 - 7 and pcp.free_factor == 1
    assert len(pcp.lists[order_to_pindex(UNMOVABLE, 0)]) == pcp.count


def test_vmalloc_sized_bulk_allocations_are_order0_from_one_cpu():
    m = machine()
    pfns = m.phys.alloc_bulk(512, UNMOVABLE, cpu=0)
    assert len(set(pfns)) == 512
    assert len({pfn >> 9 for pfn in pfns}) <= 2  # a fresh machine hands out neighbouring pages


def test_big_machines_prefer_normal_and_do_not_fragment_it():
    m = machine("16G", cpus=8)
    normal = next(z for z in m.phys.zones if z.name == "Normal")
    pfn = m.phys.alloc(0, UNMOVABLE, cpu=3)
    assert normal.start_pfn <= pfn < normal.end_pfn
    assert normal.pageblock_mt(pfn) == UNMOVABLE  # ALLOC_NOFRAGMENT: a whole pageblock was stolen


def test_exhausting_memory_reclaims_page_cache_then_fails():
    m = machine("1G")
    before = m.phys.free_pages()
    m.page_cache.fill(before // 2, cpu=0)
    got = m.phys.alloc_bulk(before // 2 + 4096, UNMOVABLE, cpu=0)  # needs part of the cache back
    assert len(got) == before // 2 + 4096 and m.page_cache.pages < before // 2
    with pytest.raises(OutOfMemory, match="no free order-0 block"):
        while True:
            m.phys.alloc(0, UNMOVABLE, cpu=0)


def test_page_cache_fill_takes_whole_untouched_blocks():
    m = machine("16G")
    free = m.phys.free_pages()
    m.page_cache.fill(free // 2, cpu=0)
    assert m.page_cache.pages == free // 2
    assert m.phys.free_pages() == free - free // 2
    m.page_cache.drop()
    assert m.phys.free_pages() == free and m.page_cache.pages == 0


def test_state_does_not_grow_with_ram_or_cpus():
    small, big = machine("16G", cpus=8), machine("4T", cpus=512)
    for m in (small, big):
        m.phys.alloc_bulk(2000, UNMOVABLE, cpu=5)
        m.page_cache.fill(m.phys.free_pages() // 2, cpu=5)

    def size(m: Machine) -> int:
        z = [len(zone._free) + sum(len(fl.segments) for area in zone.free_area for fl in area) for zone in m.phys.zones]
        return sum(z) + len(m.phys._pcp) + len(m.phys._allocated)

    # the large system hashes boot vmalloc'd (futex at 512 CPUs, Mount-cache at 4 TiB) are held
    # page by page, as the kernel holds them
    held = sum(size // m.phys.page_size for m in (big,) for _n, size, how in m.system_hashes if how == "vmalloc")
    assert size(big) < 2 * size(small) + 200 + held


def test_physmem_is_made_of_the_zones_it_was_given():
    zones = [Zone("DMA32", 1, 0, 0, 1 << 12, 11, 9)]
    zones[0].add_boot_run(0, 4)
    zones[0].uid = 0
    phys = PhysMem([zones], cpus=1)
    phys.setup_watermarks()
    assert phys.free_pages() == 1 << 12
    assert phys.zone_of(5) is zones[0]
    with pytest.raises(ValueError, match="in no zone"):
        phys.zone_of(1 << 20)
    assert zones[0].free_by_type()["movable"] == 1 << 12 and zones[0].free_by_type()["unmovable"] == 0
    assert MOVABLE == zones[0].pageblock_mt(0)
