"""The model-file fuzz target over scenarios and policies, a small budget (benchmarks/fuzz.py
runs the long one)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run import modelfuzz
from permalloc.run.modelfuzz import check_policy, check_scenario, documents, policy_shape, scenario_shape
from permalloc.run.scenario import op_types
from permalloc.run.timeout import RunTimeout, expired

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_every_scenario_file_loads_or_is_one_line_naming_it(tmp_path):
    registry = op_types(registry_manager())
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(documents(scenario_shape(registry)))
    def target(doc: tuple[str, bytes]) -> None:
        suffix, data = doc
        outcomes[check_scenario(tmp_path / f"s{suffix}", data, registry)] += 1

    target()
    assert outcomes["refused"] > 50 and outcomes["ok"] > 0, outcomes


def test_every_policy_file_loads_or_is_one_line_naming_it(tmp_path):
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(documents(policy_shape()))
    def target(doc: tuple[str, bytes]) -> None:
        suffix, data = doc
        outcomes[check_policy(tmp_path / f"p{suffix}", data)] += 1

    target()
    assert outcomes["refused"] > 50 and outcomes["ok"] > 0, outcomes


REGRESSIONS = sorted((Path(__file__).parent / "data" / "fuzz-regressions").glob("*"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_what_the_fuzzer_found_stays_fixed(path, tmp_path):
    """Every crasher the targets found, kept as an input (the file name says what it was)."""
    registry = op_types(registry_manager())
    check = check_scenario if path.name.startswith("scenario-") else lambda p, d, _r: check_policy(p, d)
    assert check(tmp_path / f"input{path.suffix}", path.read_bytes(), registry) == "refused"


def test_a_time_limit_is_a_hang_not_a_refusal(tmp_path, monkeypatch):
    """A load stopped by the fuzz run's ``--hang`` (a RunTimeout, which is a PermallocError not
    naming the file) passes through, for the run to count as a hang."""
    def stopped(path, model):
        raise expired("policy", 10)

    monkeypatch.setattr(modelfuzz, "load_model_file", stopped)
    with pytest.raises(RunTimeout):
        check_policy(tmp_path / "p.json", b"{}")
