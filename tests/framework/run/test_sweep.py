from __future__ import annotations

import json

import pytest

from permalloc.cli import main
from permalloc.errors import PermallocError
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.executor import DaskExecutor, LocalExecutor
from permalloc.run.grid import expand, load_grid
from permalloc.run.sweep import Store, run_sweep
from permalloc.run.tidy import frame

GRID = """
description = "tiny"
scenarios = ["tiny.json"]
policies = ["legacy", "linux-6.1"]
seeds = 2
[machine]
arch = "x86"
memory = "1G"
[axes]
cpus = [2, 16]
"""


@pytest.fixture
def grid_file(tiny_dir):
    (tiny_dir / "g.toml").write_text(GRID)
    return tiny_dir / "g.toml"


def _plans(path):
    grid = load_grid(path)
    return grid, expand(registry_manager(), grid, path.parent)


def test_results_do_not_depend_on_the_executor(grid_file, tmp_path):
    grid, plans = _plans(grid_file)
    alone = run_sweep(grid, plans, LocalExecutor(1)).to_frame()
    pool = run_sweep(grid, plans, LocalExecutor(2)).to_frame()
    backwards = run_sweep(grid, plans[::-1], LocalExecutor(2))
    assert alone.equals(pool)
    assert frame(backwards.records[::-1], grid.swept()).equals(alone)
    # the numbers are the runs': legacy flushes on every load, more IPIs with more CPUs
    totals = alone[(alone["op"] == "all") & (alone["metric"] == "ipis")].set_index(["policy", "cpus", "seed"])["value"]
    assert totals["legacy", 16, 0] > totals["legacy", 2, 0] > 0
    assert totals["linux-6.1", 16, 0] < totals["legacy", 16, 0]


def test_dask_local_cluster_gives_byte_identical_parquet(grid_file, tmp_path):
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(["sweep", str(grid_file), "-o", str(local), "-j", "2", "-q"]) == 0
    assert main(["sweep", str(grid_file), "-o", str(dask), "--dask", "local:2", "-q"]) == 0
    assert (local / "results.parquet").read_bytes() == (dask / "results.parquet").read_bytes()
    assert (local / "results.csv").read_bytes() == (dask / "results.csv").read_bytes()
    assert (local / "summary.csv").read_bytes() == (dask / "summary.csv").read_bytes()


def test_a_stopped_sweep_resumes_where_it_stopped(grid_file, tmp_path):
    grid, plans = _plans(grid_file)
    out = tmp_path / "out"
    first = run_sweep(grid, plans[:3], LocalExecutor(1), out)
    assert first.ran == 3
    assert run_sweep(grid, plans, LocalExecutor(1), out).ran == len(plans) - 3
    seen: list[bool] = []
    again = run_sweep(grid, plans, LocalExecutor(1), out, on_done=lambda plan, cached: seen.append(cached))
    assert again.ran == 0 and seen == [True] * len(plans)
    assert again.to_frame().equals(run_sweep(grid, plans, LocalExecutor(1)).to_frame())
    Store(out).path(plans[5].key).write_text("{ truncated")  # a damaged result runs again
    assert run_sweep(grid, plans, LocalExecutor(1), out).ran == 1


def test_an_interrupted_sweep_keeps_what_finished(grid_file, tmp_path):
    grid, plans = _plans(grid_file)
    out = tmp_path / "out"
    done = []

    def interrupt(plan, cached):
        done.append(plan)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, plans, LocalExecutor(2), out, on_done=interrupt)
    assert len(list((out / "runs").glob("*.json"))) == 2
    assert run_sweep(grid, plans, LocalExecutor(2), out).ran == len(plans) - 2


def test_a_failing_run_is_named(grid_file, tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps({"name": "bad", "ops": [{"op": "unload_bpf", "id": "nope"}]}))
    grid, plans = _plans(grid_file)
    with pytest.raises(PermallocError, match=r"^run scenario=bad policy=legacy arch=x86 .* cpus=2 seed=0: ops\[0\]"):
        run_sweep(grid, plans, LocalExecutor(1))
    with pytest.raises(PermallocError, match=r"^run scenario=bad policy=legacy .*: ops\[0\]"):
        run_sweep(grid, plans[:1], DaskExecutor("local:1"))


def test_cli_sweep_writes_tables_plot_and_summary(grid_file, tmp_path, capsys):
    out, plot = tmp_path / "out", tmp_path / "cpus.png"
    assert main(["sweep", str(grid_file), "-o", str(out), "-j", "1", "--plot", str(plot), "-m", "ipis"]) == 0
    captured = capsys.readouterr()
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sweep g: run totals" in captured.out and "linux-6.1" in captured.out
    assert "8 runs done now, 0 found done" in captured.err
    assert main(["sweep", str(grid_file), "-o", str(out), "-j", "1"]) == 0
    assert "0 runs done now, 8 found done" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--x", "warp", "--plot", "p.png"], "--x 'warp': not a column"),
    (["--metric", "warp", "--plot", "p.png"], "--metric 'warp': not a metric"),
    (["--dask", "local:0"], "local:N needs a whole number"),
    (["--plot", "p.gif"], "plots are written as"),
])
def test_cli_sweep_bad_options_are_one_line(grid_file, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(grid_file), "-o", str(tmp_path / "o"), "-j", "1", *extra]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("permalloc: error:")


def test_cli_sweep_schema_is_the_grid_model(capsys):
    assert main(["sweep", "--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Grid" and "axes" in schema["properties"]
