from __future__ import annotations

from permalloc import Perm
from permalloc.model.pages import PAGE_SIZE
from permalloc.model.tlb import TLBState


def test_only_writable_or_executable_entries_are_tracked():
    tlb = TLBState()
    tlb.add(0x1000, [10, 11, 12], [int(Perm.R), int(Perm.RW), int(Perm.RX)])
    assert len(tlb) == 2
    assert set(tlb.stale_w) == {11} and set(tlb.stale_x) == {12}


def test_range_flush_drops_only_covered_pages():
    tlb = TLBState()
    tlb.add(0x10000, list(range(100, 110)), [int(Perm.RX)] * 10)
    dropped = tlb.flush_range(0x10000 + 2 * PAGE_SIZE, 0x10000 + 5 * PAGE_SIZE)
    assert dropped == [102, 103, 104]
    assert len(tlb) == 7 and 103 not in tlb.stale_x and 109 in tlb.stale_x


def test_full_flush_and_re_add():
    tlb = TLBState()
    tlb.add(0x2000, [5], [int(Perm.RW)])
    tlb.add(0x2000, [6], [int(Perm.RX)])  # the same virtual page cached again: replaces
    assert dict(tlb.stale_w) == {} and dict(tlb.stale_x) == {6: 1}
    assert tlb.flush_all() == [6]
    assert len(tlb) == 0 and not tlb.stale_x
