from __future__ import annotations

import json

import pandas as pd
import pytest

from permalloc.cli import main
from permalloc.errors import PermallocError
from permalloc.run.executor import LocalExecutor
from permalloc.run.search import load_space, search

SPACE = """
scenario = "tiny.json"
policy = "rfc"
trials = 6
batch = 3
[machine]
arch = "x86"
cpus = 4
memory = "1G"
[params]
bpf_allocator = ["per-program", "pack", "perm-alloc"]
directmap = ["split-on-demand", "unmapped-block-cache"]
[objectives]
shootdowns = "minimize"
allocated_bytes = "minimize"
"""


@pytest.fixture
def space_file(tiny_dir):
    (tiny_dir / "s.toml").write_text(SPACE)
    return tiny_dir / "s.toml"


def test_the_trials_do_not_depend_on_the_executor(space_file):
    space = load_space(space_file)
    one = search(space, space_file.parent, LocalExecutor(1)).trials
    two = search(space, space_file.parent, LocalExecutor(2)).trials
    pd.testing.assert_frame_equal(one, two)
    assert len(one) == 6 and one["pareto"].any()
    front = one[one["pareto"]]
    for _, row in one.iterrows():  # nothing off the front is better on both objectives than a point of it
        if not row["pareto"]:
            assert ((front["shootdowns"] <= row["shootdowns"]) & (front["allocated_bytes"] <= row["allocated_bytes"])).any()


def test_compare_reproduces_every_point_of_the_front(space_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", str(space_file), "-o", str(out), "-j", "2", "-q", "--plot", str(tmp_path / "f.png")]) == 0
    assert "Pareto front" in capsys.readouterr().out
    front = pd.read_csv(out / "front.csv")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    for _, row in front.iterrows():
        policy = out / "policies" / f"s-{int(row['trial'])}.json"
        assert main(["compare", "-s", str(tmp_path / "tiny.json"), "-p", str(policy), "--arch", "x86", "--cpus", "4",
                     "--memory", "1G", "--format", "json", "-j", "1", "-q"]) == 0
        totals = json.loads(capsys.readouterr().out)["results"][0]["totals"]
        assert totals["shootdowns"] == row["shootdowns"] and totals["allocated_bytes"] == row["allocated_bytes"]
        assert json.loads(policy.read_text())["bpf_allocator"] == row["bpf_allocator"]


@pytest.mark.parametrize(("text", "message"), [
    (SPACE.replace('shootdowns = "minimize"', 'warp = "minimize"'), "'warp' is not a metric"),
    (SPACE.replace('bpf_allocator = [', 'warp = ['), "'warp' is not a policy field"),
    (SPACE.replace('"minimize"\nallocated', '"lower"\nallocated'), "objectives.shootdowns"),
    (SPACE.replace('"pack", ', '"bogus", '), "bpf_allocator"),
])
def test_a_bad_space_is_one_line(space_file, text, message, tmp_path):
    space_file.write_text(text)
    with pytest.raises(PermallocError, match=message) as exc:
        search(load_space(space_file), tmp_path, LocalExecutor(1))
    assert "\n" not in str(exc.value)


def test_the_rfc_example_space_has_only_valid_combinations():
    """examples/search/rfc.toml: every combination of its params is a policy the model accepts
    (huge_pack_by_lifetime needs huge_mappings, fixed on in its ``set``)."""
    import itertools
    from pathlib import Path

    from permalloc.plugin.pluginmanager import registry_manager
    from permalloc.run.registry import override_policy, resolve_policy
    from permalloc.run.search import variant

    space = load_space(Path(__file__).resolve().parents[3] / "examples" / "search" / "rfc.toml")
    assert "huge_pack_by_lifetime" in space.params and "huge_mappings=true" in space.set
    base = override_policy(resolve_policy(registry_manager(), space.policy), space.set)
    names, values = zip(*space.params.items(), strict=True)
    combos = list(itertools.product(*values))
    policies = [variant(base, f"t{i}", dict(zip(names, combo, strict=True))) for i, combo in enumerate(combos)]
    assert len(policies) == 48 and all(p.huge_mappings for p in policies)
    assert {p.huge_pack_by_lifetime for p in policies} == {False, True}
