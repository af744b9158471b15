"""Benchmarks of the main job.

1. ``permalloc compare`` with no arguments (default scenario, every built-in policy, x86,
   8 CPUs, 16 GiB): wall time of the whole command. Target: under 5 s on 2 cores.
2. A churn scenario of N raw contract ops (alloc/write/finish/free of 4-16 KiB RX and R
   allocations, about 64 live) under one policy: ops/s for 100,000 and 1,000,000 ops, and
   the ratio of the two times (linear growth gives about 10). Target: 1M ops under 60 s.

    python benchmarks/compare.py [--policy linux-6.1] [--arch x86] [--skip-default] [--max-ops 1000000]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time

from permalloc import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import resolve_policy
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run


def churn_ops(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    ops: list[dict] = []
    live: list[str] = []
    n = 0
    while len(ops) < count:
        if len(live) < 64 or rng.random() < 0.5:
            ident = f"a{n}"
            n += 1
            size = rng.choice((4096, 8192, 16384))
            perm = rng.choice(("RX", "R"))
            ops += [{"op": "alloc", "id": ident, "size": size, "perm": perm},
                    {"op": "write", "id": ident}, {"op": "finish", "id": ident}]
            live.append(ident)
        else:
            ops.append({"op": "free", "id": live.pop(rng.randrange(len(live)))})
    return _balanced(ops[:count])


def _balanced(ops: list[dict]) -> list[dict]:
    """Drop a trailing alloc/write without its finish so every op is valid."""
    while ops and ops[-1]["op"] in ("alloc", "write"):
        ops.pop()
    return ops


def time_churn(count: int, policy_name: str, arch: str) -> tuple[int, float]:
    scenario = Scenario(name=f"churn-{count}", ops=churn_ops(count))
    policy = resolve_policy(registry_manager(), policy_name)
    start = time.perf_counter()
    run(scenario, MachineSpec(arch=arch), policy)
    return len(scenario.ops), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="linux-6.1")
    parser.add_argument("--arch", default="x86")
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--max-ops", type=int, default=1_000_000)
    args = parser.parse_args()
    if not args.skip_default:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "permalloc.cli", "compare", "-q"], check=True, stdout=subprocess.DEVNULL)
        print(f"permalloc compare (no arguments): {time.perf_counter() - start:.2f} s wall")
    small_ops, small = time_churn(args.max_ops // 10, args.policy, args.arch)
    big_ops, big = time_churn(args.max_ops, args.policy, args.arch)
    print(f"churn {small_ops:>9,} ops: {small:7.2f} s  {small_ops / small:10,.0f} ops/s")
    print(f"churn {big_ops:>9,} ops: {big:7.2f} s  {big_ops / big:10,.0f} ops/s")
    print(f"time ratio (linear = {big_ops / small_ops:.1f}): {big / small:.2f}")


if __name__ == "__main__":
    main()
