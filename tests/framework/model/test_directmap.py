from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc import Perm
from permalloc.model.directmap import LEAF_1G, LEAF_2M, LEAF_4K, DirectMap, LinearAlias, simple_leaves
from permalloc.model.pages import PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE, PUD_SIZE

NPAGES_4G = (4 << 30) // PAGE_SIZE


def _gb(gbpages: bool = True) -> DirectMap:
    return DirectMap(simple_leaves([(0, NPAGES_4G)], gbpages))


def _total(dm: DirectMap) -> int:
    return sum(dm.meminfo().values())


def test_leaves_follow_alignment_and_holes():
    leaves = simple_leaves([(1, 0x9F), (0x100, 0x7FFE0)], gbpages=True)
    assert leaves[0] == (1, 0x9F, LEAF_4K) and leaves[-1] == (0x7FE00, 0x7FFE0, LEAF_4K)
    dm = DirectMap(leaves)
    assert not dm.is_mapped(0) and not dm.is_mapped(0xA0) and dm.is_mapped(0x200)
    assert dm.leaf_size(0x40000) == PMD_SIZE  # RAM ends below 2 GiB: no whole GiB
    assert DirectMap(simple_leaves([(0, 0x80000)], gbpages=True)).leaf_size(0x40000) == PUD_SIZE
    assert dm.leaf_size(0x200) == PMD_SIZE and dm.leaf_size(0x7FF00) == PAGE_SIZE


def test_boot_counts_can_be_given_as_the_arch_counts_them():
    dm = DirectMap([(0, 512, LEAF_2M)], counts={LEAF_4K: 0, LEAF_2M: 3, LEAF_1G: 0})
    assert dm.meminfo()["directmap_2m_bytes"] == 3 * PMD_SIZE


def test_one_page_in_a_1g_leaf_splits_1g_then_2m():
    dm = _gb()
    changed, s1g, s2m = dm.change([1000], Perm.NONE, Perm.W)
    assert (changed, s1g, s2m) == ([1000], 1, 1)
    info = dm.meminfo()
    assert info["directmap_1g_bytes"] == 3 << 30
    assert info["directmap_4k_bytes"] == PMD_SIZE
    assert info["directmap_2m_bytes"] == PUD_SIZE - PMD_SIZE
    assert dm.perm(1000) == Perm.R and dm.perm(1001) == Perm.RW


def test_unchanged_permission_splits_nothing():
    assert _gb().change([5], Perm.RW, Perm.NONE) == ([], 0, 0)  # already RW


def test_whole_2m_change_keeps_the_leaf():
    dm = _gb(gbpages=False)
    block = list(range(PAGES_PER_PMD * 3, PAGES_PER_PMD * 4))
    changed, s1g, s2m = dm.change(block, Perm.NONE, Perm.RWX)
    assert (len(changed), s1g, s2m) == (PAGES_PER_PMD, 0, 0)
    assert dm.perm(block[7]) == Perm.NONE and dm.leaf_size(block[7]) == PMD_SIZE
    dm.change(block, Perm.RW, Perm.NONE)
    assert dm.nondefault_pages() == 0


def test_collapse_after_permissions_agree_again():
    dm = _gb(gbpages=False)
    dm.change([10], Perm.NONE, Perm.W)
    assert not dm.try_collapse(0) or dm.perm(10) == Perm.RW
    dm.change([10], Perm.W, Perm.NONE)
    assert dm.try_collapse(0)
    assert dm.meminfo()["directmap_4k_bytes"] == 0 and dm.collapses_2m == 1


def test_a_counted_alias_moves_the_directmap_lines():
    dm = _gb(gbpages=False)
    alias = LinearAlias("image", 512, 1024, 0xFFFFFFFF81000000, [(512, 1536, LEAF_2M)], counted=True)
    assert alias.covers(600) and alias.addr(513) == 0xFFFFFFFF81001000 and alias.pfn(0xFFFFFFFF81001000) == 513
    dm.count_split(LEAF_2M)
    assert dm.meminfo()["directmap_4k_bytes"] == PMD_SIZE and dm.splits_2m == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, NPAGES_4G - 1), st.sampled_from([Perm.R, Perm.RW, Perm.NONE])), max_size=60))
def test_meminfo_always_adds_up_to_ram(changes):
    dm = _gb()
    for pfn, perm in changes:
        dm.change([pfn], perm, Perm.RWX & ~perm)
        assert dm.perm(pfn) == perm
    assert _total(dm) == NPAGES_4G * PAGE_SIZE
    assert dm.splits_2m == len(dm.split_2m)
