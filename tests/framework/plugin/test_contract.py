"""The perm_alloc contract's ``lifetime`` hint (framework/plugin/contract.py)."""

from __future__ import annotations

import pytest

from permalloc import ContractError, Machine, MachineSpec, hookimpl
from permalloc.plugin.contract import LIFETIMES


class Recorder:
    """Sees every permalloc_alloc first and passes it on (returns None)."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange, lifetime):
        self.seen.append(lifetime)


class OldStyle:
    """An implementation written before ``lifetime`` existed: pluggy lets it leave it out."""

    name = "old-style"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange):
        self.calls += 1


def test_the_hook_receives_the_lifetime_and_the_allocation_keeps_it():
    recorder = Recorder()
    m = Machine(MachineSpec(memory="1G"), plugins=[recorder])
    allocs = [m.perm.alloc(4096, "RX", lifetime=lifetime) for lifetime in ("long", "short")]
    allocs.append(m.perm.alloc(4096, "RW"))  # the default
    assert recorder.seen == ["long", "short", "unknown"]
    assert [a.lifetime for a in allocs] == ["long", "short", "unknown"]
    assert LIFETIMES == ("long", "short", "unknown")


@pytest.mark.parametrize("lifetime", ["forever", "", "LONG", None])
def test_an_unknown_lifetime_is_refused_before_the_arch_is_asked(lifetime):
    recorder = Recorder()
    m = Machine(MachineSpec(memory="1G"), plugins=[recorder])
    with pytest.raises(ContractError, match=r"^alloc: lifetime must be one of 'long', 'short', 'unknown', got "):
        m.perm.alloc(4096, "RX", lifetime=lifetime)
    assert recorder.seen == [] and not m.perm.live


def test_an_implementation_without_the_lifetime_argument_still_works():
    old = OldStyle()
    m = Machine(MachineSpec(memory="1G"), plugins=[old])
    a = m.perm.alloc(8192, "RX", lifetime="long")
    m.perm.write(a, 0, 8192)
    m.perm.finish(a)
    m.perm.free(a)
    assert old.calls == 1 and a.lifetime == "long"
