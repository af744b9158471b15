"""The built-in module scenarios name modules that every bundled workload has."""

from __future__ import annotations

import pytest

from permalloc import ContractError, MachineSpec, PolicySpec
from permalloc.plugins.module_loader.scenarios import BOOT_MODULES, modules_churn
from permalloc.plugins.module_loader.workload import BUNDLED_WORKLOADS, bundled_workload_path, load_workload
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run


@pytest.fixture(scope="module", params=BUNDLED_WORKLOADS)
def workload(request):
    return load_workload(bundled_workload_path(request.param))


def test_every_boot_module_is_in_every_bundled_workload(workload):
    assert [name for name in BOOT_MODULES if name not in workload.modules] == []


def test_the_churned_modules_are_leaves_of_the_boot_set(workload):
    """modules-churn unloads them: no other module of the boot set (with dependencies) may need them."""
    loaded, todo = set(), list(BOOT_MODULES)
    while todo:
        name = todo.pop()
        if name not in loaded:
            loaded.add(name)
            todo += workload.modules[name].depends
    churned = {op["module"] for op in modules_churn().ops if op["op"] == "unload_module"}
    users = {name: [m for m in loaded if name in workload.modules[m].depends] for name in churned}
    assert users == {name: [] for name in churned}


def test_modules_churn_runs_on_6_12(arch):
    """6.12's module set differs (e.g. fscache is part of netfs there): the churn still unloads."""
    result = run(modules_churn(), MachineSpec(arch=arch, memory="4G"), PolicySpec(name="t", kernel="6.12"))
    assert result.problems == [] and result.per_op["module_unload"]["count"] == 18
    assert result.workload == "debian-6.12.118-amd64"


def test_what_a_6_12_machine_unloads_needs_the_6_12_modules(arch):
    """cachefiles uses fscache in 6.1 and netfs in 6.12, where fscache is part of netfs: the
    same ops unload cleanly on 6.12's modules and not on 6.1's."""
    ops = [{"op": "load_module", "module": "cachefiles"}, {"op": "unload_module", "module": "cachefiles"},
           {"op": "unload_module", "module": "netfs"}]
    scenario = Scenario(name="replay", ops=ops)
    on_6_12 = run(scenario, MachineSpec(arch=arch, memory="1G"), PolicySpec(name="t", kernel="6.12"))
    assert on_6_12.extra["module_loader"]["modules_loaded"] == 0
    with pytest.raises(ContractError, match=r"^ops\[2\] \(unload_module\): module netfs is in use by fscache$"):
        run(scenario, MachineSpec(arch=arch, memory="1G"), PolicySpec(name="t", kernel="6.1"))
