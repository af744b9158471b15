"""Which registered policies an arch runs when none are named."""

from __future__ import annotations

from permalloc import PolicySpec, hookimpl
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import policies_for


class ToyPolicies:
    name = "toy-policies"

    @hookimpl
    def permalloc_register_policies(self) -> list[PolicySpec]:
        return [PolicySpec(name="toy-only", arch="toy"), PolicySpec(name="anywhere")]


def test_an_arch_runs_its_own_policies_and_those_of_no_arch():
    names = {p.name for p in policies_for(registry_manager(), "arm64")}  # and any installed plugin's
    assert names >= {"legacy", "linux-6.1", "linux-6.12", "arm64-6.1", "arm64-6.12"}
    assert not names & {"rfc", "rfc-full", "rox-cache", "default"}  # x86's, and no design
    assert {p.name for p in policies_for(registry_manager(), "x86")} >= {"rfc", "rfc-full", "rox-cache", "linux-6.12"}


def test_default_is_never_chosen_and_a_plugins_policies_count():
    pm = registry_manager([ToyPolicies()])
    toy = [p.name for p in policies_for(pm, "toy")]
    assert "default" not in toy and {"toy-only", "anywhere", "legacy"} <= set(toy)
    assert "toy-only" not in {p.name for p in policies_for(pm, "generic")}
    assert "anywhere" in {p.name for p in policies_for(pm, "generic")}
