"""Outputs are replaced whole or not at all (permalloc.atomicfile)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from permalloc import OutputError
from permalloc.atomicfile import atomic_write, check_writable, write_text


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_targets_that_cannot_be_written_are_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"missing/out.json: cannot write: no such directory"):
        check_writable(tmp_path / "missing" / "out.json")
    with pytest.raises(OutputError, match=r"cannot write: is a directory"):
        check_writable(tmp_path)
    with pytest.raises(OutputError, match=r"file is not a directory"):
        check_writable(tmp_path / "file" / "report", directory=True)
    check_writable(tmp_path / "new" / "report", directory=True)  # created later, with its parents


def test_a_full_disk_during_compare_keeps_the_old_result(tmp_path):
    """RLIMIT_FSIZE in a subprocess stands for a full disk: the write fails with EFBIG."""
    old = tmp_path / "result.json"
    old.write_text(json.dumps({"old": "x" * 100_000}))
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"name": "s", "ops": [{"op": "alloc", "id": "a", "size": 16384, "perm": "RX"}]}))
    code = f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        from permalloc.cli import main
        sys.exit(main(["compare", "-s", {str(scenario)!r}, "--memory", "1G", "-p", "legacy", "-p", "rfc", "-q",
                       "--format", "json", "-o", {str(old)!r}]))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"permalloc: error: {old}: cannot write: File too large (the old file, if any, is kept)\n"
    assert json.loads(old.read_text()) == {"old": "x" * 100_000}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json", "s.json"]
