from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from permalloc import __version__
from permalloc.cli import main
from permalloc.plugin import hookspecs
from permalloc.plugin.pluginmanager import registry_manager

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
    assert set(result["per_op"]["finish"]["shootdowns"]) == {"mean", "median", "p90", "max"}
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
        (["run", "-s", "{f}", "--memory", "lots"], "machine spec: memory: invalid size"),
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
        (["--format", "json", "-o", "{tmp}/missing/dir/out.json"], "cannot write: no such directory"),
        (["--format", "json", "-o", "{tmp}"], "cannot write: is a directory"),
        (["--html", "{tmp}/old.json/report"], "old.json is not a directory"),
    ],
)
def test_bad_outputs_are_one_line_errors(extra, message, scenario_file, tmp_path, capsys, monkeypatch):
    (tmp_path / "old.json").write_text("{}")
    ran = []
    monkeypatch.setattr("permalloc.run.compare.compare", lambda *a, **k: ran.append(1) or [])
    argv = ["compare", "-s", str(scenario_file), "--memory", "1G", "-p", "legacy", "-q"]
    assert main(argv + [a.replace("{tmp}", str(tmp_path)) for a in extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert ran == []  # refused before the simulation


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


# -- permalloc hooks ---------------------------------------------------------------------------
HOOKSPECS = Path(hookspecs.__file__)
SECTION_FAMILIES = {"Arch hooks": "arch", "Consumer hooks": "consumer", "Observer hooks": "observer",
                    "Registry and report hooks": "registry"}


def _specs_in_file() -> dict[str, str]:
    """Hook name -> the section comment it is under, read from hookspecs.py itself."""
    found: dict[str, str] = {}
    section = ""
    lines = HOOKSPECS.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# ---") and i + 2 < len(lines) and lines[i + 2].startswith("# ---"):
            section = lines[i + 1].removeprefix("# ").split(" (")[0]
        if line.startswith("def permalloc_") and lines[i - 1].startswith("@hookspec"):
            found[line.removeprefix("def ").split("(")[0]] = section
    return found


def _hook_blocks(out: str) -> dict[str, str]:
    blocks = {}
    for block in out.split("\n\npermalloc_"):
        block = block if block.startswith("permalloc_") else "permalloc_" + block
        blocks[block.split("(")[0]] = block
    return blocks


def test_hooks_verbose_shows_signature_options_and_the_whole_doc(capsys):
    assert main(["hooks", "-v"]) == 0
    blocks = _hook_blocks(capsys.readouterr().out)
    assert set(blocks) == set(_specs_in_file())
    describe = blocks["permalloc_arch_describe"]
    lines = describe.splitlines()
    assert lines[0] == "permalloc_arch_describe(spec: MachineSpec, policy: PolicySpec) -> ArchInfo | None"
    assert "family: arch" in lines[1] and "firstresult: yes" in lines[1] and "historic: no" in lines[1]
    assert "generic (trylast)" in lines[2] and "x86" in lines[2]
    assert ":param spec: the machine spec" in describe and ":param policy: the policy of the run" in describe
    assert "an ArchInfo, or None for a spec it does not serve" in describe  # advice: every implementation is called, no firstresult
    alloc = blocks["permalloc_alloc"]
    assert alloc.startswith("permalloc_alloc(machine: Machine, size: int, perm: Perm, vrange: VRange, "
                            "lifetime: str) -> PermAllocation | None")
    assert ':param lifetime: how long the caller expects to keep the allocation: ``"long"``' in alloc
    assert "The generic arch implements it trylast" in " ".join(alloc.split())
    assert "firstresult: no" in blocks["permalloc_module_finalize"].splitlines()[1]
    teardown = " ".join(blocks["permalloc_machine_teardown"].split())
    assert "invariants implements it trylast" in teardown and "family: observer" in teardown


def test_hooks_json_has_every_hook_of_hookspecs(capsys):
    assert main(["hooks", "--format", "json"]) == 0
    hooks = json.loads(capsys.readouterr().out)
    by_name = {hook["name"]: hook for hook in hooks}
    in_file = _specs_in_file()
    assert list(by_name) == list(in_file)  # every hook, in the file's order
    pm = registry_manager()
    for name, hook in by_name.items():
        assert {"name", "family", "signature", "firstresult", "historic", "doc", "advice"} <= set(hook)
        assert hook["doc"].strip() and hook["advice"].strip(), name
        assert hook["family"] == SECTION_FAMILIES[in_file[name]], name
        opts = getattr(pm.hook, name).spec.opts
        assert (hook["firstresult"], hook["historic"]) == (bool(opts["firstresult"]), bool(opts["historic"])), name
        assert hook["signature"].startswith(f"{name}(")
    describe = by_name["permalloc_arch_describe"]
    assert describe["firstresult"] is True and "spec: MachineSpec, policy: PolicySpec" in describe["signature"]
    assert by_name["permalloc_event"]["firstresult"] is False
    assert {"plugin": "generic", "tryfirst": False, "trylast": True, "wrapper": False} in \
        by_name["permalloc_finish"]["implementations"]
    assert "generic arch implements it" not in by_name["permalloc_kernel_image"]["advice"]  # the module loader does


def test_hooks_summary_is_one_line_per_hook(capsys):
    assert main(["hooks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == list(_specs_in_file())
    assert lines[0].startswith("permalloc_arch_describe: Describe the arch")


def test_hook_families_follow_the_section_comments():
    in_file = _specs_in_file()
    assert set(hookspecs.FAMILIES) == set(in_file)
    for name, section in in_file.items():
        assert hookspecs.FAMILIES[name] == SECTION_FAMILIES[section], name
    assert set(hookspecs.FAMILY_ADVICE) == set(SECTION_FAMILIES.values())
    assert set(hookspecs.CALLED_PER_IMPLEMENTATION) <= set(in_file)
    assert set(hookspecs.RETURN_TYPES) <= set(in_file)


@pytest.mark.parametrize("name", list(_specs_in_file()))
def test_every_hook_says_its_args_when_it_is_called_and_what_it_returns(name):
    # pytest's hookspec.py style: each argument, when the hook is called, what a return means
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""
    for param in inspect.signature(function).parameters:
        assert f":param {param}:" in doc, f"{name}: no ':param {param}:'"
    assert re.search(r"\bCalled\b", doc), f"{name}: does not say when it is called"
    assert re.search(r"\bReturn\b", doc), f"{name}: does not say what a return means"


@pytest.mark.parametrize(("argv", "first"), [
    (["hooks", "-v"], b"permalloc_arch_describe("),
    (["run", "-s", "boot", "-p", "legacy"], b""),  # a rich table: rich would exit 1 on the closed pipe
])
def test_a_closed_pipe_ends_quietly_as_unix_tools_do(argv, first):
    # `permalloc hooks -v | head -1`: the reader goes away; no message, no traceback, and the
    # status a shell shows for `seq 100000 | head -1` (SIGPIPE: 128 + 13)
    proc = subprocess.Popen([sys.executable, "-m", "permalloc.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(first)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr is not None and proc.stderr.read() == b""


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe{", "not UTF-8 text (byte 0: invalid start byte)"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
    (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not valid JSON: nested too deeply"),
    (b"[1, 2]", "value: Input should be a valid dictionary"),
])
@pytest.mark.parametrize("flag", ["-s", "-p", "--workload"])
def test_bad_input_files_are_one_line_errors_naming_them(tmp_path, capsys, content, message, flag):
    path = tmp_path / "input.json"
    path.write_bytes(content)
    argv = ["run", "--memory", "1G", flag, str(path)] + (["-s", "boot"] if flag != "-s" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err, err
    if flag != "--workload":
        assert message in err
    else:  # a workload file: the same causes, in the workload's words
        assert "not a workload file" in err


def test_python_dash_m_permalloc_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "permalloc", "--version"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.decode().strip() == f"permalloc {__version__}"


def test_a_table_goes_where_o_says_without_colour(scenario_file, tmp_path, capsys, arch):
    out = tmp_path / "table.txt"
    assert main(["run", "-s", str(scenario_file), "--arch", arch, "--memory", "1G", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    text = out.read_text()
    assert "scenario cli" in text and "totals" in text and "shootdowns" in text and "\x1b[" not in text


def test_compare_schema_is_the_result_model(capsys):
    from permalloc.report.tables import ReportDocument

    assert main(["compare", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == ReportDocument.model_json_schema()


@pytest.mark.parametrize(("argv", "message"), [
    (["-p", "legacy", "-p", "legacy"], "policy 'legacy' is named twice"),
    (["-p", "legacy", "--baseline", "rfc"], "--baseline 'rfc' is not among the compared policies (legacy)"),
    (["-p", "legacy[nope=1]"], "policy variant 'legacy[nope=1]' nope: unknown policy field"),
    (["-p", "legacy[]"], "policy variant 'legacy[]': no FIELD=VALUE"),
    (["-p", "nosuch[live_cache=true]"], "unknown policy 'nosuch'"),
])
def test_compare_option_errors_are_one_line(argv, message, scenario_file, capsys):
    assert main(["compare", "-s", str(scenario_file), "--memory", "1G", "-q", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_seeds_must_be_a_positive_count(scenario_file, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "-s", str(scenario_file), "--seeds", "0"])
    assert exc.value.code == 2 and "argument --seeds: 0 is less than 1" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["compare", "-s", "{fifo}.json"], "{fifo}.json: cannot read: a FIFO (only regular files are read)"),
    (["sweep", "{fifo}.toml"], "{fifo}.toml: cannot read: a FIFO (only regular files are read)"),
    (["compare", "-p", "rfc", "-w", "{fifo}.json"], "workload {fifo}.json: cannot read: a FIFO, not a workload file"),
    (["replay", "{fifo}.json"], "{fifo}.json: cannot read: a FIFO (only regular files are read)"),
    (["validate", "{fifo}.csv"], "{fifo}.csv: cannot read CSV: a FIFO (only regular files are read)"),
])
def test_a_fifo_for_an_input_file_is_one_line_not_a_hang(tmp_path, argv, message):
    # in a subprocess with a timeout: opening a FIFO with no writer blocks for ever
    fifo = tmp_path / "in"
    suffix = next(a for a in argv if "{fifo}" in a).removeprefix("{fifo}")
    os.mkfifo(f"{fifo}{suffix}")
    proc = subprocess.run([sys.executable, "-m", "permalloc", *[a.format(fifo=fifo) for a in argv]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"permalloc: error: {message.format(fifo=fifo)}"] or \
        proc.stderr.splitlines()[-1].startswith(f"permalloc: error: {message.format(fifo=fifo)}")
