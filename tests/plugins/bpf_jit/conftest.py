"""Helpers for the BPF JIT tests: small deterministic machines with a chosen allocator.

Exact counts are asserted on the generic arch on freshly booted machines: the page allocator
is deterministic (the same spec gives the same pages), so every split is predictable.
"""

from __future__ import annotations

import pytest

from permalloc import Machine, MachineSpec, PolicySpec


def bpf_machine(allocator: str = "pack", kernel: str = "6.1", arch: str = "generic", strict: bool = True,
                options: dict | None = None, **spec) -> Machine:
    spec.setdefault("cpus", 4)
    spec.setdefault("memory", 1 << 30)
    policy = PolicySpec(name="test", kernel=kernel, bpf_allocator=allocator, options=options or {})
    return Machine(MachineSpec(arch=arch, **spec), policy, strict=strict)


class Delta:
    """Counter changes over a block of work: ``with Delta(m) as d: ...; d["shootdowns"]``."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.values: dict[str, float] = {}

    def __enter__(self) -> Delta:
        self.before = dict(self.m.metrics.counters)
        return self

    def __exit__(self, *exc: object) -> None:
        self.values = {k: v - self.before[k] for k, v in self.m.metrics.counters.items()}

    def __getitem__(self, key: str) -> float:
        return self.values[key]


@pytest.fixture
def delta():
    """``delta(machine)``: a context manager recording counter changes."""
    return Delta


@pytest.fixture
def make():
    """``make(allocator, kernel=..., **spec)``: a strict machine for BPF tests."""
    return bpf_machine
