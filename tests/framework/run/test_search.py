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
