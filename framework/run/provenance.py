"""What produced a result: enough to tell two result files apart and to run one again.

Every result document carries a ``provenance`` section (docs/architecture.md, "Output"):
the permalloc version, each discovered plugin with its distribution and version, the
machine spec in full (defaults included), the scenario in full with a content hash, each
policy's every field after ``--set`` and variants, each workload's name and the hash of its
file, the seeds, and the command line. ``permalloc replay`` rebuilds the run from it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from permalloc import __version__
from permalloc.model.spec import MachineSpec
from permalloc.plugin.pluginmanager import discover
from permalloc.plugin.policy import PolicySpec
from permalloc.run.scenario import Scenario
from permalloc.run.workloads import WorkloadSource

_CHUNK = 1 << 20


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes, as ``sha256:HEX``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def document_hash(document: Any) -> str:
    """sha256 of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def plugins() -> list[dict[str, str]]:
    """Every discovered plugin: name, distribution, version, and the error of one that failed."""
    out = []
    for record in discover():
        entry = {"name": record.name, "dist": record.dist, "version": record.version}
        if record.error:
            entry["error"] = record.error
        out.append(entry)
    return out


def workload_entry(workload: WorkloadSource | None) -> dict[str, Any] | None:
    if workload is None:
        return None
    return {"name": workload.name, "origin": workload.origin, "kernel_release": workload.kernel_release,
            "file": workload.path.name, "hash": file_hash(workload.path)}


def describe(
    spec: MachineSpec,
    scenario: Scenario,
    policies: Sequence[PolicySpec],
    workloads: Sequence[WorkloadSource | None],
    seeds: Sequence[int],
    argv: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The provenance section of a result; ``workloads[i]`` is what ``policies[i]`` ran on."""
    dumped = scenario.model_dump(mode="json")
    return {
        "permalloc": __version__,
        "python": sys.version.split()[0],
        "command": list(sys.argv if argv is None else argv),
        "plugins": plugins(),
        "machine": spec.model_dump(mode="json"),
        "scenario": dumped,
        "scenario_hash": document_hash(dumped),
        "policies": [p.model_dump(mode="json") for p in policies],
        "workloads": [workload_entry(w) for w in workloads],
        "seeds": list(seeds),
    }
