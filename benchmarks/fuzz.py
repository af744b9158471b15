"""Long fuzz run: the ingest target and the scenario/policy file targets, on demand.

    python benchmarks/fuzz.py [--inputs 10000] [--hang 10] [--seed-dir DIR] [--seeds 2] [--save DIR] [--json]

Runs the targets of ``permalloc.plugins.module_loader.fuzz`` (structured mutations of the
``--seeds`` smallest real modules under DIR: an extracted Debian linux-image package, default
the first /work/kernel/*/lib/modules or /tmp/kernel/*/lib/modules; docs/workload.md says how
to get one) and
``permalloc.run.modelfuzz`` (scenario and policy files), ``--inputs`` in all, split evenly.
Reports per target: inputs tried, accepted, refused, crashes (any other exception, or a
message that is not one line naming the file), hangs (an input taking longer than
``--hang`` seconds, stopped by SIGALRM) and the peak memory of the process. Each crasher is
written to ``--save`` (default fuzz-crashers/) to become a regression input under tests/.
Target (issue 14): 10,000+ inputs, 0 crashes, 0 hangs. Exit status 1 if any.
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugins.module_loader.fuzz import Seed, check_ingest, mutants
from permalloc.run.modelfuzz import check_policy, check_scenario, documents, policy_shape, scenario_shape
from permalloc.run.scenario import op_types
from permalloc.run.timeout import RunTimeout, time_limit

PACKAGES = ("/work/kernel/image-*/lib/modules", "/work/kernel/*/image-*/lib/modules", "/tmp/kernel/image-*/lib/modules")


def default_seed_dir() -> Path | None:
    for pattern in PACKAGES:
        for found in sorted(glob.glob(pattern)):
            return Path(found)
    return None


def smallest_seeds(directory: Path, count: int) -> list[Seed]:
    """The ``count`` smallest .ko files that have symbols and relocations to mutate."""
    seeds = []
    for path in sorted(directory.rglob("*.ko"), key=lambda p: (p.stat().st_size, str(p))):
        seed = Seed.read(path)
        if seed.symtab[1] and seed.relas:
            seeds.append(seed)
            if len(seeds) == count:
                break
    return seeds


def run_target(name: str, strategy: st.SearchStrategy, check: Callable[[object], str], inputs: int, hang: float,
               save: Path) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    slowest = 0.0

    @settings(max_examples=inputs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def target(case: object) -> None:
        nonlocal slowest
        start = time.monotonic()
        try:
            with time_limit(hang, name):
                outcomes[check(case)] += 1
        except RunTimeout:
            outcomes["hang"] += 1
            _save(save, name, "hang", case)
        except Exception:  # noqa: BLE001 - counted and kept, the run goes on
            outcomes["crash"] += 1
            _save(save, name, traceback.format_exc(limit=1).splitlines()[-1], case)
        slowest = max(slowest, time.monotonic() - start)

    start = time.monotonic()
    target()
    return {"target": name, "inputs": sum(outcomes.values()), "ok": outcomes["ok"], "refused": outcomes["refused"],
            "crashes": outcomes["crash"], "hangs": outcomes["hang"], "slowest_s": round(slowest, 3),
            "seconds": round(time.monotonic() - start, 1)}


def _save(save: Path, name: str, why: str, case: object) -> None:
    save.mkdir(parents=True, exist_ok=True)
    data = case[1] if isinstance(case, tuple) else case
    index = len(list(save.glob(f"{name}-*")))
    (save / f"{name}-{index}.bin").write_bytes(data if isinstance(data, bytes) else repr(data).encode())
    (save / f"{name}-{index}.why").write_text(why + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs over all targets (default: %(default)s)")
    parser.add_argument("--hang", type=float, default=10.0, help="seconds after which an input counts as a hang")
    parser.add_argument("--seed-dir", type=Path, default=default_seed_dir(),
                        help="an extracted package's lib/modules (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=2, help="how many of its smallest modules to mutate")
    parser.add_argument("--save", type=Path, default=Path("fuzz-crashers"), help="where crashers are written")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    seeds = smallest_seeds(args.seed_dir, args.seeds) if args.seed_dir else []
    if not seeds:
        parser.error(f"no uncompressed .ko with symbols and relocations under {args.seed_dir}; give --seed-dir "
                     "(an extracted linux-image package, docs/workload.md)")
    registry = op_types(registry_manager())
    tmp = Path(tempfile.mkdtemp(prefix="permalloc-fuzz-"))
    share = max(1, args.inputs // (len(seeds) + 2))
    rows = []
    for i, seed in enumerate(seeds):
        rows.append(run_target(f"ingest-{i}", mutants(seed), lambda data: check_ingest(tmp / "m.ko", data),
                               share, args.hang, args.save))
    rows.append(run_target("scenario", documents(scenario_shape(registry)),
                           lambda doc: check_scenario(tmp / f"s{doc[0]}", doc[1], registry), share, args.hang, args.save))
    rows.append(run_target("policy", documents(policy_shape()),
                           lambda doc: check_policy(tmp / f"p{doc[0]}", doc[1]), share, args.hang, args.save))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"targets": rows, "peak_rss_mb": round(peak_mb, 1)}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"fuzz run: {sum(r['inputs'] for r in rows)} inputs, peak RSS {peak_mb:.0f} MB")
        for column in rows[0]:
            table.add_column(column, justify="left" if column == "target" else "right")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        Console().print(table)
    return 1 if any(r["crashes"] or r["hangs"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
