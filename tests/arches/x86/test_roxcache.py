"""The execmem ROX cache (roxcache.py): upstream mm/execmem.c on x86, through the contract."""

from __future__ import annotations

import pytest

from permalloc import InvariantViolation, Machine, Perm
from permalloc.arches.x86 import _state
from permalloc.model.pages import PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE
from permalloc.testing import invariants_report

from .conftest import ROX_CACHE, ROX_CACHE_RESET_PERMS, x86


def _machine(policy=ROX_CACHE, strict=True, spy=None, **spec) -> Machine:
    m = x86(policy, strict=strict, gbpages=False, **spec)
    if spy is not None:
        m.pm.register(spy, name=spy.name)
    return m


def _cache(m: Machine):
    return _state(m).rox


def _live(m: Machine, size: int):
    a = m.perm.alloc(size, "RX")
    m.perm.write(a, 0, size)
    m.perm.finish(a)
    return a


def _perm(m: Machine, addr: int) -> Perm:
    mapping, index = m.pagetables.lookup(addr)
    return mapping.perm(index)


def _pfn(m: Machine, addr: int) -> int:
    mapping, index = m.pagetables.lookup(addr)
    return mapping.pfns[index]


def test_populate_is_one_2m_rox_region_filled_with_int3(set_memory_spy):
    spy = set_memory_spy
    m = _machine(spy=spy)
    seen: list = []
    m.trace = seen.append
    a = m.perm.alloc(20000, "RX")
    cache = _cache(m)
    [region] = cache.regions.values()
    # execmem_cache_populate_alloc: vmalloc(round_up(size, PMD_SIZE), VM_ALLOW_HUGE_VMAP)
    assert region.size == PMD_SIZE and region.addr % PMD_SIZE == 0 and len(region.blocks) == 1
    assert region.addr in m.range("module") and cache.stats.populates == 1
    # filled with int3 through the writable mapping, then set_memory_rox on all of it
    fill = [e for e in seen if e.kind == "store"]
    assert [(e.source, e.addr, e.n) for e in fill] == [("execmem_fill_trapping_insns", region.addr, PMD_SIZE)]
    assert seen.index(fill[0]) < next(i for i, e in enumerate(seen) if e.source.startswith("set_memory_rox"))
    # the request is carved from the region's start and made RW+NX (execmem_alloc_rw)
    assert a.addr == region.addr and a.allocated == 5 * PAGE_SIZE
    assert spy.calls == [("set_memory_rox", region.addr, PAGES_PER_PMD),
                         ("set_memory_nx", a.addr, 5), ("set_memory_rw", a.addr, 5)]
    assert cache.free_areas() == [(a.addr + 5 * PAGE_SIZE, region.addr + PMD_SIZE)]


def test_allocations_carve_the_cache_first_fit():
    m = _machine()
    cache = _cache(m)
    a, b = _live(m, 5 * PAGE_SIZE), _live(m, 3 * PAGE_SIZE)
    assert b.addr == a.addr + 5 * PAGE_SIZE and cache.stats.populates == 1
    m.perm.free(a)
    assert cache.free_areas()[0] == (a.addr, a.addr + 5 * PAGE_SIZE)
    c = _live(m, 2 * PAGE_SIZE)
    assert c.addr == a.addr  # lowest free area that fits
    big = _live(m, 3 << 20)  # does not fit: a new region of round_up(3 MiB, 2 MiB)
    assert cache.stats.populates == 2 and cache.regions[big.addr].size == 4 << 20
    assert m.gauges()["huge_mappings"] == 3  # the first region's leaf, and both of the new one


def test_rw_nx_window_during_formation_then_rox():
    m = _machine()
    a = m.perm.alloc(3 * PAGE_SIZE, "RX")
    rest = a.addr + 3 * PAGE_SIZE
    assert m.perm.writable(a) == a.addr  # written in place: no staging copy
    assert _perm(m, a.addr) == Perm.RW and _perm(m, rest) == Perm.RX
    assert m.directmap.perm(_pfn(m, a.addr)) == Perm.RW  # the alias follows (set_memory_rw)
    assert m.directmap.perm(_pfn(m, rest)) == Perm.R  # set_memory_rox made the alias RO
    m.perm.write(a, 0, 3 * PAGE_SIZE)
    m.perm.finish(a)
    assert _perm(m, a.addr) == Perm.RX and m.directmap.perm(_pfn(m, a.addr)) == Perm.R
    assert m.metrics.counters["wx_violations"] == 0


