"""The shared contract suite on the generic arch, plus its pre-RFC costs."""

from __future__ import annotations

from permalloc import Machine, MachineSpec, Perm
from permalloc.testing import ContractSuite


class TestGenericContract(ContractSuite):
    arch = "generic"
    poke_keeps_wx = False  # no text_poke: poke writes through a temporarily RW+X page


def _rx_load(cpus: int = 8) -> tuple[Machine, int]:
    """A 16 KiB RX load; returns the machine and how many intact 2 MiB direct-map leaves
    its pages sat in (the booted kernel may have split the one they share already)."""
    m = Machine(MachineSpec(arch="generic", cpus=cpus, memory=1 << 30))
    a = m.perm.alloc(16384, Perm.RX)
    mapping, index = m.pagetables.lookup(a.addr)
    pfns = mapping.pfns[index : index + 4]
    intact = len({pfn >> 9 for pfn in pfns if m.directmap.leaf_size(pfn) > 4096})
    m.perm.write(a, 0, 16384)
    m.perm.finish(a)
    return m, intact


def test_rx_finish_costs_follow_set_memory():
    # set_memory_ro: PTEs change and the direct-map alias is split (flush_tlb_all) and made
    # RO (cpa_process_alias forces a full flush); set_memory_x: NX-only, 4 pages <= 33,
    # one range flush. No lazy area is pending, so vm_unmap_aliases flushes nothing.
    m, intact = _rx_load()
    c = m.metrics.counters
    assert c["directmap_splits_2m"] == intact
    assert c["shootdowns"] == 2 + intact
    assert c["ipis"] == (2 + intact) * 7
    assert c["local_flushes"] == 0


def test_free_resets_direct_map_with_one_full_flush():
    m, _ = _rx_load()
    before = m.metrics.counters["shootdowns"]
    a = next(iter(m.perm.live.values()))
    dirty = m.directmap.nondefault_pages()
    m.perm.free(a)
    assert m.metrics.counters["shootdowns"] - before == 1  # vm_reset_perms: one flush
    assert m.directmap.nondefault_pages() == dirty - 4  # its four pages are RW again
    assert m.teardown() == []


def test_lazy_area_makes_next_set_memory_flush():
    m = Machine(MachineSpec(arch="generic", cpus=4, memory=1 << 30))
    seen = []
    m.trace = seen.append
    m.vmalloc.vfree(m.vmalloc.vmalloc(8192, "vmalloc", reset_perms=False))
    assert m.metrics.counters["shootdowns"] == 0 and m.vmalloc.pending_lazy == 1
    a = m.perm.alloc(4096, Perm.R)
    m.perm.finish(a)
    flushes = [e for e in seen if e.kind in ("flush_all", "flush_range")]
    assert flushes[0].source == "set_memory_ro/vm_unmap_aliases"
    assert m.vmalloc.pending_lazy == 0
