"""Workloads: the kernels that a run can model, by name (``permalloc workloads``).

A workload is the data of one kernel package: its modules and the facts of its vmlinux, as
``permalloc ingest`` writes them; the module loader plugin reads the body. The framework
knows what names and describes a workload: the **header line** that every workload file
starts with, and the registry that plugins fill through ``permalloc_register_workloads``.

A workload file is text, gzipped when its name ends in ``.gz``. Its first line is the
header, a JSON object::

    {"format": "permalloc-module-workload", "format_version": 3, "package": ...,
     "version": ..., "kernel_release": ..., "machine": "x86_64", "modules": 4023}

so that listing workloads reads a few hundred bytes of each file. A plain JSON document
without that header (a hand-written ``Workload.model_dump()``) is described from its
fields instead.

Which workload a run uses: ``--workload`` when given, else the policy's ``workload``, else
the registered workload of the policy's kernel, else the newest one older than it, else
the oldest (:func:`policy_workload`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from pathlib import Path
from typing import IO, Any

import pluggy
from pydantic import BaseModel, ConfigDict, Field

from permalloc.errors import SpecError
from permalloc.filekind import special_kind
from permalloc.plugin.pluginmanager import collect
from permalloc.plugin.policy import PolicySpec
from permalloc.run.modelfile import parse_json

__all__ = [
    "FORMAT",
    "check_format",
    "FORMAT_VERSION",
    "WorkloadSource",
    "header_line",
    "open_workload_text",
    "policy_workload",
    "spec_workload",
    "read_header",
    "resolve_workload",
    "workloads",
]

FORMAT = "permalloc-module-workload"
FORMAT_VERSION = 3
_SUFFIXES = (".json.gz", ".json", ".gz")


class WorkloadSource(BaseModel):
    """A workload a run can use: its name, its file and what the file's header says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    path: Path
    package: str
    version: str
    kernel_release: str
    machine: str = Field(description="ELF machine of its modules and vmlinux (x86_64, aarch64)")
    modules: int = Field(ge=0, description="module count")
    origin: str = Field("", description="who registered it (a plugin), or 'file'")

    @property
    def kernel(self) -> tuple[int, int] | None:
        """``(major, minor)`` of the kernel release, None when it does not start with one."""
        return _version(self.kernel_release)


def _version(text: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def open_workload_text(path: str | os.PathLike[str]) -> IO[str]:
    """A workload file opened as text (gunzipped when it is gzip data, whatever its name);
    OSError for what is not a regular file (a FIFO would block the open)."""
    if kind := special_kind(path):
        raise OSError(f"{kind}, not a workload file (only regular files are read)")
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gzipped else open(path, encoding="utf-8")


def header_line(package: str, version: str, kernel_release: str, machine: str, modules: int) -> str:
    """The first line of a workload file (no newline)."""
    return json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION, "package": package, "version": version,
        "kernel_release": kernel_release, "machine": machine, "modules": modules,
    }, separators=(",", ":"))


