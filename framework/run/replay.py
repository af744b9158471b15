"""``permalloc replay RESULT.json``: run again what a result's provenance describes, compare every number.

The machine spec, scenario, policies (after overrides and variants), workloads and seeds come
from the result's ``provenance`` (permalloc.run.provenance), not from today's defaults. Every
number under ``results`` and ``seeds`` of the new document is compared with the recorded one;
so are the permalloc and plugin versions and the workload files' hashes, which explain a
difference when there is one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from pydantic import BaseModel, ValidationError

from permalloc.errors import SpecError
from permalloc.filekind import special_kind
from permalloc.model.spec import MachineSpec
from permalloc.plugin.policy import PolicySpec
from permalloc.run.modelfile import format_validation_error
from permalloc.run.provenance import file_hash, plugins
from permalloc.run.scenario import Scenario
from permalloc.run.workloads import WorkloadSource, resolve_workload


@dataclass
class Rebuilt:
    """What a recorded result ran: enough to run it again."""

    scenario: Scenario
    spec: MachineSpec
    policies: list[PolicySpec]
    workloads: list[WorkloadSource | None]
    seeds: list[int]
    baseline: str | None
    environment: list[tuple[str, str, str]] = field(default_factory=list)  # (what, recorded, now)


def read(path: str | Path, schema: type[BaseModel]) -> dict[str, Any]:
    """The result document at ``path``, checked against ``schema`` (the report's
    ReportDocument, which this layer does not import); it must carry provenance."""
    try:
        if kind := special_kind(path):
            raise SpecError(f"{path}: cannot read: {kind} (only regular files are read)")
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(f"{path}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text)
        schema.model_validate(document)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise SpecError(f"{path}: not a permalloc result: {format_validation_error(exc)}") from None
    if not document.get("provenance"):
        raise SpecError(f"{path}: the result has no provenance section (written by a permalloc before 1.x, or by hand)")
    return document


def rebuild(document: dict[str, Any], pm: pluggy.PluginManager, origin: str) -> Rebuilt:
    """The run a document's provenance describes, with what differs in today's environment."""
    recorded = document["provenance"]
    try:
        scenario = Scenario.model_validate(recorded["scenario"])
        spec = MachineSpec.model_validate(recorded["machine"])
        policies = [PolicySpec.model_validate(p) for p in recorded["policies"]]
    except ValidationError as exc:
        raise SpecError(f"{origin}: provenance: {format_validation_error(exc)}") from None
    environment = []
    from permalloc import __version__

    if recorded["permalloc"] != __version__:
        environment.append(("permalloc", recorded["permalloc"], __version__))
    now = {p["name"]: p.get("version", "") for p in plugins()}
    for entry in recorded["plugins"]:
        if now.get(entry["name"], "missing") != entry.get("version", ""):
            environment.append((f"plugin {entry['name']}", entry.get("version", ""), now.get(entry["name"], "missing")))
    for name in sorted(set(now) - {p["name"] for p in recorded["plugins"]}):
        environment.append((f"plugin {name}", "absent", now[name]))
    workloads: list[WorkloadSource | None] = []
    for entry in recorded["workloads"]:
        if entry is None:
            workloads.append(None)
            continue
        try:
            source = resolve_workload(pm, entry["name"])
        except SpecError as exc:
            raise SpecError(f"{origin}: workload {entry['name']!r} of the result: {exc}") from None
        digest = file_hash(source.path)
        if digest != entry["hash"]:
            environment.append((f"workload {entry['name']}", entry["hash"][:19], digest[:19]))
        workloads.append(source)
    baseline = (document.get("seeds") or {}).get("baseline", {}).get("policy")
    return Rebuilt(scenario, spec, policies, workloads, list(recorded["seeds"]), baseline, environment)


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a JSON value, by its dotted path (lists by index, results by policy)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            key = item.get("policy", i) if isinstance(item, dict) else i
            yield from numbers(item, f"{path}[{key}]")


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(path, recorded, now) of every number of ``results`` and ``seeds`` that is not the same."""
    out = []
    for section in ("results", "seeds"):
        old = dict(numbers(recorded.get(section), section))
        new = dict(numbers(now.get(section), section))
        for path in sorted(old.keys() | new.keys()):
            if old.get(path) != new.get(path):
                out.append((path, old.get(path), new.get(path)))
    return out
