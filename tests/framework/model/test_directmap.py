from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc import Perm
from permalloc.model.directmap import DirectMap
from permalloc.model.pages import PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE, PUD_SIZE

NPAGES_4G = (4 << 30) // PAGE_SIZE


def _total(dm: DirectMap) -> int:
    return sum(dm.meminfo().values())


def test_boot_state_uses_1g_leaves_when_allowed():
    dm = DirectMap(NPAGES_4G, gbpages=True)
    assert dm.meminfo() == {"directmap_4k_bytes": 0, "directmap_2m_bytes": 0, "directmap_1g_bytes": 4 << 30}
    assert DirectMap(NPAGES_4G, gbpages=False).meminfo()["directmap_2m_bytes"] == 4 << 30


def test_one_page_in_a_1g_leaf_splits_1g_then_2m():
    dm = DirectMap(NPAGES_4G, gbpages=True)
    changed, s1g, s2m = dm.change([1000], Perm.NONE, Perm.W)
    assert (changed, s1g, s2m) == ([1000], 1, 1)
    info = dm.meminfo()
    assert info["directmap_1g_bytes"] == 3 << 30
    assert info["directmap_4k_bytes"] == PMD_SIZE
    assert info["directmap_2m_bytes"] == PUD_SIZE - PMD_SIZE
    assert dm.perm(1000) == Perm.R and dm.perm(1001) == Perm.RW


def test_unchanged_permission_splits_nothing():
    dm = DirectMap(NPAGES_4G, gbpages=True)
    assert dm.change([5], Perm.RW, Perm.NONE) == ([], 0, 0)  # already RW


def test_whole_2m_change_keeps_the_leaf():
    dm = DirectMap(NPAGES_4G, gbpages=False)
    block = list(range(PAGES_PER_PMD * 3, PAGES_PER_PMD * 4))
    changed, s1g, s2m = dm.change(block, Perm.NONE, Perm.RWX)
    assert (len(changed), s1g, s2m) == (PAGES_PER_PMD, 0, 0)
    assert dm.perm(block[7]) == Perm.NONE and dm.leaf_size(block[7]) == PMD_SIZE
    dm.change(block, Perm.RW, Perm.NONE)
    assert dm.nondefault_pages() == 0


def test_collapse_after_permissions_agree_again():
    dm = DirectMap(NPAGES_4G, gbpages=False)
    dm.change([10], Perm.NONE, Perm.W)
    assert not dm.try_collapse(0) or dm.perm(10) == Perm.RW
    dm.change([10], Perm.W, Perm.NONE)
    assert dm.try_collapse(0)
    assert dm.meminfo()["directmap_4k_bytes"] == 0 and dm.collapses_2m == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, NPAGES_4G - 1), st.sampled_from([Perm.R, Perm.RW, Perm.NONE])), max_size=60))
def test_meminfo_always_adds_up_to_ram(changes):
    dm = DirectMap(NPAGES_4G, gbpages=True)
    for pfn, perm in changes:
        dm.change([pfn], perm, Perm.RWX & ~perm)
        assert dm.perm(pfn) == perm
    assert _total(dm) == NPAGES_4G * PAGE_SIZE
    assert dm.splits_2m == len(dm.split_2m)
