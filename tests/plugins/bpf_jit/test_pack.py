"""bpf_prog_pack accounting and costs (kernel/bpf/core.c 6.1 l.833-1031)."""

from __future__ import annotations

import pytest

from permalloc.plugins.bpf_jit.ops import load_program, state, unload_program
from permalloc.plugins.bpf_jit.pack import ChunkMap
from permalloc.plugins.bpf_jit.sizes import ebpf_insns_for_bytes, pack_alloc_size


def _pack(m):
    return state(m).allocator.pack


def _booted(m, key: str) -> int:
    """The pack's accounting after boot: the kernel's ptp classifier program lives in a pack."""
    return state(m).boot_report.get(key, 0)


def test_chunk_map_first_fit_and_merge():
    cm = ChunkMap(16)
    assert cm.find(4) == 0
    cm.set(0, 4)
    cm.set(4, 4)
    cm.set(8, 4)
    cm.clear(4, 4)
    assert cm.find(4) == 4  # the lowest fit, like bitmap_find_next_zero_area
    assert cm.find(5) is None  # free runs 4..8 and 12..16 are apart
    cm.clear(0, 4)
    cm.clear(8, 4)
    assert cm.empty and cm.find(16) == 0  # free runs merged back into one
    with pytest.raises(ValueError):
        cm.clear(0, 1)


def test_pack_accounting(make):
    m = make("pack")
    assert _booted(m, "packs_created") == 1 and _booted(m, "packs_live") == 1  # made at boot
    copies = state(m).allocator.text_copies
    for i in range(3):
        load_program(m, f"p{i}", 64)  # image 317 B -> 384 B -> 6 chunks of 64 B
    rep = _pack(m).report()
    assert rep["packs_created"] == 1 and rep["packs_live"] == 1  # they share the boot's pack
    assert rep["chunks_used"] == _booted(m, "chunks_used") + 3 * 6
    assert rep["chunks_total"] == rep["chunks_per_pack"] == (2 << 20) // 64
    assert state(m).allocator.text_copies - copies == 3  # bpf_arch_text_copy once per load
    for i in range(3):
        unload_program(m, f"p{i}")
    rep = _pack(m).report()
    assert rep["int3_fills"] == 3 and rep["int3_bytes"] == 3 * 384  # text_poke_set(0xcc) per free
    assert rep["packs_freed"] == 0 and rep["packs_live"] == 1  # the kernel's program keeps it
    assert m.teardown() == []


def test_a_pack_is_freed_when_its_bitmap_is_empty(make):
    m = make("pack", memory=2 << 30)
    big = ebpf_insns_for_bytes(1_200_000)  # more than what is left of the boot's pack
    load_program(m, "x", big)
    load_program(m, "y", big)
    assert _pack(m).report()["packs_created"] == 2
    unload_program(m, "y")
    rep = _pack(m).report()
    assert rep["packs_freed"] == 1 and rep["packs_live"] == 1
    assert m.teardown() == []


def test_freed_chunks_are_reused_first_fit(make):
    m = make("pack")
    a = load_program(m, "a", 64)
    load_program(m, "b", 64)
    unload_program(m, "a")
    c = load_program(m, "c", 10)  # 2 chunks: fits in a's 6 freed chunks at the lowest position
    assert c.addr == a.addr
    assert _pack(m).report()["packs_live"] == 1


def test_second_pack_only_when_full(make):
    m = make("pack", memory=2 << 30)
    big = ebpf_insns_for_bytes(1_200_000)  # > half a 2 MiB pack each
    load_program(m, "x", big)
    load_program(m, "y", big)
    assert _pack(m).report()["packs_created"] == 2
    load_program(m, "z", 64)  # fits in the first pack's tail
    assert _pack(m).report()["packs_created"] == 2


def test_pack_spans_every_numa_node(make):
    m = make("pack", memory=2 << 30, numa_nodes=2)
    big = ebpf_insns_for_bytes(1_200_000)
    load_program(m, "x", big)
    load_program(m, "y", big)
    rep = _pack(m).report()
    assert rep["pack_size"] == 4 << 20  # SZ_2M * num_possible_nodes()
    assert rep["chunks_per_pack"] == 65536 and rep["packs_created"] == 1


def test_oversized_program_gets_its_own_area(make, delta):
    m = make("pack", memory=2 << 30)
    p = load_program(m, "huge", ebpf_insns_for_bytes(2_200_000))
    assert p.size > 2 << 20
    rep = _pack(m).report()
    assert rep["oversized_allocs"] == 1 and rep["packs_created"] == 1  # the boot's only
    with delta(m) as d:
        unload_program(m, "huge")
    assert d["text_pokes"] == 0  # module_memfree directly, no int3 fill (core 6.1 l.1000-1002)
    assert _pack(m).report()["oversized_live"] == 0
    assert m.teardown() == []


