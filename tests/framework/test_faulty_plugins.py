"""Each planted fault of tests/faulty_plugin gives one line naming the plugin, never a
traceback, a hang or a dead command (issue 17: "Every plugin call guarded")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from permalloc.cli import main

ALLOC_TWO = [{"op": "alloc", "id": "a", "size": 4096, "perm": "RX"},
             {"op": "alloc", "id": "b", "size": 4096, "perm": "RX"},
             {"op": "free", "id": "a"}, {"op": "free", "id": "b"}]


def _scenario(tmp_path, *ops):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "faults", "ops": list(ops)}))
    return str(path)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("permalloc: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_broken_registrations_are_named_and_left_out(faulty_plugins, capsys):
    faulty_plugins("faulty_policies", "faulty_scenarios", "faulty_ops", "faulty_commands", "faulty_import")
    assert main(["policies", "--json"]) == 0
    out, err = capsys.readouterr()
    assert {"linux-6.1", "legacy"} <= {p["name"] for p in json.loads(out)}  # the good plugins' policies
    assert "Traceback" not in err
    for line in ("plugin 'faulty_commands': permalloc_add_commands raised RuntimeError: no parser for you; "
                 "its commands are left out",
                 "plugin 'faulty_import' left out: failed to load permalloc_faulty.missing:plugin: "
                 "ModuleNotFoundError: No module named 'permalloc_faulty.missing'",
                 "plugin 'faulty_policies': permalloc_register_policies raised RuntimeError: policy table missing; "
                 "what it registers is left out"):
        assert f"permalloc: warning: {line}" in err.splitlines()
    assert main(["scenarios"]) == 0
    assert ("permalloc: warning: plugin 'faulty_scenarios': permalloc_register_scenarios returned int, expected a "
            "list of ScenarioSource; what it registers is left out") in capsys.readouterr().err.splitlines()
    assert main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["faulty_import"]["kind"] == "broken" and rows["faulty_policies"]["kind"] != "broken"


def test_a_raising_op_handler_names_its_plugin(faulty_plugins, tmp_path, capsys, arch):
    faulty_plugins("faulty_handler")
    assert main(["run", "-s", _scenario(tmp_path, {"op": "faulty_boom"}), "--arch", arch]) == 1
    assert _error(capsys) == ("permalloc: error: ops[0] (faulty_boom): plugin 'faulty_handler': the handler of op "
                              "'faulty_boom' raised ZeroDivisionError: division by zero in the handler")


def test_an_undeclared_event_kind_is_named(faulty_plugins, tmp_path, capsys, arch):
    faulty_plugins("faulty_event")
    assert main(["run", "-s", _scenario(tmp_path, {"op": "faulty_event"}), "--arch", arch]) == 1
    assert "event kind 'faulty_flush' (from faulty) is not registered" in _error(capsys)


@pytest.mark.parametrize(("plugin", "problem"), [
    ("faulty_twice", r"returned \[0x\w+, 0x\w+\), which overlaps live allocation \d+ at \[0x\w+, 0x\w+\)"),
    ("faulty_outside", r"returned \[0x\w+, 0x\w+\), outside the module range \[0x\w+, 0x\w+\)"),
])
def test_a_bad_allocator_answer_names_the_plugin_when_it_answers(plugin, problem, faulty_plugins, tmp_path, capsys,
                                                                  arch):
    import re

    faulty_plugins(plugin)
    assert main(["run", "-s", _scenario(tmp_path, *ALLOC_TWO), "--arch", arch]) == 1
    line = _error(capsys)
    assert re.fullmatch(rf"permalloc: error: ops\[\d\] \(alloc\): plugin '{plugin}': permalloc_alloc {problem}", line)


@pytest.mark.parametrize(("plugin", "problem"), [
    ("faulty_nan", "faulty.ratio is not a finite number"),
    ("faulty_set", "Object of type set is not JSON serializable"),
])
def test_a_result_strict_json_cannot_hold_is_refused_by_name(plugin, problem, faulty_plugins, tmp_path, capsys, arch):
    faulty_plugins(plugin)
    out = tmp_path / "out.json"
    out.write_text("old")
    assert main(["run", "-s", _scenario(tmp_path, *ALLOC_TWO), "--arch", arch, "--format", "json",
                 "-o", str(out)]) == 1
    assert _error(capsys) == (f"permalloc: error: plugin '{plugin}': permalloc_result_extra returned what strict "
                              f"JSON cannot hold: {problem}")
    assert out.read_text() == "old"


def test_an_arch_plugin_that_serves_no_spec_breaks_nothing(faulty_plugins, tmp_path, capsys, arch):
    faulty_plugins("faulty_declines")
    assert main(["run", "-s", _scenario(tmp_path, *ALLOC_TWO), "--arch", arch, "--format", "json"]) == 0
    assert main(["plugins"]) == 0
    assert main(["run", "-s", _scenario(tmp_path, *ALLOC_TWO), "--arch", "faulty"]) == 1
    assert _error(capsys).endswith("(plugins that do not serve this spec and policy: faulty_declines)")


def test_timeout_stops_a_plugin_that_never_returns(faulty_plugins, tmp_path, capsys, arch):
    faulty_plugins("faulty_spin")
    start = time.monotonic()
    assert main(["run", "-s", _scenario(tmp_path, {"op": "faulty_spin"}), "--arch", arch, "--timeout", "1"]) == 1
    assert time.monotonic() - start < 30
    assert _error(capsys) == ("permalloc: error: ops[0] (faulty_spin): policy default: still running after "
                              "--timeout 1 s; stopped")


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/PID/stat, None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _children(pid: int) -> set[int]:
    return {int(entry) for entry in os.listdir("/proc") if entry.isdigit()
            and (stat := _stat(entry)) is not None and stat[1] == pid and stat[0] != "Z"}


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_compare_workers_time_out_and_die_with_their_parent(faulty_plugins, tmp_path, arch):
    env = faulty_plugins("faulty_spin")
    argv = [sys.executable, "-m", "permalloc.cli", "compare", "-s", _scenario(tmp_path, {"op": "faulty_spin"}),
            "--arch", arch, "-p", "legacy", "-p", "linux-6.1", "-j", "2", "-q"]
    done = subprocess.run([*argv, "--timeout", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "still running after --timeout 2 s; stopped" in done.stderr.splitlines()[-1]
    parent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: len(_children(parent.pid)) >= 2, 60), "the workers never started"
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait(lambda: not any(_alive(w) for w in workers), 20), "a worker outlived its parent"
    finally:
        parent.kill()



# -- the contract observer (plugins/invariants/contract.py) ----------------------------------------
LIFECYCLE = [{"op": "alloc", "id": "t", "size": 12288, "perm": "RX"}, {"op": "write", "id": "t"},
             {"op": "finish", "id": "t"}, {"op": "alloc", "id": "d", "size": 8192, "perm": "RW"},
             {"op": "write", "id": "d"}, {"op": "finish", "id": "d"}, {"op": "change", "id": "d", "perm": "R"},
             {"op": "free", "id": "t"}, {"op": "free", "id": "d"}]

CONTRACT_FAULTS = [
    ("faulty_finish", 3, 3, "permalloc_finish",  # the text left RW (the RW data finishes right by doing nothing)
     r"left 3 page\(s\) of allocation \d+ at \[0x\w+, 0x\w+\) mapped RW \(asked RX\)"),
    ("faulty_change", 7, 2, "permalloc_change",
     r"left 2 page\(s\) of allocation \d+ at \[0x\w+, 0x\w+\) mapped RW \(asked R\)"),
    ("faulty_free_mapped", 8, 6, "permalloc_free",
     r"left 3 page\(s\) of allocation \d+ at \[0x\w+, 0x\w+\) given back to the page allocator still mapped in "
     r"module/vmalloc space"),
    ("faulty_free_tlb", 8, 3, "permalloc_free",
     r"left 3 page\(s\) of allocation \d+ at \[0x\w+, 0x\w+\) given back to the page allocator with an executable "
     r"translation still cached in a TLB"),
]


@pytest.mark.parametrize(("plugin", "index", "pages", "hook", "problem"), CONTRACT_FAULTS,
                         ids=[fault[0] for fault in CONTRACT_FAULTS])
def test_an_arch_that_breaks_a_contract_step_is_counted_and_named_under_strict(plugin, index, pages, hook, problem,
                                                                               faulty_plugins, tmp_path, capsys):
    # pages: over the whole scenario (every free of a faulty free is at fault: 3 + 2 + 1 pages mapped;
    # the text's 3 pages cached executable: a stale writable entry of the data is what a plain vfree
    # leaves too); the first step at fault is ops[index]
    import re

    faulty_plugins(plugin)
    scenario = _scenario(tmp_path, *[{"op": "alloc", "id": "x", "size": 4096, "perm": "RW"}], *LIFECYCLE,
                         {"op": "free", "id": "x"})
    assert main(["run", "-s", scenario, "--arch", plugin, "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert result["totals"]["contract_violations"] == pages  # exit 0 without --strict: counted, not hidden
    assert result["totals"]["wx_violations"] == 0  # the W^X checker alone saw nothing
    line = result["extra"]["contract"]["violations"][0]
    assert re.fullmatch(rf"plugin '{plugin}': {hook} {problem}", line), line
    assert main(["run", "-s", scenario, "--arch", plugin, "--strict"]) == 1
    assert re.fullmatch(rf"permalloc: error: ops\[{index}\] \(\w+\): plugin '{plugin}': {hook} {problem}",
                        _error(capsys))


def test_compare_strict_names_the_plugin_and_hook(faulty_plugins, tmp_path, capsys):
    faulty_plugins("faulty_finish")
    argv = ["compare", "-s", _scenario(tmp_path, *LIFECYCLE), "--arch", "faulty_finish", "-p", "legacy", "-q"]
    assert main([*argv, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["totals"]["contract_violations"] == 3
    assert main([*argv, "--strict"]) == 1
    assert "plugin 'faulty_finish': permalloc_finish left 3 page(s)" in _error(capsys)


# -- answers of the wrong shape (pluginmanager.ANSWER_CHECKS, elf machines, report columns) ---------
LIVE_TEXT = [{"op": "alloc", "id": "a", "size": 4096, "perm": "RX"}, {"op": "write", "id": "a"},
             {"op": "finish", "id": "a"}, {"op": "free", "id": "a"}]

WRONG_ANSWERS = [
    ("faulty_direct_map", LIVE_TEXT, "", "permalloc_arch_direct_map returned the leaf ('0', 1, 512), expected "
     "(start_pfn, end_pfn, leaf_pages) of ints"),
    ("faulty_jit", LIVE_TEXT, "", "permalloc_bpf_jit_image returned (100, 0), expected (jited_len, binary_align, "
     "pack_align) of positive ints"),
    ("faulty_teardown", LIVE_TEXT, "", "permalloc_machine_teardown returned a list holding int, expected a list of str"),
    ("faulty_writable", LIVE_TEXT, "ops[1] (write): ", "permalloc_writable returned bool, expected int"),
    ("faulty_shrink", [{"op": "pressure", "pages": 10}], "ops[0] (pressure): ",
     "permalloc_shrink returned -1, expected a count >= 0"),
    ("faulty_layouts", [{"op": "load_module", "module": "ext4"}], "ops[0] (load_module): ",
     "permalloc_module_layouts returned str, expected layouts with a name (str) and a plan"),
    ("faulty_column", LIVE_TEXT, "", "the value of report column 'boom' (permalloc_report_columns) raised "
     "ZeroDivisionError: integer division or modulo by zero"),
]


@pytest.mark.parametrize(("plugin", "ops", "where", "problem"), WRONG_ANSWERS, ids=[w[0] for w in WRONG_ANSWERS])
def test_an_answer_of_the_wrong_shape_is_one_line_naming_the_plugin(plugin, ops, where, problem, faulty_plugins,
                                                                     tmp_path, capsys, arch):
    faulty_plugins(plugin)
    assert main(["run", "-s", _scenario(tmp_path, *ops), "--arch", arch]) == 1
    assert _error(capsys) == f"permalloc: error: {where}plugin '{plugin}': {problem}"


def test_a_runtime_patch_count_of_the_wrong_type_is_named(faulty_plugins, tmp_path, capsys):
    faulty_plugins("faulty_patch")  # the patchers of static keys apply to x86
    assert main(["run", "-s", _scenario(tmp_path, {"op": "static_key", "key": "k1", "enable": True}),
                 "--arch", "x86"]) == 1
    assert _error(capsys) == ("permalloc: error: ops[0] (static_key): plugin 'faulty_patch': permalloc_runtime_patch "
                              "returned bool, expected int")


def test_elf_machines_of_the_wrong_type_are_named(faulty_plugins, tmp_path, capsys):
    faulty_plugins("faulty_elf")
    (tmp_path / "a.ko").write_bytes(b"junk")
    assert main(["ingest", str(tmp_path), "-o", str(tmp_path / "w.json.gz")]) == 1
    assert _error(capsys) == ("permalloc: error: plugin 'faulty_elf': permalloc_elf_machines returned int, expected a "
                              "list of ElfMachine")


def test_a_measurement_check_of_the_wrong_shape_is_named(faulty_plugins):
    from permalloc import Machine, MachineSpec, PluginError

    faulty_plugins("faulty_check")
    m = Machine(MachineSpec(arch="generic", memory=1 << 30, cpus=2))
    with pytest.raises(PluginError, match=r"^plugin 'faulty_check': permalloc_measurement_check returned "
                                          r"\{'proc_modules_size': 3\}, expected \{column: \[measured, simulated\]\} "
                                          r"of numbers$"):
        m.hook.permalloc_measurement_check(machine=m, event="mod_load", row={})