def test_split_on_carve_and_collapse_on_restore_each_cost_one_full_flush(counters):
    m = _machine()
    a = _live(m, PAGE_SIZE)
    assert m.gauges()["huge_mappings"] == 1  # collapsed again after finish
    with counters(m) as carve_whole:
        b = m.perm.alloc(PAGE_SIZE, "RX")  # set_memory_nx splits the leaf (flush), nx, rw
    with counters(m) as carve_split:
        c = m.perm.alloc(PAGE_SIZE, "RX")  # the leaf is already split: nx, rw
    assert (carve_whole["shootdowns"], carve_split["shootdowns"]) == (3, 2)
    seen: list = []
    m.trace = seen.append
    with counters(m) as first:
        m.perm.finish(b)  # c is still RW: the PMD is mixed, nothing to collapse
    assert first["shootdowns"] == 1 and m.gauges()["huge_mappings"] == 0
    with counters(m) as last:
        m.perm.finish(c)  # all 512 PTEs R+X again: collapse_pmd_page, then flush_tlb_all
    assert last["shootdowns"] == 2 and m.gauges()["huge_mappings"] == 1
    assert [e.source for e in seen if e.kind in ("flush_all", "vmap_collapse_2m")][-3:] == [
        "set_memory_rox/cpa_flush", "set_memory_rox/cpa_collapse_large_pages",
        "set_memory_rox/cpa_collapse_large_pages"]
    # the direct map is never collapsed: the leaf split by the alias's RW stays split
    assert m.directmap.is_split(_pfn(m, a.addr))


def test_free_fills_int3_and_returns_to_the_cache(set_memory_spy):
    spy = set_memory_spy
    m = _machine(spy=spy)
    cache = _cache(m)
    a, b = _live(m, 5 * PAGE_SIZE), _live(m, PAGE_SIZE)
    spy.calls.clear()
    seen: list = []
    m.trace = seen.append
    m.perm.free(a)
    # __execmem_cache_free: execmem_force_rw, execmem_fill_trapping_insns, execmem_restore_rox
    assert spy.calls == [("set_memory_nx", a.addr, 5), ("set_memory_rw", a.addr, 5), ("set_memory_rox", a.addr, 5)]
    assert [(e.source, e.addr, e.n) for e in seen if e.kind == "store"] == [
        ("execmem_fill_trapping_insns", a.addr, 5 * PAGE_SIZE)]
    assert _perm(m, a.addr) == Perm.RX and a.addr not in cache.busy
    assert len(cache.regions) == 1 and b.addr in cache.busy  # b keeps the region
    assert _live(m, 4 * PAGE_SIZE).addr == a.addr  # handed out again
    assert m.metrics.counters["wx_violations"] == 0


def test_upstream_clean_leaves_a_wx_alias_when_it_gives_a_region_back():
    m = _machine(strict=False)
    cache = _cache(m)
    a = _live(m, PAGE_SIZE)
    region = cache.regions[a.addr]
    pfns = list(region.mapping.pfns)
    seen: list = []
    m.trace = seen.append
    m.perm.free(a)
    # execmem_cache_clean: the free area is the whole region: direct map P+RW, then vfree
    assert cache.stats.cleans == 1 and not cache.regions and m.pagetables.lookup(a.addr) is None
    assert m.directmap.perm(pfns[0]) == Perm.RW
    # ... with the ROX alias still mapped, and then only lazily unmapped (no
    # VM_FLUSH_RESET_PERMS): every page of the region is writable and executable
    wx = [e for e in seen if e.kind == "wx_violation"]
    assert [(e.source, e.n) for e in wx] == [("execmem_cache_clean", PAGES_PER_PMD)]
    assert m.page_access(pfns[0]) == (True, True)
    m.vmalloc.purge()  # the lazy purge's flush ends it
    assert m.page_access(pfns[0]) == (True, False)
    assert m.teardown() == []


