"""The first per-CPU chunk: pcpu_build_alloc_info's unit size and pcpu_embed_first_chunk's holes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc.model.memblock import Memblock, MemRange
from permalloc.model.percpu import build_alloc_info, embed_first_chunk

MiB = 1 << 20


def test_two_cpus_share_one_pmd_aligned_allocation_of_two_1m_units():
    # a Debian 6.1 x86-64 kernel: "percpu: Embedded 61 pages/cpu s212992 r8192 d28672 u1048576"
    info = build_alloc_info(212992, 2 * MiB, [(0, 2)])
    assert info.size_sum == 61 * 4096
    assert info.unit_size == MiB
    assert info.groups == ((0, 2),)


def test_page_atom_gives_units_of_the_used_size():
    info = build_alloc_info(212992, 4096, [(0, 4)])
    assert info.unit_size == info.size_sum


def test_embed_reserves_the_used_part_of_each_unit_and_frees_the_rest():
    memblock = Memblock([MemRange(0, 64 * MiB)])
    info = embed_first_chunk(memblock, 212992, 2 * MiB, 2, lambda cpu: 0)
    (chunk_a, chunk_b) = [r for r in memblock.reserved if r.what == "percpu first chunk"]
    base = chunk_a.start
    assert base % (2 * MiB) == 0 and base == 62 * MiB  # top-down, atom-aligned
    assert chunk_a.end - chunk_a.start == info.size_sum
    assert chunk_b.start == base + info.unit_size and chunk_b.end - chunk_b.start == info.size_sum


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 600_000), st.integers(1, 64), st.sampled_from([4096, 2 * MiB]))
def test_units_hold_the_chunk_and_waste_at_most_a_third(static, cpus, atom):
    info = build_alloc_info(static, atom, [(0, cpus)])
    assert info.unit_size >= info.size_sum >= static
    assert info.unit_size % 4096 == 0
    units = sum(n for _, n in info.groups)
    assert cpus <= units and units - cpus <= cpus // 3
