"""The ingest fuzz target over real Debian modules (tests/plugins/module_loader/data/seeds:
crc8.ko of linux-image-6.1.0-57-amd64-unsigned, crc7.ko of the arm64 one), a small budget;
``benchmarks/fuzz.py`` runs the long one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from permalloc.plugins.module_loader.fuzz import Seed, check_ingest, mutants

SEEDS = sorted((Path(__file__).parent / "data" / "seeds").glob("*.ko"))


@pytest.mark.parametrize("seed_path", SEEDS, ids=lambda p: p.name)
def test_every_mutant_is_a_record_or_one_line_naming_the_file(seed_path, tmp_path):
    seed = Seed.read(seed_path)
    assert seed.symtab[1] > 10 and seed.relas  # the seed has the tables the mutations aim at
    outcomes: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutants(seed))
    def target(data: bytes) -> None:
        outcomes[check_ingest(tmp_path / "mutant.ko", data)] += 1

    target()
    assert outcomes["refused"] > 20 and outcomes["ok"] > 0, outcomes  # both sides of the contract were reached


def test_the_seeds_themselves_ingest(tmp_path):
    for path in SEEDS:
        assert check_ingest(tmp_path / path.name, path.read_bytes()) == "ok"