def test_upstream_strict_mode_refuses_only_the_clean():
    m = _machine(ROX_CACHE, strict=True)
    anchor = _live(m, PAGE_SIZE)  # keeps the region busy: no clean
    for size in (PAGE_SIZE, 7 * PAGE_SIZE, 20000, 3 * PAGE_SIZE):
        a = _live(m, size)
        m.perm.poke(a, 16, 5)
        m.perm.change(a, "R")
        m.perm.free(a)
    with pytest.raises(InvariantViolation, match="execmem_cache_clean"):
        m.perm.free(anchor)


def test_reset_perms_what_if_costs_one_flush_and_keeps_wx(counters):
    upstream, fixed = _machine(ROX_CACHE, strict=False), _machine(ROX_CACHE_RESET_PERMS, strict=True)
    deltas = []
    for m in (upstream, fixed):
        a = _live(m, PAGE_SIZE)
        with counters(m) as delta:
            m.perm.free(a)
        deltas.append(delta)
        assert _cache(m).stats.cleans == 1 and m.teardown() == []
    assert deltas[1]["shootdowns"] == deltas[0]["shootdowns"] + 1  # vm_reset_perms' flush
    assert (deltas[0]["wx_violations"], deltas[1]["wx_violations"]) == (PAGES_PER_PMD, 0)


def test_only_module_text_comes_from_the_cache():
    m = _machine()
    data, ro = m.perm.alloc(8192, "RW"), m.perm.alloc(8192, "R")
    elsewhere = m.perm.alloc(8192, "RX", "vmalloc")
    assert _cache(m).stats.allocs == 0 and not _cache(m).regions
    for a in (data, ro, elsewhere):
        assert "x86" not in a.backend  # the generic execmem_alloc path (vmalloc, VM_FLUSH_RESET_PERMS)
        m.perm.free(a)


def test_teardown_leaks_nothing_and_wx_holds_under_strict_mode():
    m = _machine(ROX_CACHE_RESET_PERMS, strict=True)
    live = [_live(m, size) for size in (4096, 70000, 3 << 20, 12288, 200000)]
    for a in live[::2]:
        m.perm.free(a)
    more = [_live(m, size) for size in (8192, 1 << 20)]
    assert m.gauges()["huge_mappings"] >= 1
    for a in more:
        m.perm.poke(a, 0, 5)
    for a in [*live[1::2], *more]:
        m.perm.free(a)
    cache = _cache(m)
    assert not cache.busy and not cache.regions and cache.stats.cleans == cache.stats.populates
    assert m.metrics.counters["wx_violations"] == 0
    assert m.teardown() == []  # strict: a leaked page, mapping or direct-map change would raise


def test_upstream_clean_breaks_the_free_contract_the_what_if_keeps_it():
    # mm/execmem.c execmem_cache_clean: execmem_set_direct_map_valid(vm, true), then vfree() of a
    # region that execmem_cache_populate_alloc vmalloc'ed without VM_FLUSH_RESET_PERMS: vfree's
    # lazy vunmap frees the pages while the region's executable translations stay cached until
    # the lazy purge. Freeing the last allocation of a region gives its pages back that way.
    upstream, fixed = _machine(ROX_CACHE, strict=False), _machine(ROX_CACHE_RESET_PERMS, strict=False)
    for m in (upstream, fixed):
        kept = _live(m, 3 * PAGE_SIZE)
        gone = _live(m, 5 * PAGE_SIZE)
        m.perm.free(gone)  # the region is still busy: cached, not judged
        assert m.metrics.counters["contract_violations"] == 0
        m.perm.free(kept)  # the last one: execmem_cache_clean gives the region back
    assert upstream.metrics.counters["contract_violations"] == 3  # the pages of the last allocation
    [line] = invariants_report(upstream)["violations"]
    assert line.startswith("plugin 'x86': permalloc_free left 3 page(s) of allocation ")
    assert line.endswith("given back to the page allocator with an executable translation still cached in a TLB")
    assert fixed.metrics.counters["contract_violations"] == 0
    for m in (upstream, fixed):
        assert m.teardown() == []
