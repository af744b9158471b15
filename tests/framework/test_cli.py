from __future__ import annotations

import json

import pytest

from permalloc import __version__
from permalloc.cli import main

SCENARIO = {"name": "cli", "ops": [
    {"op": "alloc", "id": "a", "size": 16384, "perm": "RX"},
    {"op": "write", "id": "a"},
    {"op": "finish", "id": "a"},
    {"op": "free", "id": "a"},
]}


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "cli.json"
    path.write_text(json.dumps(SCENARIO))
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"permalloc {__version__}"


def test_run_json_has_the_design_shape(scenario_file, capsys, arch):
    assert main(["run", "-s", str(scenario_file), "--arch", arch, "--memory", "1G", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "cli"
    assert doc["machine"] == {"arch": arch, "cpus": 8, "memory": 1 << 30, "seed": 0}
    (result,) = doc["results"]
    assert result["policy"] == "default" and result["arch"] == arch
    assert result["per_op"]["finish"]["count"] == 1
    assert set(result["per_op"]["finish"]["shootdowns"]) == {"mean", "median", "max"}
    for name in ("shootdowns", "ipis", "directmap_4k_bytes", "wx_violations", "cost_ns"):
        assert name in result["totals"]


def test_trace_writes_json_lines(scenario_file, tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    assert main(["run", "-s", str(scenario_file), "--memory", "1G", "--trace", str(trace)]) == 0
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert events[0]["kind"] == "page_alloc" and all("cost_ns" in e for e in events)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-s", "nope"], "unknown scenario 'nope'"),
        (["run", "-s", "missing.json"], "missing.json: cannot read"),
        (["run", "-s", "{f}", "--policy", "fast"], "unknown policy 'fast'"),
        (["run", "-s", "{f}", "--cpus", "0"], "machine spec: cpus: Input should be greater than or equal to 1"),
        (["run", "-s", "{f}", "--memory", "lots"], "machine spec: memory: Value error, invalid size"),
        (["run", "-s", "{f}", "--set", "nope=1"], "--set nope: unknown policy field"),
    ],
)
def test_errors_are_one_line_and_exit_1(argv, message, scenario_file, capsys):
    argv = [a.replace("{f}", str(scenario_file)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_plugins_json_lists_builtins_and_external(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["generic"]["kind"] == "arch" and "permalloc_alloc" in rows["generic"]["hooks"]
    assert rows["invariants"]["kind"] == "consumer/observer"
    # the example third-party package (tests/example_plugin), installed by tox
    assert rows["toyarch"]["origin"] == "entry point (permalloc-toyarch)"
    assert rows["toyarch"]["arch"] == "toy" and rows["toyarch"]["version"] == "0.3.0"


def test_spec_schema(capsys):
    assert main(["spec", "--schema"]) == 0
    assert "memory_state" in json.loads(capsys.readouterr().out)["properties"]


def test_external_arch_overrides_one_hook(scenario_file, capsys):
    assert main(["run", "-s", str(scenario_file), "--arch", "toy", "--memory", "1G", "--trace", "/dev/null", "--format", "json"]) == 0
    toy = json.loads(capsys.readouterr().out)["results"][0]["totals"]
    assert main(["run", "-s", str(scenario_file), "--arch", "generic", "--memory", "1G", "--format", "json"]) == 0
    generic = json.loads(capsys.readouterr().out)["results"][0]["totals"]
    # one set_memory_rox instead of set_memory_ro + set_memory_x: one shootdown fewer
    assert toy["shootdowns"] == generic["shootdowns"] - 1


def test_table_has_plugin_report_columns_and_hides_costless_ops(tmp_path, capsys):
    path = tmp_path / "mods.json"
    path.write_text(json.dumps({"name": "mods", "ops": [
        {"op": "load_module", "module": "crc16"}, {"op": "advance", "ms": 5},
    ]}))
    assert main(["run", "-s", str(path), "--memory", "1G"]) == 0
    out = capsys.readouterr().out
    assert "modules_loaded" in out and "patcher_writes" in out  # rows from the module loader
    assert "module_load" in out and "advance" not in out  # advance costs nothing: JSON only


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--plot", "{tmp}/cmp.bmp"], "plots are written as .png, .svg or .pdf"),
        (["--format", "json", "-o", "{tmp}/missing/dir/out.json"], "No such file or directory"),
    ],
)
def test_bad_outputs_are_one_line_errors(extra, message, scenario_file, tmp_path, capsys):
    argv = ["compare", "-s", str(scenario_file), "--memory", "1G", "-p", "legacy", "-q"]
    assert main(argv + [a.replace("{tmp}", str(tmp_path)) for a in extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_workloads_lists_every_bundled_kernel(capsys):
    assert main(["workloads", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"debian-6.1.0-57-amd64", "debian-6.12.118-amd64"} <= set(rows)
    for name, release in (("debian-6.1.0-57-amd64", "6.1.0-57-amd64"), ("debian-6.12.118-amd64", "6.12.118+deb12-amd64")):
        row = rows[name]
        assert row["kernel_release"] == release and row["package"] == f"linux-image-{release}-unsigned"
        assert row["machine"] == "x86_64" and row["modules"] > 4000
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert "debian-6.12.118-amd64" in out and "6.12.118+deb12-amd64" in out


def test_run_on_a_chosen_workload(tmp_path, capsys, arch, flavour):
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"name": "s", "ops": [{"op": "load_module", "module": "crc16"}]}))
    for workload in (f"debian-6.1.0-57-{flavour}", f"debian-6.12.118-{flavour}"):
        assert main(["run", "-s", str(scenario), "--arch", arch, "--memory", "1G", "-w", workload, "--format", "json"]) == 0
        (result,) = json.loads(capsys.readouterr().out)["results"]
        assert result["workload"] == workload
    assert main(["run", "-s", str(scenario), "--memory", "1G", "-w", "debian-5.0"]) == 1
    err = capsys.readouterr().err
    assert "unknown workload 'debian-5.0'; known workloads: debian-6.1.0-57-amd64" in err and err.count("\n") == 1


def test_policies_say_which_workload_they_run_on(capsys):
    assert main(["policies", "--json"]) == 0
    by_name = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert by_name["linux-6.12"]["workload"] == by_name["rox-cache"]["workload"] == "debian-6.12.118-amd64"
    for name in ("legacy", "rfc", "rfc-full", "linux-6.1"):
        assert by_name[name]["workload"] == "debian-6.1.0-57-amd64"
        assert "debian-6.1.0-57-amd64" in by_name[name]["description"]
