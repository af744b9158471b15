"""RFC optimisation 1: the cache of 2 MiB blocks unmapped from the direct map, and its shrinker."""

from __future__ import annotations

from permalloc import MachineSpec, Perm
from permalloc.arches.x86 import _state
from permalloc.model.pages import PAGES_PER_PMD
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run

from .conftest import fresh_frontier, load, page_frames, policy_for, x86

CACHE = policy_for(block_cache=True)
RFC = policy_for(block_cache=True, text_poke=True)


def test_refill_unmaps_a_whole_block_with_one_flush_and_no_2m_split():
    m = x86(RFC, gbpages=False)
    seen = []
    m.trace = seen.append
    a = load(m, 16384)
    blocks = _state(m).blocks
    block = page_frames(m, a)[0] // PAGES_PER_PMD * PAGES_PER_PMD
    assert blocks.refills == 1 and set(blocks.blocks) == {block}
    assert {p // PAGES_PER_PMD for p in page_frames(m, a)} == {block // PAGES_PER_PMD}  # grouped physically
    assert all(m.directmap.perm(block + i) == Perm.NONE for i in range(PAGES_PER_PMD))  # all of it
    assert not (m.directmap.split_2m - m.baseline['split_2m'])  # __set_pages_np over the whole leaf keeps it 2 MiB
    flushes = [e for e in seen if e.kind in ("flush_all", "flush_range")]
    # _vm_unmap_aliases over 2 MiB of direct map: 512 pages > 33, a full flush
    assert [(e.kind, e.source) for e in flushes] == [("flush_all", "perm_alloc/refill/_vm_unmap_aliases")]


def test_pages_are_reused_without_a_flush_when_permissions_agree():
    m = x86(RFC)
    m.perm.free(load(m, 16384))
    before = m.metrics.counters["shootdowns"]
    m.perm.free(load(m, 16384))  # stale RX aliases, new RX mapping: no conflict
    m.perm.free(load(m, 8192, "R"))  # stale RX, new R: nothing writable, no conflict
    assert m.metrics.counters["shootdowns"] == before
    assert _state(m).blocks.refills == 1


def test_stale_executable_alias_is_flushed_before_a_writable_mapping():
    m = x86(CACHE)  # set_memory loading: the new mapping starts RW+NX
    m.perm.free(load(m, 16384))  # its RX alias is unmapped lazily: stale until a purge
    seen = []
    m.trace = seen.append
    m.perm.alloc(16384, "RX")
    kinds = [(e.kind, e.source) for e in seen if e.kind in ("flush_all", "flush_range", "map")]
    # vm_unmap_aliases() purges the lazy area (one flush) before the RW mapping is made
    assert kinds[0][1] == "perm_alloc/vm_unmap_aliases" and kinds[1][0] == "map"
    assert m.metrics.counters["wx_violations"] == 0


def test_order0_fallback_when_no_block_is_free():
    m = x86(RFC, memory="64G")
    m.alloc_block = lambda source="": None  # the buddy allocator has no free order-9 block left
    fresh_frontier(m)
    a = load(m, 16384)
    blocks = _state(m).blocks
    assert blocks.fallback_pages == 4 and not blocks.blocks
    used = {p // PAGES_PER_PMD for p in page_frames(m, a)}
    c = m.metrics.counters
    # set_direct_map_invalid_noflush per page splits the leaves around it (flush each), then
    # one _vm_unmap_aliases flush for the whole refill
    assert (m.directmap.split_2m - m.baseline['split_2m']) == used
    assert c["shootdowns"] == c["directmap_splits_1g"] + c["directmap_splits_2m"] + 1
    m.perm.free(a)
    assert m.perm.shrink(10) == 4  # fallback pages go back one by one
    assert m.teardown() == []


def test_shrinker_maps_pages_back_and_flushes_once_for_stale_aliases():
    m = x86(RFC)
    for a in [load(m, 16384), load(m, 65536)]:
        m.perm.free(a)
    allocated = m.phys.allocated_pages
    seen = []
    m.trace = seen.append
    assert m.perm.shrink(4096) == PAGES_PER_PMD
    flushes = [e.source for e in seen if e.kind in ("flush_all", "flush_range")]
    # the only flush: stale vmalloc aliases of the cached pages (lazily unmapped, not yet purged)
    assert flushes == ["shrinker/vm_unmap_aliases"]
    assert m.directmap.nondefault_pages() == m.baseline['directmap_nondefault']  # NP -> RW
    assert not [e for e in seen if e.kind in ("split_1g", "split_2m")]  # whole 2 MiB leaf mapped back
    assert m.phys.allocated_pages == allocated - PAGES_PER_PMD
    assert m.teardown() == []


def test_shrinker_needs_no_flush_once_the_aliases_were_purged():
    m = x86(RFC)
    m.perm.free(load(m, 16384))
    m.vmalloc.purge()  # someone else's vm_unmap_aliases already flushed them
    before = m.metrics.counters["shootdowns"]
    assert m.perm.shrink(4096) == PAGES_PER_PMD
    assert m.metrics.counters["shootdowns"] == before  # "re-mapped on the fly without any flush"


def test_shrinker_keeps_blocks_with_pages_in_use():
    m = x86(RFC)
    live = load(m, 16384)
    m.perm.free(load(m, 16384))
    assert m.perm.shrink(4096) == 0  # the block still backs a live allocation
    assert m.perm.shrink(0) == 0
    m.perm.free(live)
    assert m.perm.shrink(100) == 0  # a whole block is 512 pages: more than asked for
    assert m.perm.shrink(512) == PAGES_PER_PMD


def test_pressure_op_reaches_the_shrinker():
    scenario = Scenario.model_validate({"name": "p", "ops": [
        {"op": "alloc", "id": "a", "size": 16384, "perm": "RX"},
        {"op": "write", "id": "a"},
        {"op": "finish", "id": "a"},
        {"op": "free", "id": "a"},
        {"op": "pressure", "pages": 4096},
    ]})
    result = run(scenario, MachineSpec(arch="x86", memory="4G", gbpages=False), RFC, strict=True)
    pressure = result.per_op["pressure"]
    assert pressure["shootdowns"]["max"] == 1  # the shrinker's one flush for the stale alias
    assert result.problems == []


def test_rw_change_on_an_unmapped_alias_keeps_it_not_present():
    # set_memory_rw's alias processing sets _PAGE_RW on a direct-map entry that is not
    # present: it stays not present (framework/directmap.py, _NP), so a page changed to RW
    # and freed can be handed out executable again without a W^X moment.
    for policy in (RFC, policy_for(block_cache=True, text_poke=True, huge=True)):
        m = x86(policy)
        a = load(m, 16384)
        m.perm.change(a, "RW")
        assert m.directmap.perm(page_frames(m, a)[0]) == Perm.NONE
        m.perm.free(a)
        m.perm.free(load(m, 16384))
        assert m.metrics.counters["wx_violations"] == 0
        assert m.teardown() == []


def test_directmap_not_present_entry_ignores_rw_and_x_bits():
    from permalloc.model.directmap import DirectMap, simple_leaves

    dm = DirectMap(simple_leaves([(0, 1 << 18)], gbpages=False))
    dm.change(range(512), Perm.NONE, Perm.RWX)  # a whole block not present
    changed, _, s2m = dm.change([3], Perm.W, Perm.NONE)
    assert (changed, s2m, dm.perm(3)) == ([], 0, Perm.NONE)
    changed, _, _ = dm.change([3], Perm.RW, Perm.X)  # set_direct_map_default: present again
    assert changed == [3] and dm.perm(3) == Perm.RW
