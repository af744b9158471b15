"""The shared contract suite on x86, under every combination of the RFC's four switches."""

from __future__ import annotations

import pytest

from permalloc import Machine, MachineSpec, PermallocError, PolicySpec, hookimpl
from permalloc.testing import ContractSuite

from .conftest import ALL_POLICIES, ROX_CACHE_RESET_PERMS, x86


class TestX86Contract(ContractSuite):
    arch = "x86"
    # strict mode (poke_keeps_wx): text_poke never opens a W+X window. The ROX cache runs with
    # its what-if clean (x86.rox_cache_clean=reset-perms): upstream's execmem_cache_clean
    # leaves a W+X alias when it gives a region back, which the strict suite would (rightly)
    # refuse; test_roxcache.py pins that window down.
    policies = [*ALL_POLICIES, ROX_CACHE_RESET_PERMS]


# huge_pack_by_lifetime on the four combinations with huge_mappings that differ most: packs
# per (permission, lifetime), with and without the block cache, text_poke and the live cache
BY_LIFETIME = [p.model_copy(update={"name": p.name + "-by-lifetime", "huge_pack_by_lifetime": True})
               for p in ALL_POLICIES if p.huge_mappings and p.name[4:6] in ("00", "11")]


class TestX86ByLifetimeContract(ContractSuite):
    arch = "x86"
    policies = BY_LIFETIME


def test_suite_runs_all_sixteen_policies_and_the_rox_cache():
    assert len({p.name for p in ALL_POLICIES}) == 16
    assert ROX_CACHE_RESET_PERMS.rox_cache and ROX_CACHE_RESET_PERMS.kernel == "7.3"


@pytest.mark.parametrize("kernel", ["6.12"])
@pytest.mark.parametrize("index", [0, 5, 10, 15])
def test_contract_lifecycle_on_612(kernel: str, index: int):
    # The 6.12 code paths (set_memory_rox, alias rules) keep W^X and leak nothing either.
    policy = ALL_POLICIES[index].model_copy(update={"kernel": kernel, "name": ALL_POLICIES[index].name + "-612"})
    m: Machine = x86(policy)
    for perm in ("RX", "R", "RW"):
        a = m.perm.alloc(20000, perm)
        m.perm.write(a, 0, 20000)
        m.perm.finish(a)
        m.perm.poke(a, 8, 5)
        m.perm.change(a, "R")
        m.perm.free(a)
    assert m.metrics.counters["wx_violations"] == 0
    assert m.teardown() == []


def test_rox_cache_is_refused_where_the_arch_lacks_it_or_with_rfc_switches():
    # generic has no ROX cache: refused, never silently ignored
    with pytest.raises(PermallocError, match="rox_cache"):
        Machine(MachineSpec(arch="generic"), PolicySpec(name="rox", rox_cache=True))
    # x86 has it, but it models upstream execmem: no mixing with the RFC's switches
    with pytest.raises(PermallocError, match="not combined with the RFC's live_cache"):
        x86(PolicySpec(name="rox", rox_cache=True, live_cache=True))
    with pytest.raises(PermallocError, match="x86.rox_cache_clean"):
        x86(PolicySpec(name="rox", rox_cache=True, options={"x86.rox_cache_clean": "never"}))


class _LateConsumer:
    """Frees its allocation in its own teardown, like the module loader and the BPF JIT."""

    name = "late-consumer"

    def __init__(self) -> None:
        self.alloc = None

    @hookimpl
    def permalloc_machine_teardown(self, machine: Machine) -> list[str]:
        machine.perm.free(self.alloc)
        return []


@pytest.mark.parametrize("index", [9, 15], ids=lambda i: ALL_POLICIES[i].name)
def test_frees_after_our_teardown_bypass_the_caches(index: int):
    # Consumers (module loader, BPF JIT) unload in their own permalloc_machine_teardown,
    # which pluggy may call after x86's: those late frees must not strand pages in a cache.
    late = _LateConsumer()
    m = Machine(MachineSpec(arch="x86", memory="4G"), ALL_POLICIES[index],
                plugins=[late], strict=True)
    # pluggy calls later-registered plain impls first: re-register x86 after the consumer,
    # as the entry points register "bpf_jit" and "module_loader" before "x86"
    from permalloc.arches import x86 as arch

    m.pm.unregister(arch)
    m.pm.register(arch, name="x86")
    late.alloc = m.perm.alloc(16384, "RX")
    m.perm.write(late.alloc, 0, 16384)
    m.perm.finish(late.alloc)
    assert m.teardown() == []  # strict: the invariants would raise on a leaked page
