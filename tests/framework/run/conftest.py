from __future__ import annotations

import json

import pytest

# six BPF loads and an unload: a scenario that runs in milliseconds under every policy
TINY = {"name": "tiny", "ops": [{"op": "load_bpf", "id": f"p{i}", "insns": 64 * (i + 1), "kind": "ebpf"}
                                for i in range(6)] + [{"op": "unload_bpf", "id": "p0"}]}


@pytest.fixture
def tiny_dir(tmp_path):
    """A folder holding the tiny scenario as tiny.json, for grid and search files to name."""
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return tmp_path
