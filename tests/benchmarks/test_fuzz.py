"""benchmarks/fuzz.py, a small budget: the report's counts add up, and ``--engine atheris``
without atheris is one line (test_fuzz_atheris.py runs the atheris engine itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FUZZ = str(Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz.py")


def fuzz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, FUZZ, *args], capture_output=True, text=True, env=env, timeout=600,
                          check=False)


def test_the_hypothesis_engine_counts_every_input(seed_dir, tmp_path):
    done = fuzz("--inputs", "90", "--seeds", "1", "--seed-dir", str(seed_dir), "--save", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["engine"] == "hypothesis"
    assert [row["target"] for row in report["targets"]] == ["ingest-0", "scenario", "policy"]
    for row in report["targets"]:
        assert row["inputs"] == row["ok"] + row["refused"] + row["crashes"] + row["hangs"] == row["runs"] > 0, row
        assert row["crashes"] == row["hangs"] == 0, row


def test_the_atheris_engine_without_atheris_is_one_line(seed_dir, tmp_path):
    shadow = tmp_path / "shadow" / "atheris"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no atheris here')\n")  # ahead of site-packages
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    done = fuzz("--engine", "atheris", "--seed-dir", str(seed_dir), "--save", str(tmp_path), env=env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "fuzz.py: --engine atheris: atheris is not installed (pip install atheris, or tox -e fuzz-atheris)"]
