"""Machine-level properties: cost independent of RAM and CPUs, determinism."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from permalloc import Machine, MachineSpec, Perm, hookimpl, watching
from permalloc.model.pages import PAGE_SIZE


def _churn(machine: Machine, n: int = 300) -> None:
    live = []
    for i in range(n):
        a = machine.perm.alloc(16384, Perm.RX if i % 3 else Perm.R)
        machine.perm.write(a, 0, 16384)
        machine.perm.finish(a)
        live.append(a)
        if len(live) > 16:
            machine.perm.free(live.pop(0))
    for a in live:
        machine.perm.free(a)


def _state_size(m: Machine) -> int:
    # 1 GiB splits are checked on their own below: a 16 GiB machine runs out of 1 GiB leaves
    # (16) while a 4 TiB one does not, so they cannot be compared between the two machines.
    buddy = sum(len(z._free) + sum(len(fl.segments) for area in z.free_area for fl in area) for z in m.phys.zones)
    return (buddy + len(m.phys._allocated) + len(m.phys._pcp) + len(m.directmap._perm) + len(m.directmap.split_2m)
            + len(m.tlb) + len(m.pagetables))


def test_model_state_does_not_grow_with_ram_or_cpus(arch):
    small = Machine(MachineSpec(arch=arch, memory="16G", cpus=8, seed=1))
    huge = Machine(MachineSpec(arch=arch, memory="4T", cpus=512, seed=1))
    for m in (small, huge):
        seen = []
        m.trace = seen.append
        m.booted_size = _state_size(m)
        _churn(m)
        m.events_seen = len(seen)
    # the same work emits comparable numbers of events and adds comparable state (boot leaves
    # one free hole per CPU, the tail of its per-CPU unit, as pcpu_embed_first_chunk does)
    assert huge.events_seen <= small.events_seen * 1.2 + 50
    assert _state_size(huge) - huge.booted_size <= (_state_size(small) - small.booted_size) * 1.5 + 64


def vmalloced_hash_pages(m: Machine) -> int:
    """Pages of the large system hashes boot vmalloc'd (MAX_ORDER or more: Mount-cache at
    4 TiB, futex at 512 CPUs): the kernel holds them page by page, and so does the model
    (two entries each where 2 MiB leaves are not used: the page and its PTE)."""
    return sum(size // PAGE_SIZE for _name, size, how in m.system_hashes if how == "vmalloc")


def test_booted_state_does_not_grow_with_ram(arch):
    small = Machine(MachineSpec(arch=arch, memory="16G", cpus=8, seed=1))
    huge = Machine(MachineSpec(arch=arch, memory="4T", cpus=8, seed=1))
    assert _state_size(huge) <= _state_size(small) * 1.5 + 64 + 2 * vmalloced_hash_pages(huge)
    # each 1 GiB split is caused by a change at 2 MiB granularity: bounded by the work, not RAM
    assert len(huge.directmap.split_1g) <= len(huge.directmap.split_2m) + 64


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), cpus=st.integers(1, 64), state=st.sampled_from(["fresh", "pagecache-50"]))
def test_same_seed_same_metrics(seed, cpus, state):
    spec = MachineSpec(arch=os.environ.get("PERMALLOC_ARCH", "generic"), memory="1G", cpus=cpus, seed=seed,
                       memory_state=state)
    runs = []
    for _ in range(2):
        m = Machine(spec)
        _churn(m, 40)
        runs.append(m.metrics.totals(m.gauges()))
    assert runs[0] == runs[1]


class _Seen:
    def __init__(self) -> None:
        self.all: list[str] = []
        self.maps: list[str] = []

    @hookimpl
    def permalloc_event(self, event):  # no mark: every event
        self.all.append(event.kind)


def test_an_observer_marked_watching_sees_only_its_kinds():
    from permalloc.model import events as ev

    seen = _Seen()

    class Maps:
        @hookimpl
        @watching(ev.MAP, ev.UNMAP)
        def permalloc_event(self, event):
            seen.maps.append(event.kind)

    m = Machine(MachineSpec(memory="1G"), plugins=[seen, Maps()])
    a = m.perm.alloc(3 * PAGE_SIZE, Perm.RX)
    m.perm.finish(a)
    m.perm.free(a)
    assert seen.maps and set(seen.maps) <= {ev.MAP, ev.UNMAP}
    assert seen.maps == [kind for kind in seen.all if kind in (ev.MAP, ev.UNMAP)]
    assert set(seen.all) > {ev.MAP, ev.UNMAP}  # the unmarked observer saw the other kinds too