def check_format(doc: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """A one-line SpecError for a workload document of another format version."""
    if doc.get("format_version") != FORMAT_VERSION:
        raise SpecError(
            f"{path}: workload format_version {doc.get('format_version')!r}, this permalloc reads "
            f"{FORMAT_VERSION}: regenerate it with `permalloc ingest` (docs/workload.md)"
        )


def _name_of(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_header(path: str | os.PathLike[str], name: str | None = None, origin: str = "file") -> WorkloadSource:
    """Describe a workload file from its header line. SpecError (one line, naming it) if it is not one."""
    path = Path(path)
    try:
        with open_workload_text(path) as fh:
            first = fh.readline()
            try:
                doc = parse_json(first)
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                # a plain Workload.model_dump() document (or an older single-document file)
                doc = parse_json(first + fh.read())
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                if "format" in doc:
                    check_format(doc, path)
                doc = {**doc, "modules": len(doc.get("modules") or {})}
            else:
                check_format(doc, path)
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:  # bad or truncated gzip data
        raise SpecError(f"workload {path}: not a workload file ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise SpecError(f"workload {path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # bad JSON, bad UTF-8
        raise SpecError(f"workload {path}: not a workload file ({' '.join(str(exc).split())})") from None
    try:
        return WorkloadSource(
            name=name or _name_of(path), path=path, package=doc.get("package", ""), version=doc.get("version", ""),
            kernel_release=doc.get("kernel_release", ""), machine=doc.get("machine", "x86_64"),
            modules=doc["modules"], origin=origin,
        )
    except Exception as exc:
        raise SpecError(f"workload {path}: bad header ({' '.join(str(exc).split())})") from None


def workloads(pm: pluggy.PluginManager) -> dict[str, WorkloadSource]:
    """Every registered workload by name, in registration order."""
    found: dict[str, WorkloadSource] = {}
    for _plugin, source in collect(pm, "permalloc_register_workloads", WorkloadSource):
        found[source.name] = source
    return found


def _is_file(text: str) -> bool:
    return text.endswith(_SUFFIXES) or "/" in text or Path(text).is_file()


def resolve_workload(pm: pluggy.PluginManager, name_or_file: str) -> WorkloadSource:
    """A registered workload by name, or a workload file."""
    known = workloads(pm)
    if name_or_file in known:
        return known[name_or_file]
    if _is_file(name_or_file):
        return read_header(name_or_file)
    names = ", ".join(known) or "none registered"
    raise SpecError(f"unknown workload {name_or_file!r}; known workloads: {names} (or give a workload file)")


def policy_workload(pm: pluggy.PluginManager, policy: PolicySpec, machine: str | None = None) -> WorkloadSource | None:
    """The workload ``policy`` runs on by default (None when no workload is registered).

    ``policy.workload`` when set; else the workload of the policy's kernel (same major.minor),
    else the newest one of an older kernel, else the oldest. ``machine`` is the ELF machine
    of the arch that runs it (None: any): a policy's own workload of another machine gives
    way to that machine's workload of the same kernel, so that a design named for one arch's
    kernels (``linux-6.1``) runs on another arch's modules of that kernel.
    """
    if policy.workload:
        try:
            own = resolve_workload(pm, policy.workload)
        except SpecError as exc:
            raise SpecError(f"policy {policy.name!r}: {exc}") from None
        if machine is None or own.machine == machine:
            return own
        return _by_kernel(pm, policy.kernel if own.kernel is None else ".".join(map(str, own.kernel)), machine) or own
    return _by_kernel(pm, policy.kernel, machine)


def _by_kernel(pm: pluggy.PluginManager, kernel: str, machine: str | None) -> WorkloadSource | None:
    """Among the workloads of ``machine`` (of any, when it has none: the run then refuses the
    mismatch by name), the one of ``kernel``, else the newest older, else the oldest."""
    known = [source for source in workloads(pm).values() if source.kernel is not None]
    if any(source.machine == machine for source in known):
        known = [source for source in known if source.machine == machine]
    by_kernel = sorted(((source.kernel, source) for source in known), key=lambda pair: pair[0])
    if not by_kernel:
        return None
    wanted = _version(kernel) or (0, 0)
    same = [source for kernel, source in by_kernel if kernel == wanted]
    if same:
        return same[0]
    older = [source for kernel, source in by_kernel if kernel < wanted]
    return older[-1] if older else by_kernel[0][1]


def spec_workload(pm: pluggy.PluginManager, policy: PolicySpec, spec: Any) -> WorkloadSource | None:
    """:func:`policy_workload` for a machine of ``spec`` (its arch's ELF machine)."""
    from permalloc.plugin.pluginmanager import arch_plugins

    found = arch_plugins(pm, spec, policy).get(spec.arch)
    return policy_workload(pm, policy, found[1].machine if found else None)
