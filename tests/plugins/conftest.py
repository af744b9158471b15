"""Fixtures of the text-patcher tests: a machine under a policy, and module loads."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from permalloc import Machine, MachineSpec, PolicySpec
from permalloc.plugin.pluginmanager import arch_plugins, registry_manager
from permalloc.plugins.module_loader import loader as loader_of
from permalloc.run.workloads import resolve_workload


@pytest.fixture
def patch_machine(arch):
    """``make(layout="contiguous", kernel="6.1", cpus=4, arch=None, workload=None, **policy fields)``.

    The machine runs on the workload of ``kernel`` unless ``workload`` names another."""

    def make(layout: str = "contiguous", kernel: str = "6.1", cpus: int = 4, arch_name: str | None = None,
             workload: str | None = None, **policy) -> Machine:
        spec = MachineSpec(arch=arch_name or arch, memory="2G", cpus=cpus)
        source = resolve_workload(registry_manager(), workload) if workload else None
        return Machine(spec, PolicySpec(name="t", module_layout=layout, kernel=kernel, **policy), workload=source)

    return make


@pytest.fixture
def load():
    """``load(machine, *names)``: load modules (dependencies first); returns the LoadedModules."""

    def do(machine: Machine, *names: str):
        loader = loader_of(machine)
        for name in names:
            loader.load(name, lambda kind: nullcontext())
        return [loader.loaded[name] for name in names]

    return do


@pytest.fixture
def x86():
    """The x86 arch name, or skip when it is not registered (it has a staging buffer)."""
    if "x86" not in arch_plugins(registry_manager(), MachineSpec()):
        pytest.skip("the x86 arch is not registered")
    return "x86"


def report(lm, patcher: str, stage: str) -> dict:
    """The report of ``patcher`` for one hook (``finalize`` or ``coming``) of a loaded module."""
    found = [r for r in lm.reports if r.get("patcher") == patcher and r.get("stage") == stage]
    assert len(found) <= 1
    return found[0] if found else {}


@pytest.fixture
def reports():
    return report
