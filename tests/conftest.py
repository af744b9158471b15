"""Shared fixtures. Tests import the installed ``permalloc`` (tox installs the package);
``--import-mode=importlib`` keeps the raw folders off sys.path."""

from __future__ import annotations

import os

import pytest

from permalloc import Machine, MachineSpec, PolicySpec, hookimpl


@pytest.fixture
def arch() -> str:
    """The arch under test: tox sets PERMALLOC_ARCH per env (py3-generic, py3-x86, py3-arm64)."""
    return os.environ.get("PERMALLOC_ARCH", "generic")


@pytest.fixture
def flavour(arch: str) -> str:
    """Debian's name for the arch's bundled workloads (debian-6.1.0-57-<flavour>)."""
    return "arm64" if arch == "arm64" else "amd64"


@pytest.fixture
def make_machine(arch: str):
    def make(policy: PolicySpec | None = None, strict: bool = False, **spec) -> Machine:
        spec.setdefault("arch", arch)
        spec.setdefault("memory", 1 << 30)
        spec.setdefault("cpus", 4)
        return Machine(MachineSpec(**spec), policy, strict=strict)

    return make


class SetMemorySpy:
    """Records every set_memory_* call after boot as (name, addr, npages), then lets the arch
    do it (boot's own calls, e.g. for the kernel's BPF program, are not the test's)."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    @hookimpl(tryfirst=True)
    def permalloc_set_memory(self, machine, addr, npages, source):
        if not machine.booting:
            self.calls.append((source, addr, npages))

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


@pytest.fixture
def set_memory_spy() -> SetMemorySpy:
    return SetMemorySpy()
