"""Shared helpers of the x86 tests: the 16 combinations of the RFC's four switches."""

from __future__ import annotations

import itertools

import pytest

from permalloc import Machine, MachineSpec, PolicySpec
from permalloc.plugin.policies import BUILTIN_POLICIES
from permalloc.testing import fresh_frontier  # noqa: F401 (the x86 tests import it from here)

SWITCHES = ("block_cache", "text_poke", "live_cache", "huge")


def policy_for(block_cache: bool = False, text_poke: bool = False, live_cache: bool = False,
               huge: bool = False, kernel: str = "6.1") -> PolicySpec:
    bits = "".join("1" if on else "0" for on in (block_cache, text_poke, live_cache, huge))
    return PolicySpec(
        name=f"x86-{bits}-k{kernel}",
        kernel=kernel,
        directmap="unmapped-block-cache" if block_cache else "split-on-demand",
        text_loading="text_poke" if text_poke else "set_memory",
        live_cache=live_cache,
        huge_mappings=huge,
    )


ALL_POLICIES = [policy_for(*combo) for combo in itertools.product((False, True), repeat=4)]

ROX_CACHE = next(p for p in BUILTIN_POLICIES if p.name == "rox-cache")
# the ROX cache with a clean that frees regions the VM_FLUSH_RESET_PERMS way (a what-if)
ROX_CACHE_RESET_PERMS = ROX_CACHE.model_copy(update={
    "name": "rox-cache-reset-perms", "options": {"x86.rox_cache_clean": "reset-perms"},
})


def x86(policy: PolicySpec | None = None, strict: bool = True, **spec) -> Machine:
    """A small deterministic x86 machine: contiguous pages unless the test asks otherwise."""
    spec.setdefault("memory", 4 << 30)
    spec.setdefault("cpus", 8)
    return Machine(MachineSpec(arch="x86", **spec), policy or policy_for(), strict=strict)


@pytest.fixture
def counters():
    """Deltas of the machine's counters around a block: ``with counters(m) as d: ...``."""
    import contextlib

    @contextlib.contextmanager
    def measure(machine: Machine):
        before = dict(machine.metrics.counters)
        delta: dict[str, float] = {}
        yield delta
        for key, value in machine.metrics.counters.items():
            delta[key] = value - before[key]

    return measure


def load(m: Machine, size: int, perm: str = "RX"):
    """alloc + write the whole allocation + finish: one load through the contract."""
    a = m.perm.alloc(size, perm)
    m.perm.write(a, 0, size)
    m.perm.finish(a)
    return a


def page_frames(m: Machine, a) -> list[int]:
    """The physical pages behind allocation ``a``."""
    mapping, index = m.pagetables.lookup(a.addr)
    return mapping.pfns[index : index + -(-a.size // 4096)]
