"""/proc/modules sizes of real modules, by the rules of each bundled kernel, against readelf.

CI has no .ko files: data/proc-modules-readelf.json holds the sizes that
data/proc_modules_readelf.py computed from ``readelf -W -S -s`` of the packages' modules,
with no permalloc code (see its docstring for the command). Here ``permalloc run --modules``
loads the same modules from the bundled workloads and must show the same sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permalloc.cli import main

EXPECTED = json.loads((Path(__file__).with_name("data") / "proc-modules-readelf.json").read_text())
POLICY = {"6.1.0-57-amd64": "linux-6.1", "6.12.118+deb12-amd64": "linux-6.12"}


@pytest.mark.parametrize("release", sorted(EXPECTED))
def test_run_modules_shows_the_sizes_of_that_kernel(release, tmp_path, capsys, arch):
    sizes = EXPECTED[release]
    assert len(sizes) >= 20
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"name": "sample", "ops": [{"op": "load_module", "module": m} for m in sizes]}))
    assert main(["run", "-s", str(scenario), "-p", POLICY[release], "--arch", arch, "--memory", "4G", "--modules",
                 "--format", "json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["workload"] == "debian-" + release.replace("+deb12", "")
    shown = {row["name"]: row["size"] for row in result["extra"]["module_loader"]["modules"]}
    assert {name: shown[name] for name in sizes} == sizes


def test_the_table_lists_them(tmp_path, capsys, arch):
    sizes = EXPECTED["6.12.118+deb12-amd64"]
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"name": "xfs", "ops": [{"op": "load_module", "module": "xfs"}]}))
    assert main(["run", "-s", str(scenario), "-p", "linux-6.12", "--arch", arch, "--memory", "4G", "--modules"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│ xfs "))
    assert f" {sizes['xfs']} " in row and "Live" in row
