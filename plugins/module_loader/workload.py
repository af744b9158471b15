"""The module workload: what the module loader needs to know about each real ``.ko``.

A :class:`Workload` is produced by ``permalloc ingest`` (see :mod:`.ingest`) from a kernel
package: its modules, and what the patchers need of its vmlinux (:mod:`.vmlinux`). Two are
bundled as package data, one per modeled kernel (``BUNDLED_WORKLOADS``; see
``docs/workload.md`` for how to regenerate them byte for byte).

Everything here is aggregate: per module the SHF_ALLOC sections with their memory class,
the kallsyms bytes the loader keeps, relocations counted per (type, source class,
target), the entry counts of the tables the load-time patchers walk, and ``modinfo``
dependencies.  Never one record per relocation.

On disk the workload is *compact* text (gzipped): a header line that the framework reads
to list workloads (:mod:`permalloc.run.workloads`), then one JSON document with string
tables for relocation types, targets and table names, one JSON array per module and the
vmlinux facts.  :func:`load_workload` parses the file and builds :class:`ModuleInfo` models
lazily, on first access of each module, so that loading a bundled workload (about 4000
modules) stays well under half a second.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator, Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from permalloc.atomicfile import atomic_write
from permalloc.run.modelfile import parse_json
from permalloc.run.workloads import FORMAT, FORMAT_VERSION, check_format, header_line, open_workload_text

from .vmlinux import VmlinuxInfo

__all__ = [
    "BUNDLED_WORKLOADS",
    "KALLSYMS_CLASS",
    "MemClass",
    "ModuleInfo",
    "RelocAggregate",
    "Section",
    "TABLE_NAMES",
    "Workload",
    "bundled_workload_path",
    "dump_workload",
    "encode_module",
    "load_workload",
    "save_workload",
]

#: The bundled workloads (files of ``data/``): Debian's newest 6.1 and 6.12 amd64 images.
BUNDLED_WORKLOADS: tuple[str, ...] = ("debian-6.1.0-57-amd64.json.gz", "debian-6.12.118-amd64.json.gz")


class MemClass(StrEnum):
    """The memory classes of a module, in the order the loader lays them out.

    6.1 (kernel/module/main.c:layout_sections) lays core sections out as text, then
    read-only data, then ro_after_init data, then writable data; init sections the same
    way in a separate init layout (where ro_after_init does not apply).  6.4+ calls these
    ``enum mod_mem_type`` (MOD_TEXT, MOD_RODATA, MOD_RO_AFTER_INIT, MOD_DATA, MOD_INIT_*).
    """

    TEXT = "text"
    RODATA = "rodata"
    RO_AFTER_INIT = "ro_after_init"
    DATA = "data"
    INIT_TEXT = "init_text"
    INIT_RODATA = "init_rodata"
    INIT_DATA = "init_data"

    @property
    def is_init(self) -> bool:
        """True for the classes freed after the module's init returns."""
        return self.value.startswith("init_")

    @property
    def is_text(self) -> bool:
        return self in (MemClass.TEXT, MemClass.INIT_TEXT)


MEM_CLASSES: tuple[MemClass, ...] = tuple(MemClass)

#: Where the kallsyms bytes live (kernel/module/kallsyms.c:layout_symtab): the core
#: copy is appended to the core data layout, the full copy to the init layout.
KALLSYMS_CLASS = {"core": MemClass.DATA, "init": MemClass.INIT_DATA}

#: The tables that the load-time patchers walk (their entry sizes per kernel are in
#: :mod:`.rules`).  Counts are sh_size // entry size.
TABLE_NAMES: tuple[str, ...] = (
    ".altinstructions",
    ".parainstructions",
    "__jump_table",
    "__mcount_loc",
    "__patchable_function_entries",
    ".orc_unwind_ip",
    ".static_call_sites",
    ".retpoline_sites",
    ".return_sites",
    ".call_sites",
    ".cfi_sites",
    ".ibt_endbr_seal",
    ".smp_locks",
)

_TARGET_PATTERN = r"^(kernel|percpu|module:[^\s:]+|self:(" + "|".join(c.value for c in MemClass) + r"))$"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Section(BaseModel):
    """One section that the loader allocates (SHF_ALLOC after the loader's own edits)."""

    model_config = _FROZEN

    name: str
    size: int = Field(ge=0)
    align: int = Field(ge=0, description="sh_addralign (0 and 1 both mean unaligned)")
    flags: str = Field(description="ELF flags as readelf -S prints them, e.g. 'AX', 'WA'")
    mem_class: MemClass


