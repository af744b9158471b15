from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from permalloc import MachineSpec
from permalloc.cli import main
from permalloc.model.metrics import METRICS
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.report.tables import ReportDocument
from permalloc.run.compare import compare
from permalloc.run.registry import policies, resolve_scenario
from permalloc.run.scenario import Scenario

SMALL = Scenario(name="small", ops=[
    {"op": "load_module", "module": "crc16"},
    {"op": "alloc", "id": "a", "size": 20000, "perm": "RX"},
    {"op": "write", "id": "a"},
    {"op": "finish", "id": "a"},
    {"op": "load_module", "module": "mbcache"},
    {"op": "free", "id": "a"},
    {"op": "unload_module", "module": "crc16"},
])


def _any_arch_policies():
    return [p for name, p in policies(registry_manager()).items() if p.arch is None and name != "default"]


def test_results_do_not_depend_on_jobs(arch):
    spec = MachineSpec(arch=arch, memory="2G", cpus=4)
    chosen = _any_arch_policies()
    serial = compare(SMALL, spec, chosen, jobs=1)
    parallel = compare(SMALL, spec, chosen, jobs=2)
    assert [r.model_dump() for r in serial] == [r.model_dump() for r in parallel]
    assert [r.policy for r in serial] == [p.name for p in chosen]


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL.model_dump()))
    return path


def test_json_validates_against_the_documented_shape(small_file, capsys, arch, flavour):
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "--format", "json", "-q"]) == 0
    doc = ReportDocument.model_validate_json(capsys.readouterr().out)
    assert {r.policy for r in doc.results} >= {"legacy", "linux-6.1", "linux-6.12"}
    assert doc.machine.arch == arch and doc.scenario == "small"
    # each policy on the workload of its own kernel, for the arch's machine
    ran_on = {r.policy: r.workload for r in doc.results}
    assert ran_on["linux-6.12"] == f"debian-6.12.118-{flavour}" and ran_on["linux-6.1"] == f"debian-6.1.0-57-{flavour}"


def test_documented_schema_is_the_models():
    documented = json.loads((Path(__file__).resolve().parents[3] / "docs" / "output-schema.json").read_text())
    assert documented == ReportDocument.model_json_schema()


def test_workload_forces_one_kernel_for_every_policy(small_file, capsys, arch, flavour):
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "-p", "linux-6.1", "-p",
                 "linux-6.12", "-w", f"debian-6.12.118-{flavour}", "--format", "csv", "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["policy"], r["workload"]) for r in rows} == {("linux-6.1", f"debian-6.12.118-{flavour}"),
                                                            ("linux-6.12", f"debian-6.12.118-{flavour}")}
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "-p", "linux-6.1", "-p",
                 "linux-6.12", "-q"]) == 0
    table = capsys.readouterr().out
    assert "workload" in table and "6.1.0-57-" in table and "6.12.118-" in table  # the table says it


def test_csv_has_one_row_per_policy_and_metric(small_file, capsys, arch):
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "-p", "legacy", "-p", "linux-6.12",
                 "--format", "csv", "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    totals = [r for r in rows if r["op"] == "all"]
    assert len(totals) == 2 * len(METRICS)
    assert {r["policy"] for r in rows} == {"legacy", "linux-6.12"}
    assert any(r["op"] == "module_load" and r["metric"] == "shootdowns" and float(r["mean"]) > 0 for r in rows)


def test_plots_and_html(small_file, tmp_path, capsys, arch, flavour):
    plot = tmp_path / "cmp.png"
    html_dir = tmp_path / "report"
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "-p", "legacy", "-p", "linux-6.1",
                 "--plot", str(plot), "--html", str(html_dir), "-q"]) == 0
    for name in ("cmp.png", "cmp-timeline.png", "cmp-per-op.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cmp-per-op.png").stat().st_size > 10_000
    assert [p.name for p in html_dir.iterdir()] == ["index.html"]  # self-contained: the plots are inline
    page = (html_dir / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "http" not in page
    assert 'id="totals"' in page and "shootdowns" in page
    assert f"Debian linux-image-6.1.0-57-{flavour}-unsigned" in page  # the workload in words
    assert "pre-RFC" in page  # legacy's description
    assert f"Machine: {arch}, 8 CPUs, 2 GiB RAM" in page
    assert "legacy" in capsys.readouterr().out  # the table still goes to stdout


def test_policy_file_and_bad_policy_file(tmp_path, small_file, capsys, arch):
    good = tmp_path / "mine.toml"
    good.write_text('name = "mine"\nkernel = "6.12"\nmodule_layout = "module-memory"\ndescription = "mine"\n')
    assert main(["compare", "-s", str(small_file), "--arch", arch, "--memory", "2G", "-p", str(good), "--format", "json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["policy"] == "mine"
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nmodule_layout = 3\n')
    assert main(["compare", "-s", str(small_file), "-p", str(bad), "-q"]) == 1
    assert "bad.toml: module_layout: Input should be a valid string" in capsys.readouterr().err


def test_unknown_layout_in_a_policy_is_named(small_file, capsys, arch):
    assert main(["compare", "-s", str(small_file), "--arch", arch, "-p", "legacy", "--set", "module_layout=zigzag", "-q"]) == 1
    assert "unknown module_layout 'zigzag'; known: contiguous, module-memory, rfc" in capsys.readouterr().err


def test_default_scenario_is_boot_then_churn_then_tracing():
    pm = registry_manager()
    default = resolve_scenario(pm, "default")
    boot = resolve_scenario(pm, "boot")
    assert default.ops[: len(boot.ops)] == boot.ops
    churn = resolve_scenario(pm, "bpf-churn")
    assert [(p.name, p.start) for p in default.phases] == [
        ("boot", 0), ("bpf-churn", len(boot.ops)), ("tracing", len(boot.ops) + len(churn.ops))]
