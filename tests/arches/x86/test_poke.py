"""x86 poke: text_poke_bp for an instruction, text_poke_copy beyond, never a TLB shootdown."""

from __future__ import annotations

import pytest

from .conftest import ALL_POLICIES, x86


def _live(m, size=16384, perm="RX"):
    a = m.perm.alloc(size, perm)
    m.perm.write(a, 0, size)
    m.perm.finish(a)
    return a


@pytest.mark.parametrize(
    "length, syncs, pokes",
    [
        (5, 3, 3),  # text_poke_bp_batch: int3 + sync, tail + sync, first byte + sync
        (2, 3, 3),
        (1, 2, 2),  # no tail to write: the second sync is skipped (do_sync == 0)
    ],
)
def test_instruction_patch_goes_through_text_poke_bp(length: int, syncs: int, pokes: int):
    m = x86()
    a = _live(m)
    before = dict(m.metrics.counters)
    m.perm.poke(a, 64, length)
    d = {k: m.metrics.counters[k] - before[k] for k in before}
    assert (d["sync_ipis"], d["text_pokes"], d["local_flushes"]) == (syncs, pokes, pokes)
    assert d["shootdowns"] == 0  # __text_poke: poking_mm, local flush only
    assert d["poke_bytes"] == length + 1  # the int3 byte, then the instruction


@pytest.mark.parametrize("offset, length, pokes", [(64, 6, 1), (0, 16384, 2), (100, 16284, 2), (4000, 8192, 2)])
def test_larger_patch_goes_through_text_poke_copy(offset: int, length: int, pokes: int):
    m = x86()
    a = _live(m)
    before = dict(m.metrics.counters)
    m.perm.poke(a, offset, length)
    d = {k: m.metrics.counters[k] - before[k] for k in before}
    # text_poke_copy: ceil((offset_in_page + len) / 8 KiB) __text_poke calls, no sync
    assert (d["text_pokes"], d["sync_ipis"], d["shootdowns"]) == (pokes, 0, 0)


def test_read_only_data_is_patched_with_text_poke_copy_and_rw_data_in_place():
    m = x86()
    ro, rw = _live(m, 8192, "R"), _live(m, 8192, "RW")
    before = dict(m.metrics.counters)
    m.perm.poke(ro, 8, 4)  # not an instruction: no int3 protocol
    assert m.metrics.counters["text_pokes"] - before["text_pokes"] == 1
    assert m.metrics.counters["sync_ipis"] == before["sync_ipis"]
    m.perm.poke(rw, 8, 4)  # writable: a plain store
    assert m.metrics.counters["text_pokes"] - before["text_pokes"] == 1
    assert m.metrics.counters["shootdowns"] == before["shootdowns"]


@pytest.mark.parametrize("policy", ALL_POLICIES[::5], ids=lambda p: p.name)
def test_poke_costs_no_shootdown_under_any_switches(policy):
    m = x86(policy)
    a = _live(m)
    before = m.metrics.counters["shootdowns"]
    m.perm.poke(a, 4094, 5)  # crosses a page boundary: two pages through poking_mm
    assert m.metrics.counters["shootdowns"] == before
    assert m.metrics.counters["wx_violations"] == 0
