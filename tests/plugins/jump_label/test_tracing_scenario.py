"""The built-in ``tracing`` scenario: boot set, ftrace on/off, 100 static-key flips."""

from __future__ import annotations

from permalloc import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import policies, resolve_scenario
from permalloc.run.simulation import run

PATCHERS = {"alternatives", "smp_locks", "orc", "jump_label", "ftrace", "static_call"}


def test_tracing_runs_and_reports_every_patcher(arch):
    pm = registry_manager()
    scenario = resolve_scenario(pm, "tracing")
    result = run(scenario, MachineSpec(arch=arch, memory="4G", cpus=8), policies(pm)["linux-6.1"])
    assert result.problems == []
    rt = result.per_op["runtime_patch"]
    assert rt["count"] == 102
    assert rt["shootdowns"]["max"] == 0 and rt["sync_ipis"]["mean"] > 0
    patchers = result.extra["module_loader"]["patchers"]
    assert PATCHERS <= set(patchers)
    assert all(patchers[p]["writes"] >= 0 and "sync_ipis" in patchers[p] for p in PATCHERS)
    assert result.extra["jump_label"]["flips"] == 100
    assert result.extra["ftrace"]["toggles"] == 2 and result.extra["ftrace"]["sites_patched"] == 2 * patchers["ftrace"]["sites"]
