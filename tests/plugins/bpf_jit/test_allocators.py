"""The per-program and perm-alloc allocators, and the choice by policy.bpf_allocator."""

from __future__ import annotations

import pytest

from permalloc import Machine, MachineSpec, Perm, PermallocError, PolicySpec, hookimpl
from permalloc.model.pages import PMD_SIZE
from permalloc.plugins.bpf_jit.allocators import ALLOCATORS
from permalloc.plugins.bpf_jit.ops import load_program, state, unload_program
from permalloc.testing import fresh_frontier


def test_per_program_flushes_and_splits_61(make, delta):
    m = make("per-program")
    fresh_frontier(m, 2)  # the next pages start an intact 2 MiB leaf
    before_4k = m.gauges()["directmap_4k_bytes"]
    with delta(m) as d:
        p = load_program(m, "p0", 64)
    assert p.size == 4096  # one page: round_up(317 + 8 + 128, PAGE_SIZE)
    # set_memory_ro: the direct-map alias is split (flush_tlb_all) and made RO
    # (force_flush_all: a full flush); set_memory_x: NX only, 1 page <= 33: a range flush
    assert d["directmap_splits_2m"] == 1
    assert d["shootdowns"] == 3
    assert m.gauges()["directmap_4k_bytes"] - before_4k == PMD_SIZE  # DirectMap4k grew by 2 MiB
    with delta(m) as d:
        load_program(m, "p1", 64)
    assert d["directmap_splits_2m"] == 0  # the next page is in the pageblock already split
    assert d["shootdowns"] == 2
    with delta(m) as d:
        unload_program(m, "p0")
    # vfree with VM_FLUSH_RESET_PERMS: one flush over lazy area + direct map (vm_reset_perms)
    assert d["shootdowns"] == 1
    assert m.gauges()["directmap_4k_bytes"] - before_4k == PMD_SIZE  # splits are never undone
    assert m.teardown() == []


def test_per_program_612_uses_set_memory_rox(make, delta):
    m = make("per-program", kernel="6.12")
    fresh_frontier(m, 1)
    with delta(m) as d:
        load_program(m, "p0", 64)
    # bpf_jit_binary_lock_ro = set_memory_rox (filter.h 6.12 l.1079): the split flush plus
    # one forced full flush
    assert d["directmap_splits_2m"] == 1 and d["shootdowns"] == 2


def test_per_program_every_load_flushes(make, delta):
    m = make("per-program")
    for i in range(20):
        with delta(m) as d:
            load_program(m, f"p{i}", 64)
        assert d["shootdowns"] >= 2  # set_memory_ro and set_memory_x each flush every CPU


def test_perm_alloc_goes_through_the_contract(make, delta):
    m = make("perm-alloc")
    fresh_frontier(m, 1)
    with delta(m) as d:
        p = load_program(m, "p0", 64)
    assert p.handle in m.perm.live.values()
    assert p.handle.perm == Perm.RX
    # the generic arch answers perm_alloc with vmalloc + set_memory_ro + set_memory_x
    assert d["shootdowns"] == 3 and d["directmap_splits_2m"] == 1
    unload_program(m, "p0")
    assert [a.id for a in m.perm.live.values()] == [state(m).programs["ptp_classifier"].handle.id]  # the kernel's own
    assert m.teardown() == []


class LifetimeRecorder:
    """Sees every permalloc_alloc first (tryfirst) and passes it on."""

    name = "lifetime-recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange, lifetime):
        self.seen.append((int(perm), lifetime))


def test_perm_alloc_asks_for_short_lived_memory():
    recorder = LifetimeRecorder()
    m = Machine(MachineSpec(arch="generic", cpus=4, memory=1 << 30),
                PolicySpec(name="test", bpf_allocator="perm-alloc"), plugins=[recorder], strict=True)
    programs = [load_program(m, f"p{i}", 64 << i) for i in range(3)]
    # the kernel's own program at boot (ptp_classifier) and the three loads
    assert recorder.seen == [(int(Perm.RX), "short")] * 4
    assert [p.handle.lifetime for p in programs] == ["short"] * 3
    for i in range(3):
        unload_program(m, f"p{i}")
    assert m.teardown() == []


def test_unknown_allocator_lists_the_known_ones(make):
    with pytest.raises(PermallocError) as err:
        make("slab-of-dreams")  # the kernel JITs its own first program at boot
    message = str(err.value)
    assert "slab-of-dreams" in message
    for name in ALLOCATORS:
        assert repr(name) in message


def test_teardown_frees_what_is_still_loaded(make):
    for allocator in ALLOCATORS:
        m = make(allocator)
        for i in range(5):
            load_program(m, f"p{i}", 100 + i)
        load_program(m, "s", 952, kind="seccomp")
        assert m.teardown() == []  # strict machine: the invariants would raise on a leak
        assert list(state(m).programs) == state(m).boot_programs  # only what the kernel keeps


def test_image_start_is_inside_the_allocation(make):
    for allocator in ALLOCATORS:
        m = make(allocator)
        for i in range(30):
            p = load_program(m, f"p{i}", 64)
            assert p.addr + 8 <= p.image_addr
            assert p.image_addr + p.image.image <= p.addr + p.size
