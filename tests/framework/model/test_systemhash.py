"""Large system hashes: alloc_large_system_hash's sizing, and the tables a booted machine holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from permalloc import Machine, MachineSpec
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SIZE
from permalloc.model.systemhash import SYSTEM_HASHES_6_1, kernel_pages, sizes
from permalloc.plugin.policy import DEFAULT_POLICY

GIB_PAGES = (1 << 30) // PAGE_SIZE


def _entries(kernel: int, cpus: int = 2) -> dict[str, int]:
    return {t.name: size // t.bucketsize for t, size in sizes(SYSTEM_HASHES_6_1, kernel, kernel, cpus)}


def test_a_2g_machine_gets_the_tables_its_dmesg_prints():
    # "TCP established hash table entries: 16384 (order: 5, 131072 bytes, linear)" and
    # "TCP bind ... 16384 (order: 7, 524288 bytes)" on a 2 GiB guest: one slot per 128 KiB of low memory
    kernel, _ = kernel_pages([(4095, 3998), (520_192, 520_160)])
    found = _entries(kernel)
    assert found["TCP established"] == 16384 and found["TCP bind"] == 16384
    assert found["UDP"] == 1024 and found["Mount-cache"] == 4096 and found["futex"] == 512


@given(st.integers(1, 4096), st.integers(1, 512))
def test_entries_are_powers_of_two_within_their_limits(gib, cpus):
    found = _entries(gib * GIB_PAGES, cpus)
    for table in SYSTEM_HASHES_6_1:
        n = found[table.name]
        assert n & (n - 1) == 0
        if table.high_limit:
            assert table.low_limit <= n <= table.high_limit
    assert found["TCP bind"] == min(found["TCP established"], 64 * 1024)
    assert found["futex"] == 1 << (256 * cpus - 1).bit_length()


def test_memory_scaled_tables_grow_with_memory_up_to_their_limit():
    small, large = _entries(4 * GIB_PAGES), _entries(8 * GIB_PAGES)
    assert large["TCP established"] == 2 * small["TCP established"]
    assert large["Mount-cache"] == 2 * small["Mount-cache"]
    assert _entries(1024 * GIB_PAGES)["TCP established"] == 512 * 1024  # high_limit


def test_past_64g_the_scale_adapts():
    # ADAPT_SCALE: tables without a high limit grow 4x slower past 64 GiB
    assert _entries(256 * GIB_PAGES)["Mount-cache"] == 2 * _entries(64 * GIB_PAGES)["Mount-cache"]


def _hash_allocs(spec: MachineSpec) -> dict[str, int]:
    seen: dict[str, int] = {}
    original = Machine.emit

    def emit(self, kind, n=1, *args, **kwargs):
        source = kwargs.get("source", args[2] if len(args) > 2 else "")
        if kind == ev.PAGE_ALLOC and source.startswith("alloc_large_system_hash/"):
            seen[source.split("/", 1)[1]] = n
        return original(self, kind, n, *args, **kwargs)

    Machine.emit = emit
    try:
        Machine(spec, DEFAULT_POLICY)
    finally:
        Machine.emit = original
    return seen


def test_boot_allocates_each_table_from_the_page_allocator(arch):
    found = _hash_allocs(MachineSpec(arch=arch, memory="2G", cpus=2))
    assert list(found) == [t.name for t in SYSTEM_HASHES_6_1]
    assert found["TCP bind"] == 128 and found["MPTCP token"] == 16  # orders 7 and 4 (48 KiB: 4 pages freed)


def test_with_two_nodes_the_tables_are_not_from_the_page_allocator(arch):
    assert _hash_allocs(MachineSpec(arch=arch, memory="4G", cpus=4, numa_nodes=2)) == {}