def test_pack_costs_generic_61(make, delta):
    m = make("pack", memory=2 << 30, arch="generic")
    load_program(m, "x", ebpf_insns_for_bytes(1_200_000))  # fills the boot's pack
    with delta(m) as d:
        load_program(m, "p0", ebpf_insns_for_bytes(1_200_000))
    # alloc_new_pack: set_memory_ro changes the direct-map alias (cpa_process_alias forces a
    # full flush) and set_memory_x covers 512 > 33 pages: two full flushes, plus one per
    # intact 2 MiB direct-map leaf its 512 pages are in (a whole one is kept); then
    # bpf_arch_text_copy through the generic arch's fixmap patcher flushes the slot once per
    # page it maps (every write is one page here)
    assert d["shootdowns"] == 2 + d["directmap_splits_2m"] + d["text_pokes"]
    assert -(-1_200_000 // 4096) <= d["text_pokes"] <= -(-1_200_000 // 4096) + 1
    assert _pack(m).report()["packs_created"] == 2
    unload_program(m, "p0")
    unload_program(m, "x")
    for i in range(1, 50):
        with delta(m) as d:
            load_program(m, f"p{i}", 64)
        # once a pack exists: one copy through the fixmap (384 B, on one page or two), one
        # slot flush per page mapped
        assert d["shootdowns"] == d["text_pokes"] and 1 <= d["text_pokes"] <= 2
        assert d["sync_ipis"] == 0 and d["local_flushes"] == 0
    with delta(m) as d:
        unload_program(m, "p1")
    assert d["shootdowns"] == d["text_pokes"] >= 1  # bpf_arch_text_invalidate: the same
    for i in range(2, 50):
        unload_program(m, f"p{i}")
    assert _pack(m).report()["packs_freed"] == 1  # the second pack; the boot's stays
    assert m.teardown() == []


def test_pack_costs_generic_612(make, delta):
    m = make("pack", kernel="6.12", memory=2 << 30, arch="generic")
    load_program(m, "x", ebpf_insns_for_bytes(1_200_000))  # fills the boot's pack
    with delta(m) as d:
        load_program(m, "p0", ebpf_insns_for_bytes(1_200_000))
    # one set_memory_rox (core 6.12 l.945): one forced full flush, plus the alias's splits,
    # plus the fixmap slot flush of each page the copy wrote
    assert d["shootdowns"] == 1 + d["directmap_splits_2m"] + d["text_pokes"]


def test_pack_loads_on_x86_flush_locally(make, delta):
    m = make("pack", memory=2 << 30, arch="x86")
    load_program(m, "p0", 64)
    for i in range(1, 20):
        with delta(m) as d:
            load_program(m, f"p{i}", 64)
        # once a pack exists: text_poke_copy only, local flushes, no IPI
        assert d["shootdowns"] == 0 and d["sync_ipis"] == 0
        assert d["text_pokes"] == 1 and d["local_flushes"] == 1  # 384 B within two pages
    with delta(m) as d:
        unload_program(m, "p1")
    assert d["shootdowns"] == 0 and d["text_pokes"] == 1  # text_poke_set: local
    for i in [0] + list(range(2, 20)):
        unload_program(m, f"p{i}")
    assert m.teardown() == []


def test_pred_flush_ibpb_for_classic_in_dirty_pack(make):
    m = make("pack", options={"bpf_jit.pred_flush": True})
    load_program(m, "e0", 64)  # a new pack is dirty (core 6.1 l.905)
    assert _pack(m).stats.ibpb_rounds == 0  # eBPF never flushes
    load_program(m, "s0", 40, kind="seccomp")
    assert _pack(m).stats.ibpb_rounds == 1  # cBPF into a dirty pack: IBPB, all packs clean
    load_program(m, "s1", 40, kind="seccomp")
    assert _pack(m).stats.ibpb_rounds == 1
    unload_program(m, "e0")  # a free dirties the pack (l.1022-1023)
    load_program(m, "s2", 40, kind="seccomp")
    assert _pack(m).stats.ibpb_rounds == 2


def test_pack_size_of_a_seccomp_filter():
    # the Docker-sized filter: 11240 B image -> round_up(11240 + 24, 64) = 11264 B = 176 chunks
    from permalloc.plugins.bpf_jit.sizes import seccomp_image

    assert pack_alloc_size(seccomp_image(952).image) == 11264
