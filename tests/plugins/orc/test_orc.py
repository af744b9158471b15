"""ORC: unwind_module_init rewrites both tables of real modules, in place, before formation."""

from __future__ import annotations

from permalloc.plugins.module_loader.patching import section_span
from permalloc.plugins.module_loader.workload import MemClass


def test_sort_rewrites_both_tables_of_xfs(patch_machine, load, reports):
    m = patch_machine()
    seen = []
    m.trace = seen.append
    (xfs,) = load(m, "xfs")
    n = xfs.info.table(".orc_unwind_ip")
    assert n == 30263
    r = reports(xfs, "orc", "finalize")
    assert (r["writes"], r["bytes"], r["entries"]) == (2, 4 * n + 6 * n, n)
    # 6.1 without a staging buffer: plain stores into the final (still RW) rodata, no flush
    for name, size in ((".orc_unwind_ip", 4), (".orc_unwind", 6)):
        cls, offset, _ = section_span(xfs.info, name)
        assert cls == MemClass.RODATA
        addr = xfs.address(cls, offset)
        assert any(e.kind == "store" and e.addr == addr and e.n == size * n for e in seen)
    assert r["text_pokes"] == r["sync_ipis"] == r["local_flushes"] == r["shootdowns"] == 0


def test_module_without_orc_reports_nothing(patch_machine, load, reports):
    m = patch_machine()
    (crc16,) = load(m, "crc16")
    assert reports(crc16, "orc", "finalize")["writes"] == 2  # crc16 has 2 entries
    assert reports(crc16, "orc", "coming") == {}
