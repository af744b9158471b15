"""The fixmap patcher (arm64's patching.c), on the generic arch whose flushes are IPI rounds."""

from __future__ import annotations

from permalloc import Machine, MachineSpec, Perm
from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.model.pages import PAGE_SIZE


def _machine(cpus: int = 8):
    m = Machine(MachineSpec(arch="generic", cpus=cpus, memory=1 << 30))
    area = m.vmalloc.vmalloc(4 * PAGE_SIZE, "module", Perm.RX)
    seen: list = []
    m.trace = seen.append
    return m, area, seen


def test_generic_arch_patches_through_the_fixmap():
    m, _area, _seen = _machine()
    assert type(m.text) is TextPatcher


def test_each_write_maps_the_fixmap_and_flushes_its_slot():
    m, area, seen = _machine()
    before = dict(m.metrics.counters)
    m.text.poke(area.addr + 8, 4)  # one instruction
    assert [e.kind for e in seen] == ["text_write", "flush_range"]
    c = m.metrics.counters
    assert c["text_pokes"] - before["text_pokes"] == 1
    assert c["poke_bytes"] - before["poke_bytes"] == 4
    assert c["shootdowns"] - before["shootdowns"] == 1  # clear_fixmap -> flush_tlb_kernel_range
    assert c["ipis"] - before["ipis"] == 7  # delivered as an IPI round on this arch


def test_a_copy_maps_each_page_once():
    m, area, _seen = _machine()
    before = m.metrics.counters["shootdowns"]
    m.text.copy(area.addr + PAGE_SIZE - 16, 2 * PAGE_SIZE + 32)  # touches 4 pages
    assert m.metrics.counters["shootdowns"] - before == 4
    assert m.metrics.counters["text_pokes"] >= 4


def test_live_patching_stops_the_machine_once():
    m, area, seen = _machine(cpus=4)
    m.text.live([(area.addr, 4), (area.addr + 64, 4), (area.addr + PAGE_SIZE, 4)])
    kinds = [e.kind for e in seen]
    assert kinds[0] == "stop_machine" and kinds.count("stop_machine") == 1
    assert m.metrics.counters["sync_ipis"] == 1
    assert m.metrics.counters["text_pokes"] == 3


def test_queue_syncs_only_when_asked():
    m, area, _seen = _machine()
    sites = [(area.addr + 4 * i, 4) for i in range(10)]
    assert m.text.queue(sites) == 1
    assert m.metrics.counters["sync_ipis"] == 0  # ftrace-style: nosync writes
    m.text.queue(sites, wait=True)
    assert m.metrics.counters["sync_ipis"] == 1  # jump labels: kick_all_cpus_sync
    assert m.metrics.counters["text_pokes"] == 20
