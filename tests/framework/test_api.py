from __future__ import annotations

import json
from pathlib import Path

import pytest

from permalloc import PermallocError, api
from permalloc.run.grid import Grid

SCENARIO = {"name": "tiny", "ops": [{"op": "load_bpf", "id": f"p{i}", "insns": 64, "kind": "ebpf"} for i in range(3)]}


@pytest.fixture
def tiny(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SCENARIO))
    return str(path)


def test_compare_frame_matches_the_results(tiny):
    result = api.compare(tiny, ["legacy", "linux-6.1"], arch="x86", cpus=4, memory="1G", seeds=2)
    table = result.to_frame()
    assert result.seeds == [0, 1] and [r.policy for r in result.results[0]] == ["legacy", "linux-6.1"]
    got = table.query("op == 'all' and metric == 'shootdowns' and seed == 1").set_index("policy")["value"]
    assert got["legacy"] == result.results[1][0].totals["shootdowns"]
    assert got["linux-6.1"] == result.results[1][1].totals["shootdowns"]


def test_run_is_compare_of_one(tiny):
    assert [r.policy for r in api.run(tiny, "legacy", arch="x86", memory="1G").results[0]] == ["legacy"]


def test_sweep_of_a_grid_object(tiny):
    grid = Grid(scenarios=[tiny], policies=["legacy"], machine={"arch": "x86", "memory": "1G"}, axes={"cpus": [2, 4]})
    plans = []
    result = api.sweep(grid, on_plans=plans.append)
    assert plans == [2] and result.ran == 2
    assert sorted(result.to_frame()["cpus"].unique()) == [2, 4]


def test_bad_machine_values_are_one_line(tiny):
    with pytest.raises(PermallocError, match="machine spec: cpus"):
        api.compare(tiny, ["legacy"], cpus=0)


def test_the_package_is_typed():
    import permalloc

    assert (Path(permalloc.__file__).parent / "py.typed").is_file()
