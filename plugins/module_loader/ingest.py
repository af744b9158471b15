"""Ingestion: real kernel modules (``.ko``, ``.ko.xz``, ``.ko.zst``) into a compact workload.

Every rule that decides where a section or a symbol goes is the rule of the kernel whose
modules are read, Linux 6.1 or 6.12 (the version comes from the kernel release or the
module's vermagic; :mod:`.rules` has what differs), with Debian's configuration
(CONFIG_SMP=y, CONFIG_MODULE_UNLOAD=y, CONFIG_KALLSYMS_ALL=y, CONFIG_LIVEPATCH=y).  Each rule carries a comment naming ``file:function``.

The package's ``boot/vmlinuz-*`` is read too (:mod:`.vmlinux`), in a worker of its own.

Speed: pyelftools parses and validates the ELF header (its structs are built once per
process); the section header table, the symbol table and the relocation tables are read
as numpy structured arrays straight from the file bytes and aggregated with numpy, never
entry by entry in Python.  Files are spread over worker processes.

The per-file work (:func:`ingest_file`) yields a :class:`ModuleRecord` in which undefined
symbols are still names; :func:`ingest_paths` resolves them against ``Module.symvers``
(or the exports found in the module set) and builds the workload.

Machines: the ELF machines the arches contribute (``permalloc_elf_machines``,
:class:`~permalloc.model.elfmachine.ElfMachine`): what ``elf_check_arch`` accepts, the
arch's relocation names, module tables, ARCH_SHF_SMALL and ``module_frob_arch_sections``.
The rest of the per-file code reads ELF64 little-endian structures and is the same for
every machine.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.structs import ELFStructs

from permalloc.errors import IngestError
from permalloc.filekind import special_kind
from permalloc.model.elfmachine import ElfMachine, ElfSections
from permalloc.run.timeout import RunTimeout
from permalloc.run.workloads import FORMAT, FORMAT_VERSION

from .elfmachines import Machines, elf_machines
from .kernel_image import VmlinuxError, read_vmlinux
from .rules import KernelRules, rules_for, table_entry_sizes, version_key
from .vmlinux import VmlinuxInfo
from .workload import (
    MEM_CLASSES,
    TABLE_NAMES,
    MemClass,
    Workload,
    _Strings,
    workload_from_document,
    write_document,
)

__all__ = [
    "IngestError",
    "IngestResult",
    "ModuleRecord",
    "detect_package",
    "find_module_files",
    "find_vmlinuz",
    "ingest_file",
    "ingest_paths",
    "read_symvers",
    "section_flags_str",
]

# ----------------------------------------------------------------------------- constants

SHT_NULL, SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 0, 2, 4, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_RELA_LIVEPATCH = 0x00100000  # include/uapi/linux/elf.h
SHF_RO_AFTER_INIT = 0x00200000  # include/uapi/linux/elf.h (kernel-internal flag)
SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_LIVEPATCH = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFF20
STB_WEAK = 2

SHDR_DT = np.dtype(
    [
        ("name", "<u4"),
        ("type", "<u4"),
        ("flags", "<u8"),
        ("addr", "<u8"),
        ("offset", "<u8"),
        ("size", "<u8"),
        ("link", "<u4"),
        ("info", "<u4"),
        ("addralign", "<u8"),
        ("entsize", "<u8"),
    ]
)
SYM_DT = np.dtype(
    [("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"), ("size", "<u8")]
)
RELA_DT = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])
assert SHDR_DT.itemsize == 64 and SYM_DT.itemsize == 24 and RELA_DT.itemsize == 24

SIZEOF_ELF_SYM = 24
SIZEOF_MOD_KALLSYMS = 32  # include/linux/module.h: struct mod_kallsyms {ptr; uint; ptr; ptr}

# Target codes used between the workers and the resolver. 0..6 are MemClass indices.
_T_PERCPU = 7
_T_UNDEF0 = 16  # + index among the module's undefined symbols
_CLASS_IX = {c: i for i, c in enumerate(MEM_CLASSES)}

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
DEFAULT_MAX_MODULE_MIB = 256  # well above the largest real module (amdgpu.ko of 6.1, 19.5 MB)
DEFAULT_MAX_MODULE_SIZE = DEFAULT_MAX_MODULE_MIB << 20
_CHUNK = 1 << 20

# ----------------------------------------------------------------------------- errors


class _Malformed(Exception):
    """Raised inside the parser; turned into IngestError with the file name."""


# ----------------------------------------------------------------------------- records


@dataclass
class ModuleRecord:
    """One parsed module before undefined symbols are resolved (plain, picklable data)."""

    path: str
    name: str
    machine: str
    depends: list[str]
    vermagic: str | None
    sections: list[tuple[str, int, int, str, int]]  # name, size, align, flags, class index
    kallsyms_core_bytes: int
    kallsyms_init_bytes: int
    percpu_size: int
    file_size: int  # bytes of the ELF image (decompressed)
    stored_size: int  # bytes of the file as stored (the compressed size of a .ko.xz)
    btf_size: int  # .BTF, which btf_module_notify copies at MODULE_STATE_COMING
    #: (reloc type number, source class index, target code, count); target code is a
    #: MemClass index, _T_PERCPU, or _T_UNDEF0 + index into ``undefined``.
    relocs: list[tuple[int, int, int, int]]
    tables: dict[str, int]
    undefined: list[str]
    weak_undefined: set[str] = field(default_factory=set)
    exports: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- helpers

_FLAG_CHARS = [
    (0x1, "W"),
    (0x2, "A"),
    (0x4, "X"),
    (0x10, "M"),
    (0x20, "S"),
    (0x40, "I"),
    (0x80, "L"),
    (0x100, "O"),
    (0x200, "G"),
    (0x400, "T"),
    (0x800, "C"),
    (0x00200000, "R"),
    (0x01000000, "D"),
    (0x10000000, "l"),
    (0x80000000, "E"),
]


def section_flags_str(flags: int) -> str:
    """sh_flags as ``readelf -W -S`` prints them for an x86-64 object (lowest bit first)."""
    out = []
    rest = flags
    for bit, ch in _FLAG_CHARS:
        if flags & bit:
            out.append(ch)
            rest &= ~bit
    if rest & 0x0FF00000:
        out.append("o")
        rest &= ~0x0FF00000
    if rest & 0xF0000000:
        out.append("p")
        rest &= ~0xF0000000
    if rest:
        out.append("x")
    return "".join(out)


def module_name(name: str) -> str:
    """Module names as the kernel knows them: '-' folded to '_' (scripts/Makefile.lib
    KBUILD_MODNAME; modprobe treats both as equal)."""
    return name.replace("-", "_")


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".zst", ".xz", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    for suffix in (".ko", ".o"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def _stored_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise _Malformed(f"cannot read: {exc.strerror or exc}") from None


def file_kind(path: str) -> str | None:
    """None for a regular file, else what it is ("a FIFO", "a device", ...): ingest opens
    regular files only (a FIFO would block, a device never ends)."""
    try:
        return special_kind(path)
    except OSError as exc:
        raise _Malformed(f"cannot read: {exc.strerror or exc}") from None


def _decompressed(path: str, raw: IO[bytes]) -> IO[bytes]:
    """A reader of the whole content: every xz stream, gzip member and zstd frame in turn
    (the kernel's module decompressors accept what the tools write; kmod writes one)."""
    if path.endswith(".xz"):
        return lzma.LZMAFile(raw)
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw)
    if path.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


