from __future__ import annotations

import json

import pytest

from permalloc import MachineSpec, PolicySpec, SpecError
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.scenario import Scenario, load_scenario_file, op_registry
from permalloc.run.simulation import run


@pytest.fixture(scope="module")
def registry():
    pm = registry_manager()
    return op_registry(t for batch in pm.hook.permalloc_register_ops() for t in batch)


def test_toml_and_json_give_the_same_scenario(tmp_path):
    ops = [{"op": "alloc", "id": "a", "size": 100, "perm": "RX"}, {"op": "free", "id": "a"}]
    (tmp_path / "s.json").write_text(json.dumps({"name": "s", "ops": ops}))
    (tmp_path / "s.toml").write_text(
        'name = "s"\n[[ops]]\nop = "alloc"\nid = "a"\nsize = 100\nperm = "RX"\n[[ops]]\nop = "free"\nid = "a"\n'
    )
    assert load_scenario_file(tmp_path / "s.json") == load_scenario_file(tmp_path / "s.toml")


@pytest.mark.parametrize(
    ("op", "message"),
    [
        ({"op": "alloc", "id": "a", "size": 0, "perm": "RX"}, r"ops\[1\]\.size: Input should be greater than 0"),
        ({"op": "alloc", "id": "a", "size": 10, "perm": "RWX"}, r"ops\[1\]\.perm: W and X together"),
        ({"op": "frobnicate"}, r"ops\[1\]\.op: unknown op 'frobnicate'; known ops: .*alloc"),
        ({"op": "free"}, r"ops\[1\]\.id: Field required"),
        ({"op": "free", "id": "a", "extra": 1}, r"ops\[1\]\.extra: Extra inputs are not permitted"),
    ],
)
def test_bad_op_names_index_and_field(registry, op, message):
    scenario = Scenario(name="bad", ops=[{"op": "advance", "ms": 1}, op])
    with pytest.raises(SpecError, match=message):
        scenario.validated(registry)


def test_bad_files(tmp_path):
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(SpecError, match=r"x.json: not valid JSON"):
        load_scenario_file(tmp_path / "x.json")
    with pytest.raises(SpecError, match="cannot read"):
        load_scenario_file(tmp_path / "missing.json")
    (tmp_path / "y.json").write_text('{"ops": 3}')
    with pytest.raises(SpecError, match=r"y.json: ops: Input should be a valid list"):
        load_scenario_file(tmp_path / "y.json")


def test_runtime_errors_name_the_op():
    scenario = Scenario(name="s", ops=[{"op": "alloc", "id": "a", "size": 10, "perm": "R"}, {"op": "finish", "id": "b"}])
    with pytest.raises(SpecError, match=r"ops\[1\] \(finish\): no live allocation with id 'b'"):
        run(scenario, MachineSpec(memory="1G"), PolicySpec(name="p"))


def test_per_op_kinds_and_measure_nesting():
    scenario = Scenario(name="s", ops=[
        {"op": "alloc", "id": "a", "size": 5000, "perm": "RX"},
        {"op": "write", "id": "a"},
        {"op": "finish", "id": "a"},
        {"op": "free", "id": "a"},
    ])
    result = run(scenario, MachineSpec(memory="1G"), PolicySpec(name="p"))
    assert set(result.per_op) == {"alloc", "write", "finish", "free"}
    per_op_shootdowns = sum(v["shootdowns"]["mean"] * v["count"] for v in result.per_op.values())
    assert per_op_shootdowns == result.totals["shootdowns"]
    assert result.problems == []


def test_phases_are_checked_in_a_file(tmp_path):
    ops = '[{"op": "advance", "ms": 1}, {"op": "advance", "ms": 2}]'
    (tmp_path / "order.json").write_text(f'{{"name": "s", "ops": {ops}, "phases": [{{"name": "b", "start": 1}}, '
                                         '{"name": "a", "start": 0}]}')
    with pytest.raises(SpecError, match=r"order.json: .*each phase starts after the one before it"):
        load_scenario_file(tmp_path / "order.json")
    (tmp_path / "past.json").write_text(f'{{"name": "s", "ops": {ops}, "phases": [{{"name": "late", "start": 2}}]}}')
    with pytest.raises(SpecError, match=r"past.json: .*phase 'late' starts at op 2, past the last op \(1\)"):
        load_scenario_file(tmp_path / "past.json")


def test_a_run_records_where_each_phase_began_in_simulated_time():
    scenario = Scenario(name="s", ops=[
        {"op": "advance", "ms": 5},
        {"op": "alloc", "id": "a", "size": 5000, "perm": "RX"},
        {"op": "advance", "ms": 7.5},
        {"op": "free", "id": "a"},
    ], phases=[{"name": "idle", "start": 0}, {"name": "work", "start": 1}, {"name": "end", "start": 3}])
    result = run(scenario, MachineSpec(memory="1G"), PolicySpec(name="p"), samples=("shootdowns", "cost_ns"))
    assert [(p.name, p.op, p.t_ms) for p in result.phases] == [("idle", 0, 0.0), ("work", 1, 5.0), ("end", 3, 12.5)]
    assert set(result.samples["alloc"]) == {"shootdowns", "cost_ns"} and len(result.samples["advance"]["cost_ns"]) == 2
    assert run(scenario, MachineSpec(memory="1G"), PolicySpec(name="p")).samples == {}