class RelocAggregate(BaseModel):
    """How many relocations of one type, from one class, go to one kind of target.

    ``target`` is ``"kernel"`` (an undefined symbol that vmlinux exports), ``"percpu"``
    (a symbol in the module's ``.data..percpu``, which lives in the per-CPU area),
    ``"module:<name>"`` (an undefined symbol exported by another module) or
    ``"self:<class>"`` (a symbol in one of the module's own classes).
    """

    model_config = _FROZEN

    type: str = Field(description="relocation type, e.g. R_X86_64_PC32")
    source_class: MemClass
    target: str = Field(pattern=_TARGET_PATTERN)
    count: int = Field(ge=1)

    @property
    def target_kind(self) -> Literal["kernel", "percpu", "module", "self"]:
        return self.target.split(":", 1)[0]  # type: ignore[return-value]

    @property
    def target_name(self) -> str | None:
        """The module name of ``module:<name>`` or the class of ``self:<class>``."""
        _, _, rest = self.target.partition(":")
        return rest or None


class ModuleInfo(BaseModel):
    """One module as the loader sees it."""

    model_config = _FROZEN

    name: str = Field(description="the module name (modinfo name=, '-' folded to '_')")
    depends: list[str] = Field(default_factory=list, description="modinfo depends=")
    sections: list[Section]
    kallsyms_core_bytes: int = Field(
        ge=0,
        description="core symtab+strtab+typetab kept for kallsyms (appended to core data)",
    )
    kallsyms_init_bytes: int = Field(
        ge=0,
        description="full symtab+strtab, struct mod_kallsyms and typetab (end of init data)",
    )
    relocations: list[RelocAggregate] = Field(default_factory=list)
    tables: dict[str, int] = Field(default_factory=dict, description="patcher table entry counts; absent means 0")
    undefined_kernel: int = Field(ge=0, description="undefined symbols resolved to vmlinux")
    undefined_modules: dict[str, int] = Field(
        default_factory=dict, description="undefined symbols per exporting module"
    )
    percpu_size: int = Field(default=0, ge=0, description="size of .data..percpu (allocated in the per-CPU area)")
    file_size: int = Field(default=0, ge=0, description="bytes of the ELF image (decompressed)")
    stored_size: int = Field(default=0, ge=0, description="bytes of the file as shipped (.ko.xz: compressed)")
    btf_size: int = Field(default=0, ge=0, description="size of .BTF (copied by btf_module_notify at MODULE_STATE_COMING)")

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(TABLE_NAMES)
        if unknown:
            raise ValueError(f"unknown tables: {sorted(unknown)}")
        return value

    def table(self, name: str) -> int:
        """Entry count of one patcher table (0 when the module has none)."""
        return self.tables.get(name, 0)

    def class_sizes(self) -> dict[MemClass, int]:
        """Sum of section sizes per class (no alignment, no kallsyms)."""
        out = dict.fromkeys(MemClass, 0)
        for s in self.sections:
            out[s.mem_class] += s.size
        return out


