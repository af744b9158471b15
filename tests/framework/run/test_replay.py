"""Self-describing results and ``permalloc replay``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permalloc import __version__
from permalloc.cli import main
from permalloc.run.provenance import file_hash

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rx-16k.json"


@pytest.fixture
def recorded(tmp_path, arch, capsys):
    out = tmp_path / "r.json"
    argv = ["compare", "-s", str(EXAMPLE), "--arch", arch, "--memory", "2G", "--cpus", "4", "--numa-nodes", "2",
            "-p", "linux-6.1", "-p", "linux-6.1[bpf_allocator=per-program]", "--seeds", "2", "--baseline", "linux-6.1",
            "--format", "json", "-o", str(out), "-q", "-j", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    return out, argv


def test_a_result_says_what_produced_it(recorded, arch):
    path, argv = recorded
    doc = json.loads(path.read_text())
    made = doc["provenance"]
    assert made["permalloc"] == __version__ and made["command"] == ["permalloc", *argv]
    assert made["machine"]["numa_nodes"] == 2 and made["machine"]["arch"] == arch and made["machine"]["cpus"] == 4
    assert made["seeds"] == [0, 1]
    assert [p["name"] for p in made["policies"]] == ["linux-6.1", "linux-6.1[bpf_allocator=per-program]"]
    assert [p["bpf_allocator"] for p in made["policies"]] == ["pack", "per-program"]
    assert made["scenario"]["ops"] == json.loads(EXAMPLE.read_text())["ops"] and made["scenario_hash"].startswith("sha256:")
    assert {"name", "dist", "version"} <= set(made["plugins"][0])
    assert any(p["name"] == arch for p in made["plugins"])
    for entry in made["workloads"]:
        assert entry["hash"].startswith("sha256:") and entry["name"].startswith("debian-6.1.0-57-")
    assert [r["policy"] for r in doc["results"]] == ["linux-6.1", "linux-6.1[bpf_allocator=per-program]"]
    assert set(doc["seeds"]["policies"]) == {"linux-6.1", "linux-6.1[bpf_allocator=per-program]"}
    assert len(doc["seeds"]["policies"]["linux-6.1"]["shootdowns"]["values"]) == 2


def test_replay_of_an_untouched_result_is_equal(recorded, capsys):
    path, _ = recorded
    assert main(["replay", str(path), "-q", "-j", "1"]) == 0
    out = capsys.readouterr().out
    assert "replay equal" in out and len(out.strip().splitlines()) == 1


def test_replay_names_a_tampered_number(recorded, capsys):
    path, _ = recorded
    doc = json.loads(path.read_text())
    doc["results"][1]["totals"]["shootdowns"] += 7
    path.write_text(json.dumps(doc))
    assert main(["replay", str(path), "-q", "-j", "1"]) == 1
    out = capsys.readouterr().out
    assert "results[linux-6.1[bpf_allocator=per-program]].totals.shootdowns" in out and "1 numbers differ" in out


def test_replay_says_which_plugin_version_differs(recorded, capsys):
    path, _ = recorded
    doc = json.loads(path.read_text())
    doc["provenance"]["plugins"][0]["version"] = "0.0-old"
    doc["results"][0]["totals"]["cost_ns"] += 1
    path.write_text(json.dumps(doc))
    assert main(["replay", str(path), "-q", "-j", "1"]) == 1
    name = doc["provenance"]["plugins"][0]["name"]
    assert f"differs: plugin {name}: recorded 0.0-old" in capsys.readouterr().out


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not JSON"),
    ("{}", "not a permalloc result"),
    (json.dumps({"scenario": "s", "machine": {"arch": "x86", "cpus": 1, "memory": 1, "seed": 0}, "results": []}),
     "has no provenance"),
])
def test_replay_refuses_what_is_not_a_result(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_file_hash_is_of_the_bytes(tmp_path):
    one, two = tmp_path / "a", tmp_path / "b"
    one.write_bytes(b"abc")
    two.write_bytes(b"abd")
    assert file_hash(one) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_hash(one) != file_hash(two)
