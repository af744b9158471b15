from __future__ import annotations

from permalloc import Machine, MachineSpec, Perm
from permalloc.model.pages import PAGE_SIZE


def _machine_with_text(pages: int = 4):
    m = Machine(MachineSpec(arch="x86", cpus=16, memory=1 << 30))
    area = m.vmalloc.vmalloc(pages * PAGE_SIZE, "module", Perm.RX)
    seen: list = []
    m.trace = seen.append
    return m, area, seen


def test_text_poke_is_local_only():
    m, area, seen = _machine_with_text()
    m.text.poke(area.addr + 10, 5)
    assert [e.kind for e in seen] == ["text_poke"]  # the write and its poking_mm flush
    c = m.metrics.counters
    assert c["local_flushes"] == 1 and c["ipis"] == 0 and c["poke_bytes"] == 5


def test_text_poke_copy_chunks_by_two_pages():
    m, area, seen = _machine_with_text(pages=4)
    m.text.copy(area.addr + 100, 4 * PAGE_SIZE - 100)
    # chunks: 8192-100, then 8192 - ... : ceil((100 + len) / 8192) = 2 calls
    assert sum(e.kind == "text_poke" for e in seen) == 2
    assert m.metrics.counters["poke_bytes"] == 4 * PAGE_SIZE - 100


def test_text_poke_bp_batch_three_sync_rounds():
    m, area, seen = _machine_with_text()
    sites = [(area.addr + 64 * i, 5) for i in range(10)]
    m.text.live(sites)
    c = m.metrics.counters
    assert c["sync_ipis"] == 3  # int3, tail bytes, first byte: text_poke_bp_batch
    assert c["text_pokes"] == 30  # three pokes per 5-byte site
    assert c["ipis"] == 3 * 15
    assert c["shootdowns"] == 0
