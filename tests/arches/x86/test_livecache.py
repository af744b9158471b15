"""RFC optimisation 3: freed RX ranges stay mapped, int3-filled, reused, flushed on reclaim."""

from __future__ import annotations

import pytest

from permalloc import Machine, Perm
from permalloc.arches.x86 import _state, livecache

from .conftest import load, policy_for, x86

LIVE = policy_for(live_cache=True)


def _delta(m: Machine, before: dict) -> dict:
    return {k: v - before[k] for k, v in m.metrics.counters.items()}


@pytest.mark.parametrize("policy", [LIVE, policy_for(block_cache=True, text_poke=True, live_cache=True)],
                         ids=["live", "live+rfc"])
def test_free_keeps_the_mapping_and_fills_it_with_int3(policy):
    m = x86(policy)
    a = load(m, 16384)
    before = dict(m.metrics.counters)
    m.perm.free(a)
    d = _delta(m, before)
    mapping, _ = m.pagetables.lookup(a.addr)
    assert set(mapping.perms) == {int(Perm.RX)}  # still mapped, still RX
    # text_poke_set over 16 KiB: two __text_poke chunks, a local flush each, nothing else
    assert (d["text_pokes"], d["poke_bytes"], d["local_flushes"], d["shootdowns"]) == (2, 16384, 2, 0)
    assert m.teardown() == []


def test_same_permission_reuses_the_live_range_with_no_shootdown():
    m = x86(LIVE)
    first = load(m, 16384)
    m.perm.free(first)
    seen = []
    m.trace = seen.append
    before = dict(m.metrics.counters)
    again = m.perm.alloc(12000, "RX")  # fits the 4 cached pages (3 needed, at most 2x waste)
    assert again.addr == first.addr
    assert m.perm.writable(again) != again.addr  # live and executable: loaded from a staging buffer
    m.perm.write(again, 0, 12000)
    m.perm.finish(again)
    d = _delta(m, before)
    assert d["shootdowns"] == 0 and d["directmap_splits_2m"] == 0
    assert not [e for e in seen if e.kind == "map" and e.addr == first.addr]  # no new mapping
    assert d["text_pokes"] == 2  # text_poke_copy of 12000 bytes
    assert _state(m).live.hits == 1


def test_other_permission_or_larger_size_is_not_served_from_the_cache():
    m = x86(LIVE)
    cached = load(m, 16384)
    m.perm.free(cached)
    ro = load(m, 16384, "R")
    big = load(m, 65536, "RX")
    tiny = load(m, 4096, "RX")  # 1 page needed, 4 cached: more than half would be wasted
    assert cached.addr not in (ro.addr, big.addr, tiny.addr)
    assert len(_state(m).live.entries) == 1 and _state(m).live.hits == 0


def test_flush_happens_only_when_reclaimed():
    m = x86(LIVE)
    a = load(m, 16384)
    m.perm.free(a)
    before = m.metrics.counters["shootdowns"]
    freed = m.perm.shrink(4096)
    assert freed == 4  # the range's pages go back to the page allocator
    assert m.pagetables.lookup(a.addr) is None
    # vfree with VM_FLUSH_RESET_PERMS: one flush (the alias was split by set_memory_ro before)
    assert m.metrics.counters["shootdowns"] - before == 1
    assert m.teardown() == []


def test_changed_permission_is_not_cached():
    m = x86(LIVE)
    a = load(m, 16384)
    m.perm.change(a, "R")
    m.perm.free(a)
    assert m.pagetables.lookup(a.addr) is None and not _state(m).live.entries


def test_oldest_ranges_are_reclaimed_beyond_the_cap():
    m = x86(LIVE)
    size = 64 * 4096
    allocs = [load(m, size) for _ in range(livecache.MAX_PAGES // 64 + 1)]
    for a in allocs:
        m.perm.free(a)
    live = _state(m).live
    assert live.pages <= livecache.MAX_PAGES and live.reclaimed == 1
    assert m.pagetables.lookup(allocs[0].addr) is None  # the oldest went
    assert m.pagetables.lookup(allocs[-1].addr) is not None
    assert m.teardown() == []
