"""Fixtures for the tests of a permalloc plugin package (pytest plugin ``permalloc``).

Installing permalloc registers this module through the ``pytest11`` entry point. It only
defines fixtures, which do nothing until a test asks for one: no hooks, nothing autouse;
``permalloc.testing`` (hypothesis: the ``test`` extra) is imported when a fixture is used.
``pytest -p no:permalloc`` leaves it out.

An arch package points the fixtures at its arch by overriding ``permalloc_arch`` in its
``conftest.py``; the contract suite every arch keeps is :class:`permalloc.testing.ContractSuite`
(``policies = None`` runs it under every policy the arch can run, like ``permalloc_policies``).
``permalloc new-plugin`` writes a package whose tests use both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

from permalloc.machine import Machine
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec
from permalloc.run.registry import policies_for
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import PolicyResult, run

if TYPE_CHECKING:
    from permalloc.run.workloads import WorkloadSource


@pytest.fixture
def permalloc_arch() -> str:
    """The arch that the other ``permalloc_*`` fixtures build machines of: ``"generic"``.

    Override it in your ``conftest.py`` to test your arch, or parametrize it::

        @pytest.fixture
        def permalloc_arch():
            return "myarch"
    """
    return "generic"


@pytest.fixture
def permalloc_policies(permalloc_arch: str) -> list[PolicySpec]:
    """The policies ``permalloc_arch`` can run, as ``permalloc compare --arch ARCH`` chooses
    them when none are named: every installed policy meant for that arch or for any arch
    (the built-ins, and those of installed plugins), ``default`` left out.
    """
    return policies_for(registry_manager(), permalloc_arch)


@pytest.fixture
def permalloc_machine_factory(permalloc_arch: str) -> Callable[..., Machine]:
    """Return a function that builds and boots a new :class:`~permalloc.Machine` of
    ``permalloc_arch``::

        make(policy=None, *, strict=False, plugins=(), workload=None, **spec) -> Machine

    ``policy`` defaults to the ``default`` policy; ``strict`` fails at the first W^X violation
    or leak; ``plugins`` are plugin objects registered on the machine besides the installed
    ones; ``workload`` is a :class:`~permalloc.run.workloads.WorkloadSource` (default: the
    policy's); ``spec`` sets :class:`~permalloc.MachineSpec` fields, e.g. ``memory="4G"``
    (default: 1 GiB, 4 CPUs, seed 0, as the contract suite's machines).
    """
    from permalloc.testing import contract_machine

    def make(policy: PolicySpec | None = None, *, strict: bool = False, plugins: Sequence[Any] = (),
             workload: WorkloadSource | None = None, **spec: Any) -> Machine:
        return contract_machine(permalloc_arch, policy or DEFAULT_POLICY, strict=strict, plugins=plugins,
                                workload=workload, **spec)

    return make


@pytest.fixture
def permalloc_run(permalloc_arch: str) -> Callable[..., PolicyResult]:
    """Return a function that runs a scenario on a new machine of ``permalloc_arch``, frees
    everything and checks for leaks, as ``permalloc run`` does::

        run(scenario, policy=None, *, strict=False, plugins=(), workload=None, **spec) -> PolicyResult

    ``scenario`` is a :class:`~permalloc.run.scenario.Scenario` or its list of ops (dicts,
    as in a scenario file); the other arguments are those of ``permalloc_machine_factory``.
    The result has the totals, ``per_op``, the plugins' ``extra`` figures and the
    ``problems`` the teardown found.
    """
    from permalloc.testing import contract_spec

    def run_scenario(scenario: Scenario | list[dict[str, Any]], policy: PolicySpec | None = None, *,
                     strict: bool = False, plugins: Sequence[Any] = (), workload: WorkloadSource | None = None,
                     **spec: Any) -> PolicyResult:
        if not isinstance(scenario, Scenario):
            scenario = Scenario(name="test", ops=scenario)
        return run(scenario, contract_spec(permalloc_arch, **spec), policy or DEFAULT_POLICY, strict=strict,
                   plugins=plugins, workload=workload)

    return run_scenario
