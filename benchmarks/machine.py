"""Machine-model benchmark: alloc+finish+free churn of 16 KiB RX allocations.

Reports ops/s on a 16 GiB / 8-CPU machine and on a 4 TiB / 512-CPU one; the model's cost
must not grow with simulated RAM or CPU count (target: within 20% of each other).

    python benchmarks/machine.py [--ops 20000] [--arch generic]
"""

from __future__ import annotations

import argparse
import time

from permalloc import Machine, MachineSpec, Perm, PolicySpec


def churn(spec: MachineSpec, policy: PolicySpec, ops: int) -> float:
    machine = Machine(spec, policy)
    live = []
    start = time.perf_counter()
    for i in range(ops):
        a = machine.perm.alloc(16384, Perm.RX)
        machine.perm.write(a, 0, 16384)
        machine.perm.finish(a)
        live.append(a)
        if len(live) > 64:  # a steady population of live allocations
            machine.perm.free(live.pop(i % 64))
    elapsed = time.perf_counter() - start
    for a in live:
        machine.perm.free(a)
    return ops / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20000)
    parser.add_argument("--arch", default="generic")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = parser.parse_args()
    policy = PolicySpec(name="bench", **dict(item.split("=", 1) for item in args.set))
    small = churn(MachineSpec(arch=args.arch, memory="16G", cpus=8), policy, args.ops)
    big = churn(MachineSpec(arch=args.arch, memory="4T", cpus=512), policy, args.ops)
    ratio = big / small
    print(f"16 GiB / 8 CPUs:    {small:10,.0f} ops/s")
    print(f"4 TiB / 512 CPUs:   {big:10,.0f} ops/s")
    print(f"ratio (big/small):  {ratio:10.2f}  ({'within' if abs(1 - ratio) <= 0.2 else 'OUTSIDE'} 20%)")


if __name__ == "__main__":
    main()
