"""Benchmark of ``permalloc sweep``: a 1,000-run grid on local processes and on Dask.

4 policies × 5 CPU counts × 5 RAM sizes × 10 seeds of BPF churn (the first ``--ops`` ops of
the built-in ``bpf-churn`` scenario, so that both executors finish in minutes on 2 cores),
run with the local executor (``--jobs``) and through a Dask ``LocalCluster`` of as many
workers, each into its own output folder; then the local sweep again, everything done.

Reports wall time and runs/s of each, Dask's overhead over local (target: within 15 %), the
resume time (target: under 2 s) and whether the two Parquet files are byte-identical.

    python benchmarks/sweep.py [--ops 1000] [--jobs 2] [--seeds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from permalloc import api
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.grid import Grid
from permalloc.run.registry import resolve_scenario
from permalloc.run.tidy import write_tables

POLICIES = ["legacy", "rfc", "linux-6.1", "linux-6.12"]
CPUS = [2, 8, 32, 128, 512]
MEMORY = ["2G", "4G", "16G", "64G", "256G"]


def _timed(grid: Grid, out: Path, **executor: object) -> tuple[float, int]:
    started = time.perf_counter()
    result = api.sweep(grid, output=out, **executor)
    write_tables(result.to_frame(), out, seeds=10)
    return time.perf_counter() - started, result.ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=1000, help="ops of bpf-churn each run replays (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="workers of both executors")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    full = resolve_scenario(registry_manager(), "bpf-churn")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scenario = root / "churn.json"
        scenario.write_text(json.dumps({"name": f"bpf-churn-{args.ops}", "description": f"the first {args.ops} ops "
                                        "of bpf-churn", "ops": full.model_dump(mode="json")["ops"][:args.ops]}))
        grid = Grid(name="bench", scenarios=[str(scenario)], policies=POLICIES, machine={"arch": "x86"},
                    axes={"cpus": CPUS, "memory": MEMORY}, seeds=args.seeds)
        local, ran = _timed(grid, root / "local", jobs=args.jobs)
        print(f"local ({args.jobs} processes): {ran} runs in {local:.1f} s, {ran / local:.1f} runs/s")
        dask, ran = _timed(grid, root / "dask", dask=f"local:{args.jobs}")
        print(f"Dask LocalCluster ({args.jobs} workers): {ran} runs in {dask:.1f} s, {ran / dask:.1f} runs/s")
        print(f"Dask overhead over local: {100 * (dask / local - 1):+.1f} % (target: within 15 %)")
        resume, ran = _timed(grid, root / "local", jobs=args.jobs)
        print(f"resume with every run done: {resume:.2f} s, {ran} runs (target: under 2 s)")
        same = (root / "local/results.parquet").read_bytes() == (root / "dask/results.parquet").read_bytes()
        print(f"results.parquet byte-identical local vs Dask: {same}")


if __name__ == "__main__":
    main()
