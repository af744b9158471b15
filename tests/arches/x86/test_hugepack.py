"""RFC optimisation 4: same-permission allocations packed under 2 MiB leaves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from permalloc import Perm, PermallocError, PolicySpec
from permalloc.arches.x86 import _state
from permalloc.arches.x86.hugepack import Region
from permalloc.model.pages import PAGES_PER_PMD, PMD_SIZE

from .conftest import load, policy_for, x86

HUGE = policy_for(huge=True)
BY_LIFETIME = HUGE.model_copy(update={"name": "x86-huge-by-lifetime", "huge_pack_by_lifetime": True})


def test_same_permission_shares_one_2m_leaf():
    m = x86(HUGE)
    a = load(m, 16384)
    before = dict(m.metrics.counters)
    seen = []
    m.trace = seen.append
    b = load(m, 5000)
    assert a.addr % PMD_SIZE == 0 and b.addr == a.addr + 16384  # packed, page after page
    assert m.gauges()["huge_mappings"] == 1
    # the second allocation maps nothing and flushes nothing: text_poke_copy into the slot
    assert m.metrics.counters["shootdowns"] == before["shootdowns"]
    assert [e.source for e in seen if e.kind == "map"] == ["perm_alloc/staging"]  # only the buffer


def test_each_permission_gets_its_own_region():
    m = x86(HUGE)
    allocs = [load(m, 8192, perm) for perm in ("RX", "R", "RW", "RX")]
    assert m.gauges()["huge_mappings"] == 3
    assert allocs[3].addr - allocs[0].addr == 8192
    assert len({a.addr // PMD_SIZE for a in allocs[:3]}) == 3


def test_slot_is_loaded_through_staging_even_with_set_memory_loading():
    m = x86(HUGE)  # text_loading=set_memory: a shared RX leaf cannot be made writable
    a = m.perm.alloc(16384, "RX")
    assert m.perm.writable(a) != a.addr
    m.perm.write(a, 0, 16384)
    before = dict(m.metrics.counters)
    m.perm.finish(a)
    assert m.metrics.counters["shootdowns"] == before["shootdowns"]
    assert m.metrics.counters["text_pokes"] - before["text_pokes"] == 2


def test_free_fills_the_slot_with_int3_and_the_last_free_releases_the_region():
    m = x86(HUGE, gbpages=False)
    a, b = load(m, 16384), load(m, 16384)
    before = dict(m.metrics.counters)
    m.perm.free(a)
    # bpf_prog_pack_free -> text_poke_set(0xcc) over the slot: local only
    assert m.metrics.counters["text_pokes"] - before["text_pokes"] == 2
    assert m.metrics.counters["shootdowns"] == before["shootdowns"]
    assert m.gauges()["huge_mappings"] == 1
    seen = []
    m.trace = seen.append
    m.perm.free(b)
    # the empty region goes: unmapped lazily, then one flush before its block returns
    assert [e.source for e in seen if e.kind in ("flush_all", "flush_range")] == ["pack_release/_vm_unmap_aliases"]
    assert m.gauges()["huge_mappings"] == 0
    assert m.teardown() == []


def test_live_cache_keeps_an_empty_region_until_the_shrinker():
    m = x86(policy_for(huge=True, live_cache=True))
    a = load(m, 16384)
    m.perm.free(a)
    assert m.gauges()["huge_mappings"] == 1
    again = load(m, 16384)
    assert again.addr == a.addr  # the same slot of the kept region
    m.perm.free(again)
    assert m.perm.shrink(4096) == 512
    assert m.gauges()["huge_mappings"] == 0
    assert m.teardown() == []


def test_changing_a_slot_splits_the_leaf_and_free_sets_it_back():
    m = x86(HUGE)
    a, b = load(m, 8192), load(m, 8192)
    seen = []
    m.trace = seen.append
    m.perm.change(a, "R")
    # set_memory_nx on part of a 2 MiB leaf: __should_split_large_page splits it (a full flush)
    assert [e.kind for e in seen if e.kind == "vmap_split_2m"] == ["vmap_split_2m"]
    assert m.gauges()["huge_mappings"] == 0
    m.perm.free(a)  # set_memory_x puts the slot back to the region's RX before reuse
    mapping, index = m.pagetables.lookup(a.addr)
    assert mapping.perms[index] == mapping.perms[index + 2]
    m.perm.free(b)
    assert m.metrics.counters["wx_violations"] == 0
    assert m.teardown() == []


def test_allocations_over_2m_are_not_packed():
    m = x86(HUGE)
    a = load(m, PMD_SIZE + 4096)
    assert m.gauges()["huge_mappings"] == 0 and not _state(m).packs.regions
    m.perm.free(a)
    assert m.teardown() == []


def test_rfc_full_block_cache_backs_the_regions():
    m = x86(policy_for(block_cache=True, text_poke=True, live_cache=True, huge=True), gbpages=False)
    a, r = load(m, 16384), load(m, 16384, "R")
    # one refill per region (a whole block each), nothing else
    assert m.metrics.counters["shootdowns"] == 2 and m.gauges()["huge_mappings"] == 2
    m.perm.free(a)
    m.perm.free(r)
    assert m.teardown() == []


@given(used=st.integers(min_value=0, max_value=(1 << PAGES_PER_PMD) - 1), npages=st.integers(1, PAGES_PER_PMD))
def test_region_find_is_first_fit(used: int, npages: int) -> None:
    region = Region("module", Perm.RX, None, 0, "buddy")  # type: ignore[arg-type]
    region.used = used
    free = [not used >> i & 1 for i in range(PAGES_PER_PMD)]
    expected = next((i for i in range(PAGES_PER_PMD - npages + 1) if all(free[i:i + npages])), None)
    assert region.find(npages) == expected


def _pack(m, size: int, perm: str, lifetime: str):
    a = m.perm.alloc(size, perm, lifetime=lifetime)
    m.perm.write(a, 0, size)
    m.perm.finish(a)
    return a


def _leaf(a) -> int:
    return a.addr // PMD_SIZE


@pytest.mark.parametrize("perm", ["RX", "R", "RW"])
def test_without_by_lifetime_short_and_long_share_a_pack(perm):
    m = x86(HUGE)
    long1, short, long2 = (_pack(m, 8192, perm, lt) for lt in ("long", "short", "long"))
    assert _leaf(long1) == _leaf(short) == _leaf(long2)
    assert short.addr == long1.addr + 8192 and long2.addr == short.addr + 8192  # page after page
    assert len(_state(m).packs.regions) == 1 and m.gauges()["huge_mappings"] == 1


@pytest.mark.parametrize("perm", ["RX", "R", "RW"])
def test_by_lifetime_short_and_long_never_share_a_pack(perm):
    m = x86(BY_LIFETIME)
    allocs = [_pack(m, 8192, perm, lt) for lt in ("long", "short", "long", "short", "unknown")]
    long1, short1, long2, short2, unknown = allocs
    assert _leaf(long1) == _leaf(long2) and long2.addr == long1.addr + 8192  # long ones still packed
    assert _leaf(short1) == _leaf(short2) and short2.addr == short1.addr + 8192
    assert len({_leaf(long1), _leaf(short1), _leaf(unknown)}) == 3
    regions = _state(m).packs.regions
    assert sorted(r.lifetime for r in regions) == ["long", "short", "unknown"]
    assert m.gauges()["huge_mappings"] == 3
    # the short pack empties and goes while the long one stays
    for a in (short1, short2):
        m.perm.free(a)
    assert sorted(r.lifetime for r in _state(m).packs.regions) == ["long", "unknown"]
    assert m.gauges()["huge_mappings"] == 2
    for a in (long1, long2, unknown):
        m.perm.free(a)
    assert m.metrics.counters["wx_violations"] == 0
    assert m.teardown() == []


@given(lifetimes=st.lists(st.sampled_from(["long", "short", "unknown"]), min_size=1, max_size=12),
       sizes=st.lists(st.integers(1, 64 << 10), min_size=12, max_size=12))
def test_by_lifetime_no_2m_leaf_holds_two_lifetimes(lifetimes, sizes):
    m = x86(BY_LIFETIME)
    allocs = [_pack(m, size, "RX", lt) for lt, size in zip(lifetimes, sizes, strict=False)]
    leaves: dict[int, set[str]] = {}
    for a in allocs:
        leaves.setdefault(_leaf(a), set()).add(a.lifetime)
    assert all(len(kinds) == 1 for kinds in leaves.values())
    assert len(leaves) == len(set(lifetimes))  # and each lifetime packs into one leaf


def test_by_lifetime_needs_huge_mappings():
    with pytest.raises(ValidationError) as err:
        PolicySpec(name="p", huge_pack_by_lifetime=True)
    errors = err.value.errors()
    assert len(errors) == 1 and errors[0]["loc"] == ("huge_pack_by_lifetime",)
    assert errors[0]["msg"] == ("Value error, true needs huge_mappings=true (it splits the 2 MiB packs of "
                                "huge_mappings by lifetime)")
    assert PolicySpec(name="p", huge_mappings=True, huge_pack_by_lifetime=True).huge_pack_by_lifetime


def test_by_lifetime_is_recorded_and_round_trips():
    assert HUGE.model_dump(mode="json")["huge_pack_by_lifetime"] is False
    assert BY_LIFETIME.model_dump(mode="json")["huge_pack_by_lifetime"] is True
    assert PolicySpec.model_validate(BY_LIFETIME.model_dump()) == BY_LIFETIME  # round trip


def test_by_lifetime_is_refused_on_an_arch_without_huge_vmap():
    from permalloc import Machine, MachineSpec

    with pytest.raises(PermallocError, match=r"needs huge_mappings, which arch 'generic' does not provide"):
        Machine(MachineSpec(arch="generic", memory="1G"), BY_LIFETIME)
