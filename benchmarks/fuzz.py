"""Long fuzz run: the ingest target and the scenario/policy file targets, on demand.

    python benchmarks/fuzz.py [--engine hypothesis|atheris] [--inputs 10000] [--hang 10] [--seed-dir DIR]
                              [--seeds 2] [--save DIR] [--json]

Runs the targets of ``permalloc.plugins.module_loader.fuzz`` (structured mutations of the
``--seeds`` smallest real modules under DIR: an extracted Debian linux-image package, default
the first /work/kernel/*/lib/modules or /tmp/kernel/*/lib/modules; docs/workload.md says how
to get one) and ``permalloc.run.modelfuzz`` (scenario and policy files), ``--inputs`` in all,
split evenly. Both engines run each target's same hypothesis test (strategy and check):

* ``hypothesis`` (default): hypothesis draws the inputs at random, in this process.
* ``atheris`` (``pip install atheris``): libFuzzer, coverage-guided by atheris's
  instrumentation of permalloc and pyelftools, feeds its byte strings to the test's
  ``.hypothesis.fuzz_one_input``, which draws the input from them. libFuzzer ends its process,
  so each target runs in a child process (benchmarks/fuzz_atheris.py) that keeps its counts
  in a JSON file for this one to report.

Reports per target: inputs tried (cases that reached the check), accepted, refused, crashes
(any other exception, or a message that is not one line naming the file), hangs (an input
taking longer than ``--hang`` seconds, stopped by SIGALRM), runs (the engine's executions:
with atheris some byte strings are too short to draw a case from), the slowest input, wall
time and peak memory (with hypothesis one process runs every target, so its peak so far).
Each crasher is written to ``--save`` (default fuzz-crashers/) to become a regression input
under tests/. Target (issue 14): 10,000+ inputs, 0 crashes, 0 hangs. Exit status 1 if any,
2 on a usage error (atheris not installed, no seed modules).
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugins.module_loader.fuzz import Seed, check_ingest, mutants
from permalloc.run.modelfuzz import check_policy, check_scenario, documents, policy_shape, scenario_shape
from permalloc.run.scenario import op_types
from permalloc.run.timeout import RunTimeout, time_limit

PACKAGES = ("/work/kernel/image-*/lib/modules", "/work/kernel/*/image-*/lib/modules", "/tmp/kernel/image-*/lib/modules")
ENGINES = ("hypothesis", "atheris")
Target = tuple[st.SearchStrategy[Any], Callable[[Any], str]]


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


def targets(seeds: list[Seed], tmp: Path) -> dict[str, Target]:
    """Each target's strategy and check, by name: ingest-0.. (one per seed), scenario, policy."""
    registry = op_types(registry_manager())
    found: dict[str, Target] = {f"ingest-{i}": (mutants(seed), lambda data: check_ingest(tmp / "m.ko", data))
                                for i, seed in enumerate(seeds)}
    found["scenario"] = (documents(scenario_shape(registry)),
                         lambda doc: check_scenario(tmp / f"s{doc[0]}", doc[1], registry))
    found["policy"] = (documents(policy_shape()), lambda doc: check_policy(tmp / f"p{doc[0]}", doc[1]))
    return found


