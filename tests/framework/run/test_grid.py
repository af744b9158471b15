from __future__ import annotations

import json

import pytest

from permalloc.errors import SpecError
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.grid import expand, load_grid

SCENARIO = {"name": "tiny", "ops": [{"op": "load_bpf", "id": f"p{i}", "insns": 64, "kind": "ebpf"} for i in range(4)]}


def _grid(tmp_path, text: str):
    (tmp_path / "tiny.json").write_text(json.dumps(SCENARIO))
    path = tmp_path / "g.toml"
    path.write_text(text)
    return load_grid(path)


BASE = """
scenarios = ["tiny.json"]
policies = ["legacy", "linux-6.1"]
seeds = 2
[machine]
arch = "x86"
[axes]
cpus = [8, 64]
"""


def test_expand_crosses_every_list_in_a_fixed_order(tmp_path):
    grid = _grid(tmp_path, BASE)
    plans = expand(registry_manager(), grid, tmp_path)
    assert grid.name == "g"
    assert [(p.labels["cpus"], p.labels["policy"], p.labels["seed"]) for p in plans] == [
        (8, "legacy", 0), (8, "legacy", 1), (8, "linux-6.1", 0), (8, "linux-6.1", 1),
        (64, "legacy", 0), (64, "legacy", 1), (64, "linux-6.1", 0), (64, "linux-6.1", 1)]
    assert [p.spec.cpus for p in plans] == [8, 8, 8, 8, 64, 64, 64, 64]
    assert len({p.key for p in plans}) == 8
    assert plans[0].labels["workload"] == "debian-6.1.0-57-amd64"


def test_the_key_is_the_run_not_the_grid(tmp_path):
    """The same run has the same key in another grid; any change to what it depends on changes it."""
    pm = registry_manager()
    first = {p.title: p.key for p in expand(pm, _grid(tmp_path, BASE), tmp_path)}
    other = expand(pm, _grid(tmp_path, BASE.replace("[8, 64]", "[64, 128]").replace("seeds = 2", "seeds = [1]")),
                   tmp_path)
    assert {p.title: p.key for p in other if p.labels["cpus"] == 64}.items() <= first.items()
    (tmp_path / "tiny.json").write_text(json.dumps({**SCENARIO, "ops": SCENARIO["ops"][:3]}))
    changed = expand(pm, load_grid(tmp_path / "g.toml"), tmp_path)
    assert not {p.key for p in changed} & set(first.values())


def test_policy_axes_make_variants(tmp_path):
    grid = _grid(tmp_path, BASE.replace('policies = ["legacy", "linux-6.1"]', 'policies = ["rfc"]') +
                 '[policy_axes]\nlive_cache = [false, true]\n')
    plans = expand(registry_manager(), grid, tmp_path)
    names = sorted({p.policy.name for p in plans})
    assert names == ["rfc[live_cache=false]", "rfc[live_cache=true]"]
    assert {p.policy.live_cache for p in plans if p.policy.name.endswith("true]")} == {True}
    assert grid.swept() == ["cpus", "live_cache"]


def test_a_policy_of_another_arch_is_left_out_of_the_cell(tmp_path):
    """legacy is for any arch, rfc for x86, arm64-6.1 for arm64."""
    grid = _grid(tmp_path, BASE.replace('"linux-6.1"]', '"rfc", "arm64-6.1"]').replace('arch = "x86"', "")
                 + 'arch = ["x86", "arm64"]\n')
    plans = expand(registry_manager(), grid, tmp_path)
    assert {(p.labels["arch"], p.policy.name) for p in plans} == {
        ("x86", "legacy"), ("x86", "rfc"), ("arm64", "legacy"), ("arm64", "arm64-6.1")}


@pytest.mark.parametrize(("text", "message"), [
    (BASE + "memory = ['1M']\n", "memory"),
    (BASE + "seed = [1, 2]\n", "'seed' is not a machine field"),
    (BASE.replace('"legacy",', '"no-such-policy",'), "unknown policy 'no-such-policy'"),
    (BASE.replace("seeds = 2", "seeds = 0"), "seeds"),
    (BASE.replace("[8, 64]", "[]"), "axis 'cpus' has no values"),
    (BASE + "[policy_axes]\nwarp = [1]\n", "'warp' is not a policy field"),
    (BASE.replace('arch = "x86"', 'arch = "arm64"').replace('"linux-6.1"]', '"rfc"]'),
     "policy 'rfc' is for arch 'x86', which no cell"),
    (BASE + "bogus = 1\n", "bogus"),
])
def test_a_bad_grid_is_one_line_naming_the_field(tmp_path, text, message):
    with pytest.raises(SpecError, match=message) as exc:
        expand(registry_manager(), _grid(tmp_path, text), tmp_path)
    assert "\n" not in str(exc.value)