def read_bounded(path: str, max_size: int = DEFAULT_MAX_MODULE_SIZE) -> bytes:
    """The module's bytes, decompressed, refusing more than ``max_size`` of them: a bomb is
    stopped after ``max_size`` bytes (read in chunks), not after it filled the memory."""
    kind = file_kind(path)
    if kind is not None:
        raise _Malformed(f"{kind}, not a module file (only regular files are read)")
    too_big = f"more than {max_size >> 20} MiB (--max-module-size)"
    try:
        with open(path, "rb") as raw:
            if os.fstat(raw.fileno()).st_size > max_size:
                raise _Malformed(f"{too_big} on disk")
            reader = _decompressed(path, raw)
            chunks, size = [], 0  # joined once at the end: a growing bytearray may briefly hold twice the cap
            while chunk := reader.read(min(_CHUNK, max_size + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_size:
                    raise _Malformed(f"inflates to {too_big}")
            return b"".join(chunks)
    except (_Malformed, RunTimeout):
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise _Malformed(f"cannot read: {exc.strerror or exc}") from None
        raise _Malformed(f"corrupt compressed file: {exc}") from None
    except (lzma.LZMAError, EOFError, ValueError) as exc:
        raise _Malformed(f"corrupt compressed file: {exc}") from None
    except Exception as exc:  # zstandard.ZstdError and friends
        raise _Malformed(f"corrupt compressed file: {exc}") from None


_STRUCTS: ELFStructs | None = None


def _expected(machines: Machines) -> str:
    return " or ".join(sorted(machines)) or "a machine some arch plugin contributes (none does)"


def _elf_header(data: bytes, machines: Machines) -> Any:
    """Parse and check the ELF header (kernel/module/main.c:elf_validity_check)."""
    global _STRUCTS
    if len(data) < 64:
        if data[:4] == b"\x7fELF":
            raise _Malformed(f"truncated ELF header ({len(data)} bytes)")
        raise _Malformed("not an ELF file")
    if data[:4] != b"\x7fELF":
        raise _Malformed("not an ELF file (bad magic)")
    if data[4] != 2 or data[5] != 1:
        # Say which machine it is for, through pyelftools' own header parsing.
        try:
            structs = ELFStructs(little_endian=data[5] == 1, elfclass=32 if data[4] == 1 else 64)
            structs.create_basic_structs()
            hdr = structs.Elf_Ehdr.parse(data)
            what = f"{hdr['e_ident']['EI_CLASS']} {hdr['e_ident']['EI_DATA']} {hdr['e_machine']}"
        except Exception:
            what = f"EI_CLASS={data[4]} EI_DATA={data[5]}"
        raise _Malformed(f"wrong machine: {what}, expected ELFCLASS64 little-endian {_expected(machines)}")
    if _STRUCTS is None:
        structs = ELFStructs(little_endian=True, elfclass=64)
        structs.create_basic_structs()
        _STRUCTS = structs
    try:
        hdr = _STRUCTS.Elf_Ehdr.parse(data[:64])
    except Exception as exc:
        raise _Malformed(f"bad ELF header: {exc}") from None
    machine = hdr["e_machine"]
    if machine not in machines:  # elf_check_arch(), for the machines the arches contribute
        raise _Malformed(f"wrong machine: {machine}, expected {_expected(machines)}")
    if hdr["e_type"] != "ET_REL":
        raise _Malformed(f"not a relocatable object ({hdr['e_type']}), modules are ET_REL")
    if hdr["e_shentsize"] != 64:
        raise _Malformed(f"bad e_shentsize {hdr['e_shentsize']}")
    shoff, shnum = hdr["e_shoff"], hdr["e_shnum"]
    if shnum == 0 or shoff >= len(data) or shnum * 64 > len(data) - shoff:
        raise _Malformed(
            f"section header table out of file (e_shoff={shoff}, e_shnum={shnum}, file {len(data)} bytes): truncated?"
        )
    if hdr["e_shstrndx"] == SHN_UNDEF or hdr["e_shstrndx"] >= shnum:
        raise _Malformed(f"bad e_shstrndx {hdr['e_shstrndx']} (e_shnum {shnum})")
    return hdr


def _cstr(data: bytes, off: int, end: int) -> str:
    stop = data.find(b"\0", off, end)
    if stop < 0:
        raise _Malformed("unterminated string in string table")
    return data[off:stop].decode("utf-8", "replace")


def _parse_modinfo(blob: bytes) -> list[tuple[str, str]]:
    out = []
    for item in blob.split(b"\0"):
        if b"=" in item:
            k, _, v = item.partition(b"=")
            out.append((k.decode("utf-8", "replace"), v.decode("utf-8", "replace")))
    return out


def _symtab(data: bytes, types: list[int], links: list[int], offsets: list[int],
            sizes: list[int]) -> tuple[int, np.ndarray]:
    """kernel/module/main.c:setup_load_info: the first SHT_SYMTAB (its sh_link is the strtab)."""
    shnum = len(types)
    sym_idx = next((i for i in range(1, shnum) if types[i] == SHT_SYMTAB), 0)
    if not sym_idx:
        raise _Malformed("module has no symbols (stripped?)")
    str_idx = links[sym_idx]
    if str_idx == 0 or str_idx >= shnum or types[str_idx] == SHT_NOBITS:
        raise _Malformed(f"symbol table has a bad string table link {str_idx}")
    if sizes[sym_idx] % SIZEOF_ELF_SYM:
        raise _Malformed("symbol table size is not a multiple of sizeof(Elf64_Sym)")
    nsyms = sizes[sym_idx] // SIZEOF_ELF_SYM
    if nsyms == 0:
        raise _Malformed("empty symbol table")
    return sym_idx, np.frombuffer(data, SYM_DT, count=nsyms, offset=offsets[sym_idx])


def _rela(data: bytes, i: int, name: str, offset: int, size: int) -> np.ndarray:
    """The Elf64_Rela entries of section ``i``."""
    if size % RELA_DT.itemsize:
        raise _Malformed(f"{name}: size is not a multiple of sizeof(Elf64_Rela)")
    return np.frombuffer(data, RELA_DT, count=size // RELA_DT.itemsize, offset=offset)


# ----------------------------------------------------------------------------- one file


def ingest_file(path: str | os.PathLike[str], kernel_release: str | None = None,
                machines: Machines | None = None, max_size: int = DEFAULT_MAX_MODULE_SIZE) -> ModuleRecord:
    """Parse one module file by the rules of ``kernel_release`` (default: its vermagic's),
    for the ELF ``machines`` (default: those of the installed arch plugins), refusing a file
    or a section layout bigger than ``max_size`` bytes.

    Raises :class:`IngestError` naming the file on bad input."""
    spath = os.fspath(path)
    if machines is None:
        machines = elf_machines()
    try:
        return _ingest(spath, read_bounded(spath, max_size), kernel_release, machines, _stored_size(spath), max_size)
    except (IngestError, RunTimeout):  # a run stopped by its time limit is no malformed file
        raise
    except (_Malformed, ELFError) as exc:
        raise IngestError(spath, str(exc)) from None
    except Exception as exc:  # a malformed file must never take the whole run down
        raise IngestError(spath, f"malformed ELF ({type(exc).__name__}: {exc})") from None


def _rules(vermagic: str | None, kernel_release: str | None) -> KernelRules:
    """The rules of the kernel this module is for. kernel/module/main.c:check_modinfo refuses
    a module whose vermagic is not the kernel's (same_magic), so a module of another release
    is an error, not a module of this workload."""
    release = vermagic.split()[0] if vermagic and vermagic.split() else None
    if kernel_release is not None and release is not None and release != kernel_release:
        raise _Malformed(f"vermagic {vermagic!r} is not kernel release {kernel_release} (check_modinfo refuses it)")
    release = kernel_release or release
    if release is None:
        raise _Malformed("no vermagic in .modinfo (check_modinfo refuses such a module) and no kernel release "
                         "given (--kernel-release)")
    try:
        return rules_for(release)
    except ValueError as exc:
        raise _Malformed(str(exc)) from None


def _ingest(path: str, data: bytes, kernel_release: str | None, machines: Machines,
            stored_size: int | None = None, max_size: int = DEFAULT_MAX_MODULE_SIZE) -> ModuleRecord:
    hdr = _elf_header(data, machines)
    arch: ElfMachine = machines[hdr["e_machine"]]
    size = len(data)
    shnum = hdr["e_shnum"]
    sh = np.frombuffer(data, SHDR_DT, count=shnum, offset=hdr["e_shoff"])
    types = sh["type"].tolist()
    raw_flags = sh["flags"].tolist()
    offsets = sh["offset"].tolist()
    sizes = sh["size"].tolist()
    links = sh["link"].tolist()
    infos = sh["info"].tolist()
    aligns = sh["addralign"].tolist()
    name_offs = sh["name"].tolist()

    # kernel/module/main.c:elf_validity_check: section 0 is SHT_NULL, every section with
    # contents lies inside the file (validate_section_offset), the name table ends in NUL.
    if types[0] != SHT_NULL or sizes[0] != 0:
        raise _Malformed("section 0 is not SHT_NULL/empty")
    for i in range(1, shnum):
        if types[i] != SHT_NOBITS and types[i] != SHT_NULL and offsets[i] + sizes[i] > size:
            raise _Malformed(
                f"section {i} (offset {offsets[i]:#x} size {sizes[i]:#x}) runs past the end "
                f"of the file ({size:#x} bytes): truncated?"
            )
    shstr = hdr["e_shstrndx"]
    s_off, s_size = offsets[shstr], sizes[shstr]
    if s_size == 0 or data[s_off + s_size - 1] != 0:
        raise _Malformed("section name table is empty or not NUL-terminated")
    s_end = s_off + s_size
    names = []
    for i in range(shnum):
        if name_offs[i] >= s_size:
            raise _Malformed(f"section {i} name offset out of the name table")
        names.append(_cstr(data, s_off + name_offs[i], s_end))

    # kernel/module/main.c:find_sec: the first SHF_ALLOC section of that name.
    def find_sec(name: str, flags: list[int]) -> int:
        for i in range(1, shnum):
            if flags[i] & SHF_ALLOC and names[i] == name:
                return i
        return 0

    # kernel/module/main.c:find_module_sections (CONFIG_DEBUG_INFO_BTF_MODULES=y):
    # mod->btf_data = any_section_objs(info, ".BTF", 1, ...), found whatever its flags
    btf_size = next((sizes[i] for i in range(1, shnum) if names[i] == ".BTF"), 0)

    # ------------------------------------------------------------------ modinfo
    # kernel/module/main.c:setup_load_info: index.info = find_sec(".modinfo").
    info_idx = find_sec(".modinfo", raw_flags)
    modinfo: list[tuple[str, str]] = []
    if info_idx and types[info_idx] != SHT_NOBITS:
        modinfo = _parse_modinfo(data[offsets[info_idx] : offsets[info_idx] + sizes[info_idx]])
    mi = dict(modinfo)
    name = module_name(mi.get("name") or _stem(path))
    depends = [module_name(d) for d in mi.get("depends", "").split(",") if d]
    # kernel/module/livepatch.h:is_livepatch_module (CONFIG_LIVEPATCH=y): modinfo livepatch=Y
    livepatch = mi.get("livepatch") == "Y"
    rules = _rules(mi.get("vermagic"), kernel_release)

    # ------------------------------------------------------------------ the loader's flag edits
    flags = list(raw_flags)
    # kernel/module/main.c:setup_load_info: index.vers = find_sec("__versions");
    # index.pcpu = find_pcpusec() = find_sec(".data..percpu") (CONFIG_SMP=y).
    vers_idx = find_sec("__versions", raw_flags)
    pcpu_idx = find_sec(".data..percpu", raw_flags)
    # kernel/module/main.c:rewrite_section_headers: "Track but don't keep modinfo and
    # version sections": SHF_ALLOC cleared on __versions and .modinfo.
    for ix in (vers_idx, info_idx):
        if ix:
            flags[ix] &= ~SHF_ALLOC
    sym_idx, syms = _symtab(data, types, links, offsets, sizes)
    # kernel/module/main.c:layout_and_allocate: module_frob_arch_sections() first (arm64
    # sizes its PLT sections there); readelf's flags are kept for the sections it leaves.
    shown = raw_flags
    if arch.frob_sections is not None:
        before = list(flags)
        try:
            arch.frob_sections(
                ElfSections(names=names, types=types, flags=flags, sizes=sizes, aligns=aligns, infos=infos,
                            symtab=syms, rela=lambda i: _rela(data, i, names[i], offsets[i], sizes[i])),
                version_key(rules),
            )
        except ValueError as exc:  # the arch refuses the module (-ENOEXEC)
            raise _Malformed(f"module_frob_arch_sections: {exc}") from None
        shown = [f if f != b else raw for f, b, raw in zip(flags, before, raw_flags, strict=True)]
    # kernel/module/main.c:layout_and_allocate: "We will do a special allocation for
    # per-cpu sections later": SHF_ALLOC cleared on .data..percpu (per-CPU area).
    if pcpu_idx:
        flags[pcpu_idx] &= ~SHF_ALLOC
    percpu_size = sizes[pcpu_idx] if pcpu_idx else 0
    # kernel/module/main.c:layout_and_allocate: SHF_RO_AFTER_INIT is set on
    # ".data..ro_after_init" and on "__jump_table" (6.1 and 6.12).
    for sec_name in rules.ro_after_init_sections:
        ix = find_sec(sec_name, flags)
        if ix:
            flags[ix] |= SHF_RO_AFTER_INIT

    # ------------------------------------------------------------------ layout_sections
    # kernel/module/main.c:layout_sections: five masks {required, forbidden}, tried in
    # order; a section goes to the first mask it matches.  Init or core is decided by
    # kernel/module/main.c:module_init_layout_section: module_init_section() (name starts
    # with ".init") -- and exit sections (".exit", module_exit_section) only when
    # !CONFIG_MODULE_UNLOAD; Debian has CONFIG_MODULE_UNLOAD=y, so .exit.* stay in core.
    small = arch.arch_shf_small
    masks = (
        (SHF_EXECINSTR | SHF_ALLOC, small),  # m=0 text
        (SHF_ALLOC, SHF_WRITE | small),  # m=1 read-only data
        (SHF_RO_AFTER_INIT | SHF_ALLOC, small),  # m=2 ro_after_init
        (SHF_WRITE | SHF_ALLOC, small),  # m=3 writable data
        (small | SHF_ALLOC, 0),  # m=4 small data (none where ARCH_SHF_SMALL is 0)
    )
    # 6.1 layout_sections / 6.12 __layout_sections (core_m_to_mem_type): the core classes;
    # init_m_to_mem_type: m=2 goes to init's writable part in 6.1 ("RO after init doesn't
    # apply to init_layout") and is not placed at all in 6.12 (MOD_INVALID).
    core_class = (MemClass.TEXT, MemClass.RODATA, MemClass.RO_AFTER_INIT, MemClass.DATA, MemClass.DATA)
    init_m2 = MemClass.INIT_DATA if rules.init_ro_after_init_placed else None
    init_class = (MemClass.INIT_TEXT, MemClass.INIT_RODATA, init_m2, MemClass.INIT_DATA, MemClass.INIT_DATA)
    is_init = [n.startswith(".init") for n in names]
    sec_class: list[int] = [-1] * shnum
    taken = [False] * shnum  # sh_entsize != ~0UL: already matched by an earlier mask
    for m, (need, forbid) in enumerate(masks):
        for i in range(shnum):
            f = flags[i]
            if taken[i] or (f & need) != need or (f & forbid):
                continue
            taken[i] = True
            cls = init_class[m] if is_init[i] else core_class[m]
            if cls is not None:
                sec_class[i] = _CLASS_IX[cls]

    sections = [
        (names[i], sizes[i], aligns[i], section_flags_str(shown[i]), sec_class[i])
        for i in range(shnum)
        if sec_class[i] >= 0
    ]
    # sh_addralign is 0 or a power of two (the ELF spec; the loader's ALIGN() relies on it),
    # and no layout may exceed what one module can be (NOBITS sizes are not backed by the file).
    laid = 0
    for sname, ssize, salign, _, _ in sections:
        if salign & (salign - 1):
            raise _Malformed(f"section {sname}: sh_addralign {salign:#x} is not a power of two")
        laid = -(-laid // max(salign, 1)) * max(salign, 1) + ssize
        if laid > max_size:
            raise _Malformed(f"section {sname} (size {ssize:#x}, alignment {salign:#x}) makes the module's layout "
                             f"more than {max_size >> 20} MiB (--max-module-size)")

    # ------------------------------------------------------------------ tables
    # kernel/module/main.c:find_module_sections / the arch's module_finalize locate these by
    # name (find_sec: SHF_ALLOC ones) and walk sh_size / sizeof(entry).
    tables = {}
    for tname, entsize in table_entry_sizes(rules, arch).items():
        ix = find_sec(tname, flags)
        if ix and sizes[ix] // entsize:
            tables[tname] = sizes[ix] // entsize

    # ------------------------------------------------------------------ symbols
    str_idx = links[sym_idx]
    nsyms = len(syms)
    str_off, str_size = offsets[str_idx], sizes[str_idx]
    st_name = syms["name"].astype(np.int64)
    shndx = syms["shndx"].astype(np.int64)
    if int(st_name.max()) >= max(str_size, 1):
        raise _Malformed("symbol name offset past the end of the string table")
    strtab = np.frombuffer(data, np.uint8, count=str_size, offset=str_off)
    nul = np.flatnonzero(strtab == 0)
    pos = np.searchsorted(nul, st_name)
    if nul.size == 0 or int(pos.max()) >= nul.size:
        raise _Malformed("unterminated symbol name")
    name_len = nul[pos] - st_name

    # kernel/module/main.c:simplify_symbols: SHN_COMMON is refused; any other index at or
    # past e_shnum that is not SHN_ABS/SHN_LIVEPATCH is "an invalid section index".
    reserved = shndx >= SHN_LORESERVE
    if np.any(shndx == SHN_COMMON):
        raise _Malformed("common symbol (modules are built with -fno-common)")
    bad = (shndx >= shnum) & ~((shndx == SHN_ABS) | (shndx == SHN_LIVEPATCH))
    if np.any(bad):
        raise _Malformed(f"symbol {int(np.flatnonzero(bad)[0])} has an invalid section index")

    # kallsyms, kernel/module/kallsyms.c:layout_symtab.  Core keeps symbol 0 and every
    # is_core_symbol(): named, defined, and (CONFIG_KALLSYMS_ALL=y) either in the per-cpu
    # section or in an SHF_ALLOC section that is not laid out in init; a livepatch module
    # keeps all.  Core bytes = ndst*sizeof(Elf_Sym) + their strings + ndst type chars.
    # Init bytes = the full symtab + strtab, struct mod_kallsyms, nsrc type chars.
    # Init is "laid out in init" (6.1: the INIT_OFFSET_MASK bit of sh_entsize; 6.12:
    # mod_mem_type_is_init of its type), so a section left unplaced counts as core.
    core_sec = np.zeros(shnum + 1, dtype=bool)  # last slot: reserved/out-of-range indices
    for i in range(shnum):
        core_sec[i] = bool(flags[i] & SHF_ALLOC) and not (sec_class[i] >= 0 and MEM_CLASSES[sec_class[i]].is_init)
    if pcpu_idx:
        core_sec[pcpu_idx] = True
    if livepatch:
        core = np.ones(nsyms, dtype=bool)
    else:
        core = (shndx != SHN_UNDEF) & (st_name != 0) & core_sec[np.minimum(shndx, shnum)]
        core[0] = True
    ndst = int(core.sum())
    kallsyms_core = ndst * SIZEOF_ELF_SYM + int((name_len[core] + 1).sum()) + ndst
    kallsyms_init = sizes[sym_idx] + str_size + SIZEOF_MOD_KALLSYMS + nsyms

    # Undefined symbols (kernel/module/main.c:simplify_symbols resolves each SHN_UNDEF
    # symbol; "_GLOBAL_OFFSET_TABLE_" is ignored on x86, ignore_undef_symbol()).
    undef_ix = np.flatnonzero(shndx == SHN_UNDEF)
    undef_ix = undef_ix[undef_ix != 0]
    undefined = [_cstr(data, str_off + int(st_name[j]), str_off + str_size) for j in undef_ix]
    bind = syms["info"][undef_ix] >> 4
    weak = {n for n, b in zip(undefined, bind.tolist(), strict=True) if b == STB_WEAK}

    # Exports: EXPORT_SYMBOL* emits __ksymtab_<sym> in __ksymtab / __ksymtab_gpl
    # (include/linux/export.h).
    ksym_secs = [i for i in range(shnum) if names[i] in ("__ksymtab", "__ksymtab_gpl")]
    exports: list[str] = []
    if ksym_secs:
        for j in np.flatnonzero(np.isin(shndx, ksym_secs) & (st_name != 0)).tolist():
            s = _cstr(data, str_off + int(st_name[j]), str_off + str_size)
            if s.startswith("__ksymtab_"):
                exports.append(s[len("__ksymtab_") :])

    # Target code of every symbol for the relocation aggregates.
    sec_code = np.full(shnum + 1, -1, dtype=np.int64)
    for i in range(shnum):
        sec_code[i] = sec_class[i]
    if pcpu_idx:
        sec_code[pcpu_idx] = _T_PERCPU
    tcode = sec_code[np.minimum(shndx, shnum)]
    tcode[undef_ix] = _T_UNDEF0 + np.arange(undef_ix.size)
    # SHN_ABS / SHN_LIVEPATCH symbols, symbol 0, and symbols in sections the loader does
    # not keep (code -1: it would point into the temporary copy it frees after loading)
    # all mean an address outside the module's allocations; the resolver counts them as
    # "kernel".  The Debian 6.1 modules have no such relocation from an allocated section.
    tcode[reserved] = -2
    tcode[0] = -3

    # ------------------------------------------------------------------ relocations
    # kernel/module/main.c:apply_relocations: every section whose sh_info names a section
    # that is still SHF_ALLOC after the edits above ("Don't bother with non-allocated
    # sections"); livepatch RELA sections are applied later by klp, not counted here.
    keys = []
    for i in range(1, shnum):
        if types[i] not in (SHT_RELA, SHT_REL):
            continue
        target = infos[i]
        if target >= shnum or not (flags[target] & SHF_ALLOC) or raw_flags[i] & SHF_RELA_LIVEPATCH:
            continue
        if sec_class[target] < 0:  # 6.12: a section __layout_sections left unplaced has no memory
            continue
        if types[i] == SHT_REL:
            # kernel/module/main.c:apply_relocate (weak default): "REL relocation unsupported"
            raise _Malformed(f"SHT_REL section {names[i]} ({arch.name} modules use RELA)")
        rela = _rela(data, i, names[i], offsets[i], sizes[i])
        if len(rela) == 0:
            continue
        src = sec_class[target]
        info = rela["info"]
        symi = (info >> np.uint64(32)).astype(np.int64)
        rtype = (info & np.uint64(0xFFFFFFFF)).astype(np.int64)
        if int(symi.max()) >= nsyms:
            raise _Malformed(f"{names[i]}: relocation symbol index out of the symbol table")
        if int(rtype.max()) >= 1 << 16:
            raise _Malformed(f"{names[i]}: unknown relocation type {int(rtype.max())}")
        t = tcode[symi]
        # key: type (16 bits) | source class (8 bits) | target code + 8 (32 bits)
        keys.append((rtype << 40) | (src << 32) | (t + 8))
    relocs: list[tuple[int, int, int, int]] = []
    if keys:
        uniq, counts = np.unique(np.concatenate(keys), return_counts=True)
        for k, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            relocs.append((k >> 40, (k >> 32) & 0xFF, (k & 0xFFFFFFFF) - 8, c))
    return ModuleRecord(
        path=path,
        name=name,
        machine=arch.name,
        depends=depends,
        vermagic=mi.get("vermagic"),
        sections=sections,
        kallsyms_core_bytes=kallsyms_core,
        kallsyms_init_bytes=kallsyms_init,
        percpu_size=percpu_size,
        file_size=size,
        stored_size=stored_size if stored_size is not None else size,
        btf_size=btf_size,
        relocs=relocs,
        tables=tables,
        undefined=undefined,
        weak_undefined=weak,
        exports=exports,
    )


def _ingest_batch(paths: Sequence[str], kernel_release: str | None, machines: Machines,
                  max_size: int = DEFAULT_MAX_MODULE_SIZE) -> list[ModuleRecord | IngestError]:
    out: list[ModuleRecord | IngestError] = []
    for p in paths:
        try:
            out.append(ingest_file(p, kernel_release, machines, max_size))
        except IngestError as exc:
            out.append(exc)
    return out


def _read_vmlinux(path: str, machines: Machines) -> VmlinuxInfo | IngestError:
    try:
        return read_vmlinux(path, machines)
    except VmlinuxError as exc:
        return IngestError(exc.path, exc.reason)


# ----------------------------------------------------------------------------- many files


def find_module_files(paths: Iterable[str | os.PathLike[str]],
                      skipped: list[IngestError] | None = None) -> tuple[list[str], list[IngestError]]:
    """Expand directories to the module files under them (sorted); files given explicitly
    are taken whatever their name.  Missing paths come back as errors; a FIFO, device or
    socket named like a module inside a directory is left out and noted in ``skipped``
    (given explicitly, it is read, and refused as not a regular file)."""
    files: list[str] = []
    errors: list[IngestError] = []
    for p in paths:
        sp = os.fspath(p)
        if os.path.isdir(sp):
            found = []
            for root, dirs, names in os.walk(sp):
                dirs.sort()
                for n in names:
                    if not n.endswith(MODULE_SUFFIXES):
                        continue
                    full = os.path.join(root, n)
                    try:
                        kind = file_kind(full)
                    except _Malformed as exc:
                        errors.append(IngestError(full, str(exc)))
                        continue
                    if kind is None:
                        found.append(full)
                    elif skipped is not None:
                        skipped.append(IngestError(full, f"{kind}, not a module file: skipped"))
            files += sorted(found)
        elif os.path.lexists(sp):
            files.append(sp)
        else:
            errors.append(IngestError(sp, "no such file or directory"))
    return files, errors


def read_symvers(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """``Module.symvers``: symbol -> exporting module name (None for vmlinux).

    Lines are ``CRC<TAB>symbol<TAB>module path<TAB>export type<TAB>namespace``
    (scripts/mod/modpost.c:write_dump)."""
    out: dict[str, str | None] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                if line.strip():
                    raise ValueError(f"{path}:{lineno}: not a Module.symvers line")
                continue
            mod = parts[2]
            out[parts[1]] = None if mod == "vmlinux" else module_name(os.path.basename(mod))
    return out


_DEB_DIR = re.compile(r"^(linux-image-[^_/]+)_([^_/]+)(?:_[^_/]+)?(?:\.deb)?$")


def detect_package(paths: Sequence[str | os.PathLike[str]]) -> tuple[str | None, str | None]:
    """Package name and version from an extracted Debian package.

    Tries, for each path and its parents: ``DEBIAN/control`` (``dpkg-deb -R``), then
    ``usr/share/doc/linux-image-*/changelog.Debian.gz`` (``dpkg-deb -x``), then a directory
    named like the .deb (``linux-image-..._VERSION_amd64``)."""
    for p in paths:
        path = Path(p).resolve()
        for d in [path, *path.parents]:
            control = d / "DEBIAN" / "control"
            if control.is_file():
                fields = {}
                for line in control.read_text(errors="replace").splitlines():
                    k, sep, v = line.partition(":")
                    if sep and not k.startswith(" "):
                        fields[k.strip()] = v.strip()
                if "Package" in fields:
                    return fields["Package"], fields.get("Version")
            docs = d / "usr" / "share" / "doc"
            if docs.is_dir():
                for pkg in sorted(docs.glob("linux-image-*")):
                    changelog = pkg / "changelog.Debian.gz"
                    if changelog.is_file():
                        with gzip.open(changelog, "rt", errors="replace") as f:
                            first = f.readline()
                        m = re.match(r"^\S+ \(([^)]+)\)", first)
                        return pkg.name, m.group(1) if m else None
            m = _DEB_DIR.match(d.name)
            if m:
                return m.group(1), m.group(2)
    return None, None


def _release_from_paths(files: Sequence[str]) -> str | None:
    """The ``<release>`` of ``.../lib/modules/<release>/...`` (where the package installs modules)."""
    for f in files:
        parts = Path(f).parts
        for i, part in enumerate(parts[:-2]):
            if part == "lib" and parts[i + 1] == "modules":
                return parts[i + 2]
    return None


def _release_from_records(records: Sequence[ModuleRecord]) -> str:
    for r in records:
        if r.vermagic and r.vermagic.split():
            return r.vermagic.split()[0]
    return "unknown"


def find_vmlinuz(paths: Sequence[str | os.PathLike[str]], kernel_release: str | None) -> str | None:
    """The ``boot/vmlinuz-<release>`` of the extracted package that holds ``paths``.

    Looks in each path and its parents (``dpkg-deb -x`` puts the image at
    ``boot/vmlinuz-<release>``, the modules under ``lib/modules/<release>``); without a
    release, the only ``boot/vmlinuz-*`` there is."""
    for p in paths:
        path = Path(p).resolve()
        for d in [path, *path.parents]:
            boot = d / "boot"
            if not boot.is_dir():
                continue
            if kernel_release:
                candidate = boot / f"vmlinuz-{kernel_release}"
                if candidate.is_file():
                    return str(candidate)
            else:
                found = sorted(boot.glob("vmlinuz-*"))
                if len(found) == 1:
                    return str(found[0])
    return None


@dataclass
class IngestResult:
    workload: Workload
    document: dict[str, Any]  #: the compact document (what write_document stores)
    errors: list[IngestError]
    unresolved: int  #: undefined symbols found neither in Module.symvers nor in exports
    vmlinuz: str | None = None  #: the kernel image read (None: none given or found)
    skipped: list[IngestError] = field(default_factory=list)  #: left out of a directory (not regular files)

    def write(self, path: str | os.PathLike[str]) -> None:
        write_document(self.document, path)


def _batches(files: list[str], jobs: int) -> list[list[str]]:
    """Biggest files first so that the last batches are small (better balance), in batches
    of about 1/64 of the work per worker."""
    sizes = {}
    for f in files:
        try:
            sizes[f] = os.path.getsize(f)
        except OSError:
            sizes[f] = 0
    order = sorted(files, key=lambda f: -sizes[f])
    target = max(1, sum(sizes.values()) // (jobs * 64))
    batches: list[list[str]] = []
    cur: list[str] = []
    acc = 0
    for f in order:
        cur.append(f)
        acc += sizes[f]
        if acc >= target or len(cur) >= 64:
            batches.append(cur)
            cur, acc = [], 0
    if cur:
        batches.append(cur)
    return batches


def _run(
    files: list[str],
    jobs: int,
    on_result: Callable[[int], None] | None,
    kernel_release: str | None,
    vmlinuz: str | None,
    machines: Machines,
    max_size: int,
) -> tuple[list[ModuleRecord | IngestError], VmlinuxInfo | IngestError | None]:
    if jobs <= 1 or len(files) <= 1:
        vml = _read_vmlinux(vmlinuz, machines) if vmlinuz else None
        out = []
        for f in files:
            out += _ingest_batch([f], kernel_release, machines, max_size)
            if on_result:
                on_result(1)
        return out, vml
    results: dict[str, ModuleRecord | IngestError] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # the kernel image first: it is the biggest single piece of work
        image = pool.submit(_read_vmlinux, vmlinuz, machines) if vmlinuz else None
        pending = {pool.submit(_ingest_batch, b, kernel_release, machines, max_size): b
                   for b in _batches(files, jobs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                batch = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # a worker died (e.g. killed): name its files
                    res = [IngestError(f, f"worker failed: {exc}") for f in batch]
                results.update(zip(batch, res, strict=True))
                if on_result:
                    on_result(len(batch))
        vml: VmlinuxInfo | IngestError | None = None
        if image is not None and vmlinuz is not None:
            try:
                vml = image.result()
            except Exception as exc:
                vml = IngestError(vmlinuz, f"worker failed: {exc}")
    return [results[f] for f in files], vml


def _closure(records: list[ModuleRecord], only: Iterable[str], errors: list[IngestError],
             on_error: Callable[[IngestError], None] | None) -> list[ModuleRecord]:
    """The records of the ``only`` modules and of everything they depend on."""
    by_name = {r.name: r for r in records}
    keep: set[str] = set()
    todo = [module_name(name) for name in only]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        record = by_name.get(name)
        if record is None:
            err = IngestError(name, "--only names a module that is not among the ingested files")
            errors.append(err)
            if on_error:
                on_error(err)
            continue
        keep.add(name)
        todo.extend(module_name(dep) for dep in record.depends)
    return [r for r in records if r.name in keep]


def ingest_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    symvers: str | os.PathLike[str] | None = None,
    vmlinuz: str | os.PathLike[str] | None = None,
    no_vmlinuz: bool = False,
    jobs: int | None = None,
    package: str | None = None,
    version: str | None = None,
    kernel_release: str | None = None,
    on_total: Callable[[int], None] | None = None,
    on_result: Callable[[int], None] | None = None,
    on_error: Callable[[IngestError], None] | None = None,
    only: Iterable[str] | None = None,
    machines: Machines | None = None,
    max_module_size: int = DEFAULT_MAX_MODULE_SIZE,
    on_warning: Callable[[IngestError], None] | None = None,
) -> IngestResult:
    """Ingest module files and directories, and the kernel image, into a workload.

    ``only`` keeps just those modules and what they depend on (modinfo depends), e.g. the
    modules a measurement loaded; an unknown name is an IngestError naming it.

    ``vmlinuz`` defaults to the package's ``boot/vmlinuz-<release>`` (:func:`find_vmlinuz`);
    without one (or with ``no_vmlinuz``) the workload has no vmlinux facts. ``machines``
    defaults to the ELF machines of the installed arch plugins. ``on_total(n)`` is called once with the
    number of module files, ``on_result(k)`` after each k files, ``on_error(err)`` for each
    file that failed (as soon as it is known), ``on_warning(err)`` for each file left out of
    a directory (not a regular file). ``max_module_size`` bounds what one module may be or
    inflate to (:func:`read_bounded`)."""
    skipped: list[IngestError] = []
    files, errors = find_module_files(paths, skipped)
    if on_warning:
        for w in skipped:
            on_warning(w)
    if on_error:
        for e in errors:
            on_error(e)
    if on_total:
        on_total(len(files))
    release = kernel_release or _release_from_paths(files)
    if release is not None:
        rules_for(release)  # ValueError (one line) for a kernel whose rules ingest lacks
    image = None if no_vmlinuz else os.fspath(vmlinuz) if vmlinuz is not None else find_vmlinuz(paths, release)
    jobs = max(1, jobs or os.cpu_count() or 1)
    if machines is None:
        machines = elf_machines()

    raw, vml = _run(files, jobs, on_result, release, image, machines, max_module_size)
    records: list[ModuleRecord] = []
    seen: dict[str, str] = {}
    machine = vml.machine if isinstance(vml, VmlinuxInfo) else None
    for item in raw:
        if isinstance(item, ModuleRecord) and item.name in seen:
            item = IngestError(item.path, f"duplicate module {item.name} (also {seen[item.name]})")
        if isinstance(item, ModuleRecord):
            machine = machine or item.machine
            if item.machine != machine:
                item = IngestError(item.path, f"a {item.machine} module, the others are {machine}")
        if isinstance(item, IngestError):
            errors.append(item)
            if on_error:
                on_error(item)
            continue
        seen[item.name] = item.path
        records.append(item)
    if only is not None:
        records = _closure(records, only, errors, on_error)
    release = release or _release_from_records(records)
    if isinstance(vml, VmlinuxInfo) and vml.kernel_release != release:
        vml = IngestError(image or "vmlinuz", f"kernel release {vml.kernel_release} (linux_banner), the modules "
                          f"are {release}")
    if isinstance(vml, IngestError):
        errors.append(vml)
        if on_error:
            on_error(vml)
        vml = None

    # Who exports what: Module.symvers when given, and the modules' own __ksymtab.
    exporters: dict[str, str | None] = {}
    for r in records:
        for sym in r.exports:
            exporters.setdefault(sym, r.name)
    if symvers is not None:
        exporters.update(read_symvers(symvers))

    by_name = {m.name: m for m in machines.values()}
    machine = machine or next(iter(by_name), "unknown")
    arch = by_name.get(machine)
    strings = _Strings()
    assert strings.classes == list(MEM_CLASSES)  # rows below use MEM_CLASSES indices
    kernel_ix = strings.target_ix("kernel")
    self_ix = [strings.target_ix(f"self:{c.value}") for c in MEM_CLASSES]
    percpu_ix = strings.target_ix("percpu")
    type_ix: dict[int, int] = {}
    table_ix = {t: strings.table_ix(t) for t in TABLE_NAMES}
    rows = []
    unresolved = 0
    for r in sorted(records, key=lambda r: r.name):
        # Resolve each undefined symbol: vmlinux ("kernel") or the exporting module.
        targets: list[int] = []
        undefined_modules: Counter[str] = Counter()
        undefined_kernel = 0
        for sym in r.undefined:
            exp = exporters.get(sym)
            if exp is None or exp == r.name:
                if sym not in exporters and sym != "_GLOBAL_OFFSET_TABLE_" and sym not in r.weak_undefined:
                    unresolved += 1
                undefined_kernel += 1
                targets.append(kernel_ix)
            else:
                undefined_modules[exp] += 1
                targets.append(strings.target_ix(f"module:{exp}"))
        agg: dict[tuple[int, int, int], int] = defaultdict(int)
        for rtype, src, t, n in r.relocs:
            if t >= _T_UNDEF0:
                tgt = targets[t - _T_UNDEF0]
            elif t == _T_PERCPU:
                tgt = percpu_ix
            elif t >= 0:
                tgt = self_ix[t]
            else:  # SHN_ABS, symbol 0, non-allocated section: outside the module
                tgt = kernel_ix
            ti = type_ix.get(rtype)
            if ti is None:
                ti = type_ix[rtype] = strings.type_ix(arch.reloc_name(rtype))
            agg[(ti, src, tgt)] += n
        relocs = []
        for key in sorted(agg, key=lambda k: (strings.reloc_types[k[0]], k[1], strings.targets[k[2]])):
            relocs += (*key, agg[key])
        tables = []
        for tname, count in r.tables.items():
            tables += (table_ix[tname], count)
        # The compact row of workload.py (see the format comment there).
        rows.append(
            [
                r.name,
                r.depends,
                [list(sec) for sec in r.sections],
                r.kallsyms_core_bytes,
                r.kallsyms_init_bytes,
                relocs,
                tables,
                undefined_kernel,
                dict(sorted(undefined_modules.items())),
                r.percpu_size,
                r.file_size,
                r.stored_size,
                r.btf_size,
            ]
        )

    if package is None or version is None:
        det_pkg, det_ver = detect_package(paths)
        package = package or det_pkg
        version = version or det_ver
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package": package or "unknown",
        "version": version or release,
        "kernel_release": release,
        "machine": machine,
        "vmlinux": vml.model_dump(mode="json") if vml is not None else None,
        **strings.header(),
        "modules": rows,
    }
    return IngestResult(workload=workload_from_document(doc), document=doc, errors=errors, unresolved=unresolved,
                        vmlinuz=image if vml is not None else None, skipped=skipped)


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience
    """``python -m permalloc.plugins.module_loader.ingest PATH... -o FILE``."""
    import argparse

    from .cli import add_ingest_command

    parser = argparse.ArgumentParser(prog="permalloc")
    add_ingest_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ingest", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
