from __future__ import annotations

from permalloc import Machine, MachineSpec, Perm
from permalloc.mechanisms.vmalloc import lazy_max_pages
from permalloc.model.pages import PAGE_SIZE


def _machine(cpus: int = 4) -> Machine:
    return Machine(MachineSpec(arch="generic", cpus=cpus, memory=1 << 30))


def test_lazy_max_pages_formula():
    # mm/vmalloc.c: lazy_max_pages = fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)
    assert lazy_max_pages(1) == 8192
    assert lazy_max_pages(8) == 4 * 8192
    assert lazy_max_pages(512) == 10 * 8192


def test_vfree_without_reset_perms_is_lazy_and_keeps_the_address_reserved():
    m = _machine()
    area = m.vmalloc.vmalloc(3 * PAGE_SIZE, "vmalloc", reset_perms=False)
    assert area.va_size == 4 * PAGE_SIZE  # guard page
    m.vmalloc.vfree(area)
    assert m.metrics.counters["shootdowns"] == 0
    assert m.vmalloc.lazy_nr == 4
    assert len(m.tlb) == 3  # its RW translations may still be cached
    again = m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", reset_perms=False)
    assert again.addr != area.addr  # not reusable before the purge
    m.vmalloc.vfree(again)


def test_purge_flushes_the_union_once():
    m = _machine()
    for _ in range(3):
        m.vmalloc.vfree(m.vmalloc.vmalloc(PAGE_SIZE, "vmalloc", reset_perms=False))
    assert m.vmalloc.purge()
    # 3 areas of 2 pages each: the hull is 6 pages <= 33, so one range flush
    assert m.metrics.counters["shootdowns"] == 1 and len(m.tlb) == 0
    assert not m.vmalloc.purge()  # nothing pending: no flush
    assert m.metrics.counters["shootdowns"] == 1


def test_lazy_threshold_triggers_the_purge():
    m = _machine(cpus=1)  # lazy_max_pages(1) = 8192 pages
    size = 511 * PAGE_SIZE  # 512 pages with the guard; its page array still fits a page (kmalloc)
    for _ in range(16):
        m.vmalloc.vfree(m.vmalloc.vmalloc(size, "vmalloc", reset_perms=False))
    assert m.metrics.counters["shootdowns"] == 0 and m.vmalloc.lazy_nr == 8192
    m.vmalloc.vfree(m.vmalloc.vmalloc(size, "vmalloc", reset_perms=False))
    assert m.metrics.counters["shootdowns"] == 1 and m.vmalloc.lazy_nr == 0


def test_big_areas_vmalloc_their_page_array_first():
    m = _machine()
    area = m.vmalloc.vmalloc(1024 * PAGE_SIZE, "vmalloc", reset_perms=False)
    assert area.page_array is not None and area.page_array.size == 2 * PAGE_SIZE  # 1024 pointers
    m.vmalloc.vfree(area)
    assert m.vmalloc.lazy_nr == 1025 + 3  # the area, then its page array


def test_reset_perms_free_restores_the_direct_map():
    m = _machine()
    baseline = m.directmap.nondefault_pages()  # the boot's own (the kernel's BPF program)
    area = m.vmalloc.vmalloc(2 * PAGE_SIZE, "vmalloc", reset_perms=True)
    m.cpa.change(area.addr, 2, Perm.NONE, Perm.W, "set_memory_ro")
    assert m.directmap.perm(area.pages[0]) == Perm.R
    m.vmalloc.vfree(area)
    assert m.directmap.nondefault_pages() == baseline
    assert m.teardown() == []
