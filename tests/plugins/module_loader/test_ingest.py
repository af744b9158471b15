"""Ingestion of real ELF objects, cross-checked against binutils readelf.

The objects are built with gcc at test time (conftest.py); readelf's view of the same
files is parsed here and the classification rules of kernel/module/main.c (6.1) are
re-derived from it independently of the code under test.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from permalloc.arches.x86.elf import X86_64
from permalloc.plugins.module_loader.cli import add_ingest_command
from permalloc.plugins.module_loader.ingest import IngestError, ingest_file, ingest_paths
from permalloc.plugins.module_loader.rules import rules_for, table_entry_sizes
from permalloc.plugins.module_loader.workload import (
    BUNDLED_WORKLOADS,
    TABLE_NAMES,
    MemClass,
    ModuleInfo,
    Workload,
    bundled_workload_path,
    load_workload,
    save_workload,
)

# ----------------------------------------------------------------------------- readelf


def readelf(path: Path, *opts: str) -> str:
    return subprocess.run(["readelf", "-W", *opts, str(path)], check=True, capture_output=True, text=True).stdout


def readelf_sections(path: Path) -> list[dict]:
    """``readelf -W -S``: index, name, type, size, flags, info, align per section."""
    out = []
    for line in readelf(path, "-S").splitlines():
        m = re.match(r"^\s*\[\s*(\d+)\]\s(.*)$", line)
        if not m:
            continue
        tok = m.group(2).split()
        if len(tok) == 8:  # section 0: no name, no flags
            name, flags, tok = "", "", ["", *tok[:5], "", *tok[5:]]
        elif len(tok) == 9:  # no flags
            name, flags = tok[0], ""
            tok = [*tok[:6], "", *tok[6:]]
        else:
            name, flags = tok[0], tok[6]
        out.append(
            {
                "index": int(m.group(1)),
                "name": name,
                "type": tok[1],
                "size": int(tok[4], 16),
                "flags": flags,
                "link": int(tok[7]),
                "info": int(tok[8]),
                "align": int(tok[9]),
            }
        )
    return out


def readelf_symbols(path: Path) -> list[dict]:
    out = []
    for line in readelf(path, "-s").splitlines():
        m = re.match(r"^\s*(\d+):\s+[0-9a-f]+\s+\S+\s+(\S+)\s+(\S+)\s+\S+\s+(\S+)\s?(.*)$", line)
        if m:
            out.append(
                {"num": int(m.group(1)), "type": m.group(2), "bind": m.group(3), "ndx": m.group(4), "name": m.group(5)}
            )
    return out


def readelf_relocs(path: Path) -> dict[str, list[tuple[int, str]]]:
    """Relocation section name -> [(symbol index, type name)]."""
    out: dict[str, list[tuple[int, str]]] = {}
    cur = None
    for line in readelf(path, "-r").splitlines():
        m = re.match(r"^Relocation section '(.+)' at offset", line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        m = re.match(r"^[0-9a-f]{16}\s+([0-9a-f]{16})\s+(\S+)", line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16) >> 32, m.group(2)))
    return out


# The rules of kernel/module/main.c (6.1), re-derived from readelf's letters:
DROPPED = {".modinfo", "__versions", ".data..percpu"}  # lose SHF_ALLOC in the loader
RO_AFTER_INIT = {".data..ro_after_init", "__jump_table"}  # get SHF_RO_AFTER_INIT


def expected_class(name: str, flags: str) -> str | None:
    if "A" not in flags or name in DROPPED:
        return None
    if "X" in flags:
        cls = "text"
    elif "W" not in flags:
        cls = "rodata"
    elif name in RO_AFTER_INIT:
        cls = "ro_after_init"
    else:
        cls = "data"
    if name.startswith(".init"):  # module_init_section(); .exit stays core (MODULE_UNLOAD=y)
        return "init_data" if cls == "ro_after_init" else f"init_{cls}"
    return cls


def expected_from_readelf(path: Path, exporters: dict[str, str | None]):
    """Sections, relocation aggregates, tables, kallsyms and undefined symbols as the
    kernel would see them, computed from readelf output only."""
    secs = readelf_sections(path)
    by_index = {s["index"]: s for s in secs}
    cls = {s["index"]: expected_class(s["name"], s["flags"]) for s in secs}
    pcpu = next((s["index"] for s in secs if s["name"] == ".data..percpu"), None)
    syms = readelf_symbols(path)
    by_num = {s["num"]: s for s in syms}
    sections = [(s["name"], s["size"], s["align"], s["flags"], cls[s["index"]]) for s in secs if cls[s["index"]]]

    def target(symnum: int) -> str:
        sym = by_num[symnum]
        if sym["ndx"] == "UND":
            exp = exporters.get(sym["name"])
            return f"module:{exp}" if exp else "kernel"
        ndx = int(sym["ndx"])
        return "percpu" if ndx == pcpu else f"self:{cls[ndx]}"

    relocs: Counter = Counter()
    rel = readelf_relocs(path)
    for s in secs:
        if s["type"] != "RELA" or not cls.get(s["info"]):
            continue  # apply_relocations(): only into sections still SHF_ALLOC
        for symnum, rtype in rel[s["name"]]:
            relocs[(rtype, cls[s["info"]], target(symnum))] += 1

    sizes = {s["name"]: s["size"] for s in secs}
    entry_sizes = table_entry_sizes(rules_for("6.1.0-test"), X86_64)  # the objects' vermagic
    tables = {t: sizes[t] // entry_sizes[t] for t in TABLE_NAMES if sizes.get(t) and t in entry_sizes}

    symtab = next(s for s in secs if s["type"] == "SYMTAB")
    strtab = by_index[symtab["link"]]

    def is_core(s: dict) -> bool:  # kallsyms.c:is_core_symbol with CONFIG_KALLSYMS_ALL=y
        if s["type"] == "SECTION" or not s["name"] or s["ndx"] in ("UND", "ABS"):
            return False
        ndx = int(s["ndx"])
        return ndx == pcpu or (cls[ndx] is not None and not cls[ndx].startswith("init"))

    core = [s for s in syms if s["num"] == 0 or is_core(s)]
    kcore = len(core) * 24 + sum(len(s["name"]) + 1 for s in core) + len(core)
    kinit = symtab["size"] + strtab["size"] + 32 + len(syms)
    undefined = [s["name"] for s in syms if s["ndx"] == "UND" and s["num"] != 0]
    return sections, relocs, tables, kcore, kinit, undefined


def module_from(result, name: str) -> ModuleInfo:
    return result.workload.modules[name]


def reloc_counter(mod: ModuleInfo) -> Counter:
    return Counter({(r.type, r.source_class.value, r.target): r.count for r in mod.relocations})


# ----------------------------------------------------------------------------- good input


@pytest.fixture(scope="module")
def both(objects):
    return ingest_paths([objects.mod_a, objects.foo], symvers=objects.symvers, jobs=1)


def test_sections_match_readelf(objects, both):
    for path, name in ((objects.mod_a, "mod_a"), (objects.foo, "foo")):
        sections, *_ = expected_from_readelf(path, {})
        got = [(s.name, s.size, s.align, s.flags, s.mem_class.value) for s in module_from(both, name).sections]
        assert got == sections


def test_section_classes_follow_kernel_rules(both):
    mod = module_from(both, "mod_a")
    cls = {s.name: s.mem_class for s in mod.sections}
    assert cls[".text"] is MemClass.TEXT
    assert cls[".exit.text"] is MemClass.TEXT  # CONFIG_MODULE_UNLOAD=y: exit stays core
    assert cls[".init.text"] is MemClass.INIT_TEXT
    assert cls[".init.rodata"] is MemClass.INIT_RODATA
    assert cls[".init.data"] is MemClass.INIT_DATA
    assert cls[".rodata"] is MemClass.RODATA
    assert cls["__mcount_loc"] is MemClass.RODATA
    assert cls[".data..ro_after_init"] is MemClass.RO_AFTER_INIT
    assert cls["__jump_table"] is MemClass.RO_AFTER_INIT  # marked in layout_and_allocate
    assert cls[".static_call_sites"] is MemClass.DATA
    assert cls[".bss"] is MemClass.DATA
    for dropped in (".modinfo", "__versions", ".data..percpu", ".discard.test", ".comment"):
        assert dropped not in cls
    assert mod.percpu_size == 12
    foo = module_from(both, "foo")
    assert {s.name: s.flags for s in foo.sections}["__patchable_function_entries"] == "WAL"


def test_relocations_match_readelf(objects, both):
    exporters = {"foo_exported": "foo"}
    for path, name in ((objects.mod_a, "mod_a"), (objects.foo, "foo")):
        _, relocs, *_ = expected_from_readelf(path, exporters)
        assert reloc_counter(module_from(both, name)) == relocs
    mod = module_from(both, "mod_a")
    targets = {r.target for r in mod.relocations}
    assert {
        "kernel",
        "percpu",
        "module:foo",
        "self:text",
        "self:init_data",
        "self:init_rodata",
        "self:ro_after_init",
        "self:data",
        "self:rodata",
    } <= targets
    # .rela.data..percpu and .rela.discard.test are not applied by the loader
    assert all(r.source_class in MemClass for r in mod.relocations)
    dropped = sum(
        len(v) for k, v in readelf_relocs(objects.mod_a).items() if k in (".rela.data..percpu", ".rela.discard.test")
    )
    total = sum(len(v) for v in readelf_relocs(objects.mod_a).values())
    assert dropped == 2
    assert sum(r.count for r in mod.relocations) == total - dropped


def test_table_entry_counts(objects, both):
    mod = module_from(both, "mod_a")
    _, _, tables, *_ = expected_from_readelf(objects.mod_a, {})
    assert mod.tables == tables
    assert mod.tables == {
        ".smp_locks": 3,
        "__jump_table": 2,
        ".altinstructions": 2,
        ".parainstructions": 1,
        ".orc_unwind_ip": 4,
        ".static_call_sites": 2,
        ".retpoline_sites": 1,
        ".return_sites": 2,
        ".ibt_endbr_seal": 1,
        "__mcount_loc": 4,
    }  # no .call_sites: the 6.1 loader does not read it (arch/x86/kernel/module.c 6.1: module_finalize)
    # -mrecord-mcount: one __mcount_loc entry (and relocation) per traced function
    assert mod.table("__mcount_loc") == len(readelf_relocs(objects.mod_a)[".rela__mcount_loc"])
    assert module_from(both, "foo").tables == {"__patchable_function_entries": 1}


def _with_vermagic(objects, tmp_path, release: bytes) -> Path:
    """mod_a with another vermagic (same length, so the ELF is otherwise the same bytes)."""
    old = b"vermagic=6.1.0-test "
    assert len(release) == len(old) - len(b"vermagic= ")
    path = tmp_path / f"mod_a-{release.decode()}.ko"
    path.write_bytes(objects.mod_a.read_bytes().replace(old, b"vermagic=" + release + b" "))
    return path


def test_rules_follow_the_kernel_of_the_module(objects, tmp_path):
    """The vermagic picks the rules: 6.12 reads .call_sites and a 14-byte alt_instr, no paravirt."""
    rec = ingest_file(_with_vermagic(objects, tmp_path, b"6.12.0-tst"))
    assert rec.tables[".call_sites"] == 2 and ".parainstructions" not in rec.tables
    assert rec.tables[".altinstructions"] == 2 * 12 // 14  # two 6.1-sized entries, walked 14 bytes at a time
    with pytest.raises(IngestError, match=r"vermagic '6.1.0-test SMP mod_unload' is not kernel release 6.12.0-tst"):
        ingest_file(objects.mod_a, "6.12.0-tst")  # check_modinfo refuses a module of another release
    with pytest.raises(IngestError, match=r"kernel release 6.5.0-test: ingest has the module loader rules of Linux "
                       r"6.1, 6.12 only"):
        ingest_file(_with_vermagic(objects, tmp_path, b"6.5.0-test"))


def test_kallsyms_and_undefined(objects, both):
    exporters = {"foo_exported": "foo"}
    for path, name in ((objects.mod_a, "mod_a"), (objects.foo, "foo")):
        _, _, _, kcore, kinit, undefined = expected_from_readelf(path, exporters)
        mod = module_from(both, name)
        assert (mod.kallsyms_core_bytes, mod.kallsyms_init_bytes) == (kcore, kinit)
        assert mod.undefined_kernel + sum(mod.undefined_modules.values()) == len(undefined)
    mod = module_from(both, "mod_a")
    # __fentry__, kernel_func from vmlinux; weak_missing unresolved (weak) -> kernel
    assert mod.undefined_kernel == 3
    assert mod.undefined_modules == {"foo": 1}
    assert both.unresolved == 0


def test_modinfo(both):
    mod = module_from(both, "mod_a")
    assert mod.name == "mod_a"
    assert mod.depends == ["foo", "bar_baz"]  # '-' folded to '_' like module names
    assert module_from(both, "foo").depends == []


def test_exports_from_module_set_without_symvers(objects, both):
    res = ingest_paths([objects.mod_a, objects.foo], jobs=1)
    mod = module_from(res, "mod_a")
    assert mod.undefined_modules == {"foo": 1}  # found through foo's __ksymtab_foo_exported
    assert reloc_counter(mod) == reloc_counter(module_from(both, "mod_a"))
    assert res.unresolved == 3  # kernel_func, __fentry__ (foo), printk (foo): not weak
    alone = ingest_paths([objects.mod_a], jobs=1)
    assert module_from(alone, "mod_a").undefined_modules == {}
    assert module_from(alone, "mod_a").undefined_kernel == 4


def test_compressed_and_directory(objects, both, tmp_path):
    import zstandard

    raw = objects.mod_a.read_bytes()
    d = tmp_path / "lib" / "modules" / "6.1.0-test" / "kernel"
    d.mkdir(parents=True)
    (d / "mod_a.ko.xz").write_bytes(lzma.compress(raw, format=lzma.FORMAT_XZ))
    (d / "foo.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(objects.foo.read_bytes()))
    (d / "notes.txt").write_text("not a module, not picked up from a directory")
    res = ingest_paths([tmp_path / "lib"], symvers=objects.symvers, jobs=1)
    assert res.errors == []
    assert res.workload.kernel_release == "6.1.0-test"
    for name in ("mod_a", "foo"):
        # the same module whatever the compression; only the size as stored differs
        got, want = module_from(res, name), module_from(both, name)
        assert got.stored_size < got.file_size == want.file_size == want.stored_size
        assert got.model_copy(update={"stored_size": 0}) == want.model_copy(update={"stored_size": 0})


def test_parallel_equals_serial(objects, both, tmp_path):
    for i in range(6):
        (tmp_path / f"copy{i}.ko").write_bytes(objects.mod_a.read_bytes())
    (tmp_path / "foo.ko").write_bytes(objects.foo.read_bytes())
    serial = ingest_paths([tmp_path], symvers=objects.symvers, jobs=1)
    parallel = ingest_paths([tmp_path], symvers=objects.symvers, jobs=2)
    # every copy calls itself mod_a (modinfo name=): the later files are duplicates
    assert [e.reason.split(" (")[0] for e in parallel.errors] == ["duplicate module mod_a"] * 5
    assert serial.document == parallel.document


def test_workload_file_round_trip(both, tmp_path):
    out = tmp_path / "w.json.gz"
    both.write(out)
    loaded = load_workload(out)
    assert set(loaded.modules) == {"mod_a", "foo"}
    for name in loaded.modules:
        assert loaded.modules[name] == both.workload.modules[name]
    # a plain (validated) Workload saves to the same document
    plain = Workload(
        package=loaded.package,
        version=loaded.version,
        kernel_release=loaded.kernel_release,
        modules={n: loaded.modules[n] for n in loaded.modules},
    )
    save_workload(plain, tmp_path / "again.json.gz")
    assert load_workload(tmp_path / "again.json.gz").modules["mod_a"] == loaded.modules["mod_a"]
    header, body = gzip.decompress(out.read_bytes()).decode().splitlines()
    assert json.loads(header)["modules"] == 2 and json.loads(body)["modules"][0][0] == "foo"
    # model_dump is plain JSON
    assert json.loads(plain.model_dump_json())["modules"]["foo"]["name"] == "foo"


def test_package_detection(objects, tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: linux-image-6.1.0-99-amd64-unsigned\nSource: linux\nVersion: 6.1.999-1\n"
    )
    mods = root / "lib" / "modules" / "6.1.0-99-amd64"
    mods.mkdir(parents=True)
    (mods / "foo.ko").write_bytes(objects.foo.read_bytes())
    res = ingest_paths([root / "lib" / "modules"], jobs=1)
    w = res.workload
    assert (w.package, w.version, w.kernel_release) == (
        "linux-image-6.1.0-99-amd64-unsigned",
        "6.1.999-1",
        "6.1.0-99-amd64",
    )
    res = ingest_paths([mods], jobs=1, package="p", version="v")
    assert (res.workload.package, res.workload.version) == ("p", "v")


# ----------------------------------------------------------------------------- bad input


def _reason(path: Path) -> str:
    with pytest.raises(IngestError) as exc:
        ingest_file(path)
    err = exc.value
    assert err.path == str(path)
    assert str(err) == f"{path}: {err.reason}"
    assert "\n" not in str(err)
    return err.reason


def test_truncated(objects, tmp_path):
    raw = objects.mod_a.read_bytes()
    for n in (0, 10, 63, 64, 200, len(raw) // 2, len(raw) - 1):
        p = tmp_path / f"trunc{n}.ko"
        p.write_bytes(raw[:n])
        reason = _reason(p)
        assert "truncated" in reason or "not an ELF" in reason or "past the end" in reason or "out of file" in reason, (
            reason
        )


def test_bit_flipped_header(objects, tmp_path):
    raw = objects.mod_a.read_bytes()
    cases = {
        0: "not an ELF",  # magic
        4: "wrong machine",  # EI_CLASS 2 -> 3
        16: "not a relocatable",  # e_type ET_REL -> ET_EXEC... (bit 0: 1 -> 0 = ET_NONE)
        0x28 + 7: "out of file",  # top byte of e_shoff
        0x3A: "e_shentsize",
    }
    for off, want in cases.items():
        b = bytearray(raw)
        b[off] ^= 0x01 if off != 0x28 + 7 else 0x80
        p = tmp_path / f"flip{off}.ko"
        p.write_bytes(bytes(b))
        assert want in _reason(p)


def test_random_bit_flips_never_crash(objects, tmp_path):
    """Any corruption gives a record or an IngestError naming the file, nothing else."""
    raw = objects.mod_a.read_bytes()
    rng = random.Random(1234)
    p = tmp_path / "fuzz.ko"
    outcomes = Counter()
    for _ in range(400):
        b = bytearray(raw)
        for _ in range(rng.choice((1, 1, 2, 8))):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(b))
        try:
            ingest_file(p)
            outcomes["ok"] += 1
        except IngestError as err:
            assert str(err).startswith(f"{p}: ") and "\n" not in str(err)
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]


def test_non_elf_and_wrong_machine(objects, tmp_path):
    text = tmp_path / "readme.ko"
    text.write_text("this is not an object file\n" * 10)
    assert "not an ELF" in _reason(text)
    raw = bytearray(objects.mod_a.read_bytes())
    raw[18:20] = (243).to_bytes(2, "little")  # e_machine = EM_RISCV: no installed arch contributes it
    riscv = tmp_path / "riscv.ko"
    riscv.write_bytes(bytes(raw))
    assert "wrong machine: EM_RISCV, expected EM_AARCH64 or EM_X86_64" in _reason(riscv)
    raw[18:20] = (183).to_bytes(2, "little")  # EM_AARCH64: read by arm64's rules, which want its PLTs
    arm = tmp_path / "arm.ko"
    arm.write_bytes(bytes(raw))
    assert "module_frob_arch_sections: module PLT section(s) missing" in _reason(arm)
    raw = bytearray(objects.mod_a.read_bytes())
    raw[4] = 1  # ELFCLASS32
    i386 = tmp_path / "i386.ko"
    i386.write_bytes(bytes(raw))
    assert "ELFCLASS32" in _reason(i386)
    bad_xz = tmp_path / "bad.ko.xz"
    bad_xz.write_bytes(lzma.compress(bytes(raw))[:-20])
    assert "corrupt compressed" in _reason(bad_xz)
    assert "no such file" in str(ingest_paths([tmp_path / "missing.ko"], jobs=1).errors[0])


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="permalloc")
    add_ingest_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_good_and_bad_files(objects, tmp_path, capsys):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "mod_a.ko").write_bytes(objects.mod_a.read_bytes())
    (d / "foo.ko").write_bytes(objects.foo.read_bytes())
    (d / "junk.ko").write_bytes(b"\x7fELF" + b"\0" * 20)
    (d / "half.ko").write_bytes(objects.foo.read_bytes()[:300])
    out = tmp_path / "w.json.gz"
    rc = _cli(
        "ingest",
        str(d),
        "-o",
        str(out),
        "--symvers",
        str(objects.symvers),
        "--jobs",
        "2",
        "--quiet",
        "--package",
        "test-pkg",
        "--version",
        "1.0",
    )
    assert rc == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    for bad in ("junk.ko", "half.ko"):
        assert sum(line.startswith(f"{d / bad}: ") for line in err_lines) == 1
    assert "2 file(s) failed" in err_lines[-1]
    w = load_workload(out)  # the good modules were still written
    assert sorted(w.modules) == ["foo", "mod_a"] and w.package == "test-pkg"
    assert _cli("ingest", str(objects.mod_a), "-o", str(out), "-q") == 0


# ----------------------------------------------------------------------------- bundled


@pytest.fixture(scope="module", params=BUNDLED_WORKLOADS)
def bundled(request) -> Workload:
    return load_workload(bundled_workload_path(request.param))


def test_bundled_workload(bundled):
    release = bundled.kernel_release
    assert bundled.package == f"linux-image-{release}-unsigned" and bundled.machine == "x86_64"
    assert bundled.vmlinux is not None and bundled.vmlinux.kernel_release == release
    assert 3000 < len(bundled.modules) < 10000
    xfs, ext4 = bundled.modules["xfs"], bundled.modules["ext4"]
    assert xfs.depends == ["libcrc32c"] and set(xfs.undefined_modules) == {"libcrc32c"}
    assert set(ext4.depends) == {"jbd2", "mbcache", "crc16"}
    assert {s.name: s.mem_class for s in xfs.sections}["__jump_table"] is MemClass.RO_AFTER_INIT
    assert xfs.table(".orc_unwind_ip") > 10000 and xfs.table("__mcount_loc") > 1000


def test_bundled_workload_is_consistent(bundled):
    bundled.modules.validate_all()  # every row is a valid ModuleInfo (classes, targets)
    for name, mod in bundled.modules.items():
        assert mod.name == name
        assert set(mod.depends) <= set(bundled.modules), name
        # modpost's depends= is exactly the set of modules we resolved symbols to
        assert set(mod.undefined_modules) == set(mod.depends), name
        assert not {s.name for s in mod.sections} & {".modinfo", "__versions", ".data..percpu"}
        for r in mod.relocations:
            if r.target_kind == "module":
                assert r.target_name in mod.depends