class Tally:
    """One target's counts, and the hypothesis test that checks one case and counts its outcome
    (both engines run it: hypothesis by calling it, atheris through ``fuzz_one_input``)."""

    def __init__(self, name: str, hang: float, save: Path) -> None:
        self.name, self.hang, self.save = name, hang, save
        self.outcomes: Counter[str] = Counter()
        self.slowest = 0.0

    def test(self, target: Target, inputs: int) -> Any:
        strategy, check = target

        @settings(max_examples=inputs, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case: object) -> None:
            start = time.monotonic()
            try:
                with time_limit(self.hang, self.name):
                    self.outcomes[check(case)] += 1
            except RunTimeout:
                self.outcomes["hang"] += 1
                self.keep("hang", case)
            except Exception:  # noqa: BLE001 - counted and kept, the run goes on
                self.outcomes["crash"] += 1
                self.keep(traceback.format_exc(limit=1).splitlines()[-1], case)
            self.slowest = max(self.slowest, time.monotonic() - start)

        return run

    @property
    def inputs(self) -> int:
        return sum(self.outcomes.values())

    def keep(self, why: str, case: object) -> None:
        """Write the crasher (its bytes, or its repr) and why to ``save``."""
        self.save.mkdir(parents=True, exist_ok=True)
        data = case[1] if isinstance(case, tuple) else case
        index = len(list(self.save.glob(f"{self.name}-*.why")))
        (self.save / f"{self.name}-{index}.bin").write_bytes(data if isinstance(data, bytes) else repr(data).encode())
        (self.save / f"{self.name}-{index}.why").write_text(why + "\n")

    def row(self, runs: int, seconds: float, peak_mb: float) -> dict[str, Any]:
        return {"target": self.name, "inputs": self.inputs, "ok": self.outcomes["ok"],
                "refused": self.outcomes["refused"], "crashes": self.outcomes["crash"], "hangs": self.outcomes["hang"],
                "runs": runs, "slowest_s": round(self.slowest, 3), "seconds": round(seconds, 1),
                "peak_rss_mb": round(peak_mb, 1)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options the run and the atheris engine's child share."""
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs over all targets (default: %(default)s)")
    parser.add_argument("--hang", type=float, default=10.0, help="seconds after which an input counts as a hang")
    parser.add_argument("--seed-dir", type=Path, default=default_seed_dir(),
                        help="an extracted package's lib/modules (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=2, help="how many of its smallest modules to mutate")
    parser.add_argument("--save", type=Path, default=Path("fuzz-crashers"), help="where crashers are written")
    return parser


def seeds_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Seed]:
    seeds = smallest_seeds(args.seed_dir, args.seeds) if args.seed_dir else []
    if not seeds:
        parser.error(f"no uncompressed .ko with symbols and relocations under {args.seed_dir}; give --seed-dir "
                     "(an extracted linux-image package, docs/workload.md)")
    return seeds


def run_hypothesis(found: dict[str, Target], share: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name, target in found.items():
        tally = Tally(name, args.hang, args.save)
        start = time.monotonic()
        tally.test(target, share)()
        rows.append(tally.row(tally.inputs, time.monotonic() - start, peak_rss_mb()))
    return rows


def run_atheris(names: list[str], share: int, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Each target in a child process under libFuzzer; its row from the JSON file it leaves."""
    rows = []
    for name in names:
        stats, log = tmp / f"{name}.json", tmp / f"{name}.log"
        command = [sys.executable, str(Path(__file__).with_name("fuzz_atheris.py")), name, "--stats", str(stats),
                   "--inputs", str(share), "--hang", str(args.hang), "--seed-dir", str(args.seed_dir),
                   "--seeds", str(args.seeds), "--save", str(args.save)]
        with log.open("wb") as out:
            status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        row = json.loads(stats.read_text()) if stats.exists() else Tally(name, args.hang, args.save).row(0, 0.0, 0.0)
        if status:  # libFuzzer stopped the child (out of memory, an exception past the test): one more crash
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            tally = Tally(name, args.hang, args.save)
            tally.keep(f"atheris child exited with status {status}: {last[0]} (its output: {log})", log.read_bytes())
            row["crashes"] += 1
        rows.append(row)
    return rows


def main() -> int:
    parser = options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--engine", choices=ENGINES, default="hypothesis",
                        help="what draws the inputs (default: %(default)s; atheris: pip install atheris)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.engine == "atheris":
        # here, not at the top: the child imports this module, and must import atheris first
        from fuzz_atheris import need_atheris

        need_atheris()
    seeds = seeds_of(parser, args)
    tmp = Path(tempfile.mkdtemp(prefix="permalloc-fuzz-"))
    share = max(1, args.inputs // (len(seeds) + 2))
    start = time.monotonic()
    if args.engine == "atheris":
        rows = run_atheris([f"ingest-{i}" for i in range(len(seeds))] + ["scenario", "policy"], share, args, tmp)
    else:
        rows = run_hypothesis(targets(seeds, tmp), share, args)
    seconds = time.monotonic() - start
    peak_mb = max(r["peak_rss_mb"] for r in rows)
    if args.json:
        print(json.dumps({"engine": args.engine, "targets": rows, "seconds": round(seconds, 1),
                          "peak_rss_mb": peak_mb}, indent=2))
    else:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        # the report's narrow style (no outer edge, no padding): ten columns in 80
        table = Table(title=f"fuzz run ({args.engine}): {sum(r['inputs'] for r in rows)} inputs in {seconds:.0f} s, "
                            f"peak RSS {peak_mb:.0f} MB", box=box.SIMPLE_HEAD, padding=(0, 0), show_edge=False)
        for column in rows[0]:
            table.add_column(column, justify="left" if column == "target" else "right")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        Console().print(table)
    return 1 if any(r["crashes"] or r["hangs"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
