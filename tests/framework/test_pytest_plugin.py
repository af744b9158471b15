"""The fixtures of permalloc's pytest plugin, as a plugin package's tests use them (pytester),
and that the plugin changes nothing for tests that do not ask for them."""

from __future__ import annotations

import re

import pytest

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import policies_for

pytest_plugins = ["pytester"]


def test_a_test_that_asks_for_nothing_sees_nothing_of_permalloc(pytester: pytest.Pytester):
    pytester.makepyfile("""
        def test_untouched(request):
            plugin = request.config.pluginmanager.get_plugin("permalloc")
            assert plugin is not None  # registered through the pytest11 entry point
            assert request.config.pluginmanager.get_hookcallers(plugin) == []  # no hook of pytest's
            assert [name for name in request.fixturenames if "permalloc" in name] == []  # nothing autouse
    """)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)
    # its fixtures are listed, and it can be left out by name
    pytester.runpytest("--fixtures").stdout.fnmatch_lines(["permalloc_arch -- *"])
    pytester.runpytest("-p", "no:permalloc", "--fixtures").stdout.no_fnmatch_line("permalloc_arch*")


def test_the_fixtures_build_machines_and_runs_of_the_overridden_arch(pytester: pytest.Pytester):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def permalloc_arch():
            return "arm64"
    """)
    pytester.makepyfile("""
        from permalloc import PolicySpec

        def test_machine(permalloc_machine_factory):
            machine = permalloc_machine_factory(memory="2G", cpus=2)
            assert machine.arch.name == "arm64" and machine.spec.cpus == 2 and machine.policy.name == "default"
            assert not machine.strict and permalloc_machine_factory(strict=True).strict

        def test_policies(permalloc_policies):
            print("POLICIES", " ".join(p.name for p in permalloc_policies))

        def test_run(permalloc_run, permalloc_policies):
            policy = next(p for p in permalloc_policies if p.name == "arm64-6.12")
            result = permalloc_run([{"op": "load_module", "module": "crc16"}], policy)
            assert result.arch == "arm64" and result.policy == "arm64-6.12" and result.problems == []
            assert result.extra["module_loader"]["modules_loaded"] == 1

        def test_run_of_a_scenario(permalloc_run):
            from permalloc.run.scenario import Scenario

            ops = [{"op": "alloc", "id": "a", "size": 4096, "perm": "RX"}, {"op": "finish", "id": "a"}]
            assert permalloc_run(Scenario(name="s", ops=ops), PolicySpec(name="p")).per_op["finish"]["count"] == 1
    """)
    result = pytester.runpytest("-s", "-p", "no:randomly")
    result.assert_outcomes(passed=4)
    listed = re.search(r"POLICIES (.*)", result.stdout.str()).group(1).split()
    assert listed == [p.name for p in policies_for(registry_manager(), "arm64")]
    assert {"arm64-6.12", "linux-6.1"} <= set(listed) and "rfc" not in listed


def test_the_contract_suite_runs_under_every_policy_of_the_arch(pytester: pytest.Pytester):
    pytester.makepyfile("""
        from permalloc.testing import ContractSuite

        class TestGenericContract(ContractSuite):
            arch = "generic"
            policies = None
            poke_keeps_wx = False
    """)
    result = pytester.runpytest("-v", "-p", "no:randomly", "-k", "test_arch_is_selected or wx_permission")
    expected = [p.name for p in policies_for(registry_manager(), "generic")]
    result.assert_outcomes(passed=2 * len(expected))
    ran = re.findall(r"test_arch_is_selected\[(.+?)\] PASSED", result.stdout.str())
    assert ran == expected and len(expected) >= 3


def test_the_contract_suite_fails_an_arch_that_breaks_the_contract(pytester: pytest.Pytester):
    # through the fixtures' suite, a W+X step in finish fails (the suite is not a no-op)
    pytester.makepyfile("""
        from permalloc import Perm, hookimpl
        from permalloc.model.pages import pages_for
        from permalloc.testing import ContractSuite

        class XBeforeRo:
            name = "x-before-ro"

            @hookimpl(tryfirst=True)
            def permalloc_finish(self, machine, alloc):
                if alloc.perm != Perm.RX:
                    return None
                machine.perm.set_memory("set_memory_x", alloc.addr, pages_for(alloc.size))
                machine.perm.set_memory("set_memory_ro", alloc.addr, pages_for(alloc.size))
                return True

        class TestBroken(ContractSuite):
            arch = "generic"
            policies = None
            plugins = [XBeforeRo()]
    """)
    result = pytester.runpytest("-p", "no:randomly", "-k", "rx_finish_never_passes_through_wx")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 3 * len(policies_for(registry_manager(), "generic")), outcomes
    result.stdout.fnmatch_lines(["*set_memory_x at 0x* makes page 0x* RWX*"])
