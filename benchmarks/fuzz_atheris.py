"""The atheris engine of benchmarks/fuzz.py: one target under libFuzzer, in this process.

    python benchmarks/fuzz_atheris.py TARGET --stats FILE [--inputs N] [--hang 10] [--seed-dir DIR] [--seeds 2]
                                      [--save DIR]

``fuzz.py --engine atheris`` runs this once per target (ingest-0.., scenario, policy): libFuzzer
ends the process it runs in. libFuzzer's byte strings go to the target's hypothesis test
through ``.hypothesis.fuzz_one_input`` (hypothesis's entry point for external fuzzers), which
draws the case from them; permalloc and pyelftools are instrumented as they are imported, so
libFuzzer keeps the strings that reach new code. The counts go to ``--stats`` as JSON, every
few hundred runs and at the last one (libFuzzer's exit runs no atexit handler). The child
stops after ``--inputs`` cases reached the check, or after ``RUNS_PER_INPUT`` times as many
runs if most byte strings are too short to draw a case from.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

RUNS_PER_INPUT = 10
WRITE_EVERY = 200  # runs between two writes of --stats


def need_atheris() -> ModuleType:
    """atheris, or exit 2 with one line saying how to get it."""
    try:
        import atheris
    except ImportError:
        print("fuzz.py: --engine atheris: atheris is not installed (pip install atheris, or tox -e fuzz-atheris)",
              file=sys.stderr)
        sys.exit(2)
    return atheris


def main() -> None:
    atheris = need_atheris()
    with atheris.instrument_imports(include=["permalloc", "elftools"]):
        import fuzz  # benchmarks/fuzz.py, and with it permalloc and pyelftools

    from permalloc.atomicfile import write_text

    parser = fuzz.options(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("target", help="ingest-0.., scenario or policy")
    parser.add_argument("--stats", type=Path, required=True, help="the JSON file of the counts")
    args = parser.parse_args()
    found = fuzz.targets(fuzz.seeds_of(parser, args), Path(tempfile.mkdtemp(prefix="permalloc-fuzz-")))
    if args.target not in found:
        parser.error(f"no target {args.target!r}: {', '.join(found)}")
    tally = fuzz.Tally(args.target, args.hang, args.save)
    fuzz_one_input = tally.test(found[args.target], args.inputs).hypothesis.fuzz_one_input
    cap, runs, start = RUNS_PER_INPUT * args.inputs, 0, time.monotonic()

    def write() -> None:
        write_text(args.stats, json.dumps(tally.row(runs, time.monotonic() - start, fuzz.peak_rss_mb())))

    def test_one_input(data: bytes) -> None:
        nonlocal runs
        runs += 1
        try:
            fuzz_one_input(data)
        except Exception as exc:  # noqa: BLE001 - hypothesis's own, outside the check: counted, not libFuzzer's crash
            tally.outcomes["crash"] += 1
            tally.keep(f"{type(exc).__name__}: {exc}".splitlines()[0], data)
        if tally.inputs >= args.inputs:
            write()
            sys.stdout.flush()
            os._exit(0)  # libFuzzer counts runs, not cases: stop at the budget of cases
        if runs % WRITE_EVERY == 0 or runs == cap:  # at runs == cap libFuzzer ends the process
            write()

    # time_limit's SIGALRM is the hang detector: with a handler already on SIGALRM, atheris and
    # libFuzzer set none of theirs (their timeout would end the run at the first hang)
    signal.signal(signal.SIGALRM, lambda signum, frame: None)
    args.save.mkdir(parents=True, exist_ok=True)
    # -len_control=0: long byte strings from the start (a short one draws no case)
    atheris.Setup([sys.argv[0], f"-runs={cap}", "-len_control=0", f"-artifact_prefix={args.save}/{args.target}-"],
                  test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