class Workload(BaseModel):
    """The modules of one kernel package, and the facts of its vmlinux."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    package: str
    version: str
    kernel_release: str
    machine: Literal["x86_64", "aarch64"] = Field("x86_64", description="ELF machine of the modules and vmlinux")
    modules: Mapping[str, ModuleInfo]
    vmlinux: VmlinuxInfo | None = Field(None, description="None: ingested without a vmlinuz")

    @field_serializer("modules")
    def _serialize_modules(self, modules: Mapping[str, ModuleInfo]) -> dict[str, Any]:
        return {name: modules[name].model_dump(mode="json") for name in modules}


# --------------------------------------------------------------------------- compact form
#
# line 1, the header (permalloc.run.workloads.header_line):
# {"format": FORMAT, "format_version": 3, "package": ..., "version": ..., "kernel_release":
#  ..., "machine": "x86_64", "modules": <count>}
# line 2, the body:
# {"vmlinux": VmlinuxInfo.model_dump() or null, "classes": [7 names], "tables": [names],
#  "reloc_types": [...], "targets": [...], "modules": [row, ...]}
#
# row = [name, depends, sections, kallsyms_core, kallsyms_init, relocs, tables,
#        undefined_kernel, undefined_modules, percpu_size, file_size, stored_size, btf_size]
#   sections = [[name, size, align, flags, class_index], ...]
#   relocs   = flat [type_index, source_class_index, target_index, count, ...]
#   tables   = flat [table_index, count, ...]


def _row_to_dict(row: list[Any], strings: _Strings) -> dict[str, Any]:
    (name, depends, sections, kcore, kinit, relocs, tables, ukern, umods, percpu, fsize, ssize, btf) = row
    classes = strings.classes
    return {
        "name": name,
        "depends": depends,
        "sections": [
            {"name": s[0], "size": s[1], "align": s[2], "flags": s[3], "mem_class": classes[s[4]]} for s in sections
        ],
        "kallsyms_core_bytes": kcore,
        "kallsyms_init_bytes": kinit,
        "relocations": [
            {
                "type": strings.reloc_types[relocs[i]],
                "source_class": classes[relocs[i + 1]],
                "target": strings.targets[relocs[i + 2]],
                "count": relocs[i + 3],
            }
            for i in range(0, len(relocs), 4)
        ],
        "tables": {strings.tables[tables[i]]: tables[i + 1] for i in range(0, len(tables), 2)},
        "undefined_kernel": ukern,
        "undefined_modules": umods,
        "percpu_size": percpu,
        "file_size": fsize,
        "stored_size": ssize,
        "btf_size": btf,
    }


class _Strings:
    """The string tables of one compact document, growing as rows are encoded."""

    def __init__(
        self,
        classes: list[str] | None = None,
        tables: list[str] | None = None,
        reloc_types: list[str] | None = None,
        targets: list[str] | None = None,
    ) -> None:
        self.classes = [MemClass(c) for c in (classes or [c.value for c in MemClass])]
        self.tables = list(tables or TABLE_NAMES)
        self.reloc_types = list(reloc_types or [])
        self.targets = list(targets or [f"self:{c.value}" for c in MemClass] + ["kernel", "percpu"])
        self._class_ix = {c: i for i, c in enumerate(self.classes)}
        self._table_ix = {t: i for i, t in enumerate(self.tables)}
        self._type_ix = {t: i for i, t in enumerate(self.reloc_types)}
        self._target_ix = {t: i for i, t in enumerate(self.targets)}

    @staticmethod
    def _index(table: list[str], index: dict[str, int], value: str) -> int:
        i = index.get(value)
        if i is None:
            i = index[value] = len(table)
            table.append(value)
        return i

    def class_ix(self, c: str) -> int:
        return self._class_ix[c]  # StrEnum members hash and compare as their value

    def type_ix(self, t: str) -> int:
        return self._index(self.reloc_types, self._type_ix, t)

    def target_ix(self, t: str) -> int:
        return self._index(self.targets, self._target_ix, t)

    def table_ix(self, t: str) -> int:
        return self._index(self.tables, self._table_ix, t)

    def header(self) -> dict[str, Any]:
        return {
            "classes": [c.value for c in self.classes],
            "tables": self.tables,
            "reloc_types": self.reloc_types,
            "targets": self.targets,
        }


def encode_module(mod: ModuleInfo | Mapping[str, Any], strings: _Strings) -> list[Any]:
    """One module as a compact row (accepts a ModuleInfo or its plain-dict form)."""
    d = mod.model_dump(mode="json") if isinstance(mod, ModuleInfo) else mod
    relocs: list[int] = []
    for r in d["relocations"]:
        relocs += (
            strings.type_ix(r["type"]),
            strings.class_ix(r["source_class"]),
            strings.target_ix(r["target"]),
            int(r["count"]),
        )
    tables: list[int] = []
    for t, n in d["tables"].items():
        tables += (strings.table_ix(t), int(n))
    return [
        d["name"],
        list(d["depends"]),
        [
            [s["name"], int(s["size"]), int(s["align"]), s["flags"], strings.class_ix(s["mem_class"])]
            for s in d["sections"]
        ],
        int(d["kallsyms_core_bytes"]),
        int(d["kallsyms_init_bytes"]),
        relocs,
        tables,
        int(d["undefined_kernel"]),
        dict(d["undefined_modules"]),
        int(d.get("percpu_size", 0)),
        int(d.get("file_size", 0)),
        int(d.get("stored_size", 0)),
        int(d.get("btf_size", 0)),
    ]


class LazyModules(Mapping[str, ModuleInfo]):
    """Module rows of a compact document, validated into ModuleInfo on first access."""

    __slots__ = ("_rows", "_strings", "_cache")

    def __init__(self, rows: Mapping[str, list[Any]], strings: _Strings) -> None:
        self._rows = rows
        self._strings = strings
        self._cache: dict[str, ModuleInfo] = {}

    def __getitem__(self, name: str) -> ModuleInfo:
        mod = self._cache.get(name)
        if mod is None:
            mod = ModuleInfo.model_validate(_row_to_dict(self._rows[name], self._strings))
            self._cache[name] = mod
        return mod

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"<{len(self)} modules, {len(self._cache)} validated>"

    def validate_all(self) -> None:
        """Validate every module now (tests, or callers that want errors up front)."""
        for name in self._rows:
            self[name]


HEADER_FIELDS = ("package", "version", "kernel_release", "machine")


def workload_from_document(doc: Mapping[str, Any]) -> Workload:
    """Build a Workload from a compact document (header fields and body in one mapping)."""
    strings = _Strings(doc["classes"], doc["tables"], doc["reloc_types"], doc["targets"])
    rows = {row[0]: row for row in doc["modules"]}
    head = Workload.model_validate(
        {k: doc[k] for k in HEADER_FIELDS} | {"modules": {}, "vmlinux": doc.get("vmlinux")}
    )
    # The other fields were validated just above; the modules are validated lazily.
    return Workload.model_construct(**(dict(head) | {"modules": LazyModules(rows, strings)}))


def dump_workload(workload: Workload) -> dict[str, Any]:
    """The compact document of a workload, header fields and body (what :func:`save_workload` writes)."""
    modules = workload.modules
    strings = _Strings()
    if isinstance(modules, LazyModules):
        # Re-encode from the rows: keeps the fast path free of pydantic validation.
        src = modules._strings
        rows = [encode_module(_row_to_dict(modules._rows[name], src), strings) for name in sorted(modules)]
    else:
        rows = [encode_module(modules[name], strings) for name in sorted(modules)]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package": workload.package,
        "version": workload.version,
        "kernel_release": workload.kernel_release,
        "machine": workload.machine,
        "vmlinux": workload.vmlinux.model_dump(mode="json") if workload.vmlinux is not None else None,
        **strings.header(),
        "modules": rows,
    }


def write_document(doc: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a compact document: the header line, then the body; gzip when the name ends in
    .gz; the same document gives the same bytes."""
    header = header_line(*(doc[k] for k in HEADER_FIELDS), modules=len(doc["modules"]))
    body = {k: v for k, v in doc.items() if k not in HEADER_FIELDS and k not in ("format", "format_version")}
    data = (header + "\n" + json.dumps(body, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    path = Path(path)
    with atomic_write(path, "wb") as raw:
        if path.name.endswith(".gz"):
            # mtime=0 and no file name in the header: the same workload gives the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
                gz.write(data)
        else:
            raw.write(data)


def save_workload(workload: Workload, path: str | os.PathLike[str]) -> None:
    """Write a workload in the compact form (gzipped when the name ends in .gz)."""
    write_document(dump_workload(workload), path)


def bundled_workload_path(file_name: str) -> Path:
    """Path of a bundled workload file (package data of this plugin)."""
    return Path(str(resources.files(__package__).joinpath("data", file_name)))


def load_workload(path: str | os.PathLike[str]) -> Workload:
    """Load a workload file (compact, or a plain ``Workload.model_dump()`` JSON document;
    gzipped or not). ValueError (one line) for bad content, OSError when unreadable."""
    with open_workload_text(path) as fh:
        text = fh.read()
    first, _, rest = text.partition("\n")
    try:
        header = parse_json(first)
    except ValueError:
        header = None
    if isinstance(header, dict) and header.get("format") == FORMAT:
        check_format(header, path)
        return workload_from_document({**header, **parse_json(rest)})
    doc = parse_json(text)
    if isinstance(doc, dict) and "format" in doc:
        check_format(doc, path)  # a single-document file of an older format
    return Workload.model_validate(doc)
