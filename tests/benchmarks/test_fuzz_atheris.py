"""The atheris engine of benchmarks/fuzz.py, a small budget on every target. atheris is an
optional dependency (``tox -e fuzz-atheris`` installs it, CI does not), so this module is
skipped where it does not import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

FUZZ = str(Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz.py")


def test_every_target_under_libfuzzer_counts_every_input(seed_dir, tmp_path):
    done = subprocess.run([sys.executable, FUZZ, "--engine", "atheris", "--inputs", "600", "--seeds", "1",
                           "--seed-dir", str(seed_dir), "--save", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["engine"] == "atheris" and report["peak_rss_mb"] > 0
    assert [row["target"] for row in report["targets"]] == ["ingest-0", "scenario", "policy"]
    for row in report["targets"]:
        assert row["inputs"] == row["ok"] + row["refused"] + row["crashes"] + row["hangs"] == 200, row
        assert row["crashes"] == row["hangs"] == 0, row
        assert row["runs"] >= row["inputs"] and row["ok"] and row["refused"], row  # both sides were reached
