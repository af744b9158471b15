from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc import OutOfMemory, VRange
from permalloc.model.vspace import AddressSpace

R = VRange(name="t", start=0x1000_0000, end=0x5000_0000)


def test_first_fit_lowest_address_and_alignment():
    space = AddressSpace(R)
    a = space.alloc(0x3000, 0x1000)
    b = space.alloc(0x1000, 0x1000)
    assert (a, b) == (R.start, R.start + 0x3000)
    c = space.alloc(0x1000, 0x20_0000)
    assert c % 0x20_0000 == 0
    space.free(a)
    assert space.alloc(0x2000, 0x1000) == R.start  # the hole is reused first


def test_offset_and_exhaustion():
    space = AddressSpace(R, offset=0x5000)
    assert space.alloc(0x1000, 0x1000) == R.start + 0x5000
    with pytest.raises(OutOfMemory, match="t range"):
        space.alloc(R.size, 0x1000)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.sampled_from([1, 16, 512]), st.integers(0, 99)), max_size=80))
def test_blocks_never_overlap_and_frees_merge(ops):
    space = AddressSpace(R)
    live: dict[int, int] = {}
    for pages, align_pages, pick in ops:
        if pick < 30 and live:
            start = sorted(live)[pick % len(live)]
            space.free(start)
            del live[start]
            continue
        start = space.alloc(pages * 0x1000, align_pages * 0x1000)
        assert start % (align_pages * 0x1000) == 0
        live[start] = start + pages * 0x1000
    spans = sorted(live.items())
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))
    for start in list(live):
        space.free(start)
    assert space._gap_starts == [R.start] and space._gap_ends[R.start] == R.end
