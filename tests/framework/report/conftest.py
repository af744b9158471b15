"""A small phased scenario compared under the policies of the arch under test, once per module."""

from __future__ import annotations

import pytest

from permalloc import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.report.plots import DISTRIBUTION_METRICS
from permalloc.run.compare import compare
from permalloc.run.registry import policies_for
from permalloc.run.scenario import Scenario

CHURN = [op for i in range(4) for op in (
    {"op": "alloc", "id": f"j{i}", "size": 3000 * (i + 1), "perm": "RX"},
    {"op": "write", "id": f"j{i}"},
    {"op": "finish", "id": f"j{i}"},
    {"op": "advance", "ms": 250},
    {"op": "free", "id": f"j{i}"},
)]
PHASED = Scenario(
    name="phased",
    description="two modules, then four RX allocations a quarter second apart, then a poke",
    ops=[
        {"op": "load_module", "module": "crc16"},
        {"op": "load_module", "module": "mbcache"},
        *CHURN,
        {"op": "alloc", "id": "t", "size": 8192, "perm": "RX"},
        {"op": "write", "id": "t"},
        {"op": "finish", "id": "t"},
        {"op": "poke", "id": "t", "length": 16},
    ],
    phases=[{"name": "boot", "start": 0}, {"name": "churn", "start": 2}, {"name": "patch", "start": 2 + len(CHURN)}],
)


@pytest.fixture(scope="module")
def spec() -> MachineSpec:
    import os

    return MachineSpec(arch=os.environ.get("PERMALLOC_ARCH", "generic"), memory="2G", cpus=2)


@pytest.fixture(scope="module")
def chosen(spec):
    return policies_for(registry_manager(), spec.arch)


@pytest.fixture(scope="module")
def results(spec, chosen):
    """Every policy the arch runs by default (six on x86) on PHASED, with the per-op samples the
    plots draw and a timeline."""
    return compare(PHASED, spec, chosen, jobs=1, samples=DISTRIBUTION_METRICS)


@pytest.fixture(scope="module")
def seeds(spec, chosen):
    """The ``seeds`` section of ``compare --seeds 3 --baseline FIRST`` on PHASED."""
    from permalloc.run.compare import compare_seeds
    from permalloc.run.seedstats import summarise

    per_seed = compare_seeds(PHASED, spec, chosen, [0, 1, 2], jobs=1)
    return summarise([0, 1, 2], per_seed, chosen[0].name)
