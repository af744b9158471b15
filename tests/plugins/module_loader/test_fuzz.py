"""The ingest fuzz target over the module objects built with gcc at test time (conftest.py),
a small budget; ``benchmarks/fuzz.py`` runs the long one over real Debian modules."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from permalloc.plugins.module_loader import ingest
from permalloc.plugins.module_loader.fuzz import Seed, check_ingest, mutants
from permalloc.run.timeout import RunTimeout, expired


@pytest.mark.parametrize("which", ["mod_a", "foo"])
def test_every_mutant_is_a_record_or_one_line_naming_the_file(which, objects, tmp_path):
    seed = Seed.read(getattr(objects, which))
    assert seed.symtab[1] > 5 and seed.relas  # the seed has the tables the mutations aim at
    outcomes: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutants(seed))
    def target(data: bytes) -> None:
        outcomes[check_ingest(tmp_path / "mutant.ko", data)] += 1

    target()
    assert outcomes["refused"] > 20 and outcomes["ok"] > 0, outcomes  # both sides of the contract were reached


def test_the_seeds_themselves_ingest(objects, tmp_path):
    for path in (objects.mod_a, objects.foo):
        assert check_ingest(tmp_path / path.name, path.read_bytes()) == "ok"


@pytest.mark.parametrize("where", ["_ingest", "_decompressed"])
def test_a_time_limit_passes_through_ingest(where, objects, tmp_path, monkeypatch):
    """A run stopped by its time limit (``--timeout``, the fuzz run's ``--hang``) stays a
    RunTimeout: not a malformed file, so the fuzz run counts a hang, not a refusal."""
    def stopped(*args):
        raise expired("ingest", 10)

    monkeypatch.setattr(ingest, where, stopped)
    with pytest.raises(RunTimeout):
        check_ingest(tmp_path / "m.ko", objects.foo.read_bytes())
