"""Reading a kernel image: extraction, vmlinux.lds.S markers and tables of a tiny vmlinux.

The vmlinux is linked at test time by ld with a script that defines the markers as
arch/x86/kernel/vmlinux.lds.S does (conftest.py); nm of the unstripped link is the truth the
markers derived from the stripped one's section headers are held against.
"""

from __future__ import annotations

import gzip
import lzma
import random
import subprocess

import pytest
import zstandard

from permalloc.cli import main
from permalloc.plugins.module_loader.ingest import ingest_paths
from permalloc.plugins.module_loader.kernel_image import VmlinuxError, extract_vmlinux, read_vmlinux, vmlinux_info
from permalloc.plugins.module_loader.vmlinux import LAYOUT_MARKERS
from permalloc.plugins.module_loader.workload import load_workload


def _nm(path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], check=True, capture_output=True, text=True).stdout
    return {name: int(addr, 16) for addr, _, name in (line.split() for line in out.splitlines())}


@pytest.fixture(scope="module")
def info(tiny_kernel):
    return vmlinux_info(tiny_kernel.stripped.read_bytes())


def test_the_stripped_image_has_no_symbols(tiny_kernel):
    assert b".symtab" not in tiny_kernel.stripped.read_bytes() and b".symtab" in tiny_kernel.linked.read_bytes()


def test_markers_are_the_linker_script_symbols(tiny_kernel, info):
    symbols = _nm(tiny_kernel.linked)
    derived = {name: value for name, value in info.layout.items() if value is not None}
    assert derived == {name: symbols[name] for name in LAYOUT_MARKERS if name in symbols}
    assert info.text_size == symbols["_etext"] - symbols["_text"]
    assert info.image_size == symbols["_end"] - symbols["_text"]
    assert info.machine == "x86_64" and info.kernel_release == "6.1.0-test"
    assert [s.name for s in info.sections if s.nobits] == [".bss", ".brk"]
    assert {seg.flags for seg in info.segments} == {"RX", "RW", "RWX"}


def test_tables_are_counted_like_the_kernel_walks_them(info):
    t = info.tables
    # ftrace_process_locs: the NULL entry is skipped; one site is in .init.text
    assert (t.mcount_loc, t.mcount_loc_init) == (3, 1)
    assert (t.jump_entries, t.jump_entries_init, t.jump_entries_2byte, t.jump_keys, t.jump_keys_true) == (5, 1, 3, 2, 1)
    # key1 (initialised true): 3 run-time entries (one in .exit.text); key2 (.bss): one run-time, one init
    assert info.jump_keys == [(3, 0, True), (1, 1, False)]
    assert (t.static_call_sites, t.static_call_sites_init, t.static_call_keys, t.static_call_tramp_keys) == (3, 1, 1, 1)
    assert (t.altinstructions, t.retpoline_sites, t.smp_locks) == (2, 1, 1)  # .smp_locks: the padding is not entries
    assert (t.parainstructions, t.return_sites, t.orc_unwind_ip, t.mcount_loc_runtime) == (0, 0, 0, 2)


def _bzimage(payload: bytes) -> bytes:
    """A kernel image: a setup header, random bytes with a false xz magic, then the payload."""
    rng = random.Random(7)
    junk = bytes(rng.getrandbits(8) for _ in range(3000))
    return b"MZ" + junk[:1000] + b"\xfd7zXZ\x00" + junk[1000:] + payload + junk[:100]


@pytest.mark.parametrize("wrap", [
    lambda data: _bzimage(lzma.compress(data, format=lzma.FORMAT_XZ)),
    lambda data: _bzimage(zstandard.ZstdCompressor().compress(data)),
    lambda data: _bzimage(gzip.compress(data, mtime=0)),
    lambda data: data,  # "Finally check for uncompressed images or objects"
], ids=["xz", "zstd", "gzip", "elf"])
def test_extraction_finds_the_elf_like_extract_vmlinux(tiny_kernel, wrap, tmp_path):
    elf = tiny_kernel.stripped.read_bytes()
    assert extract_vmlinux(wrap(elf)) == elf
    image = tmp_path / "vmlinuz-6.1.0-test"
    image.write_bytes(wrap(elf))
    assert read_vmlinux(image) == vmlinux_info(elf)


def test_bad_images_are_one_line_errors(tiny_kernel, tmp_path):
    cases = {
        "junk": (_bzimage(b"no kernel here"), "cannot find vmlinux in the kernel image"),
        "lz4": (b"\x02!L\x18" + b"lz4 data", "it has lz4 data, which python cannot decompress"),
        "arm64": (_machine(tiny_kernel.stripped.read_bytes(), 183), "vmlinux of machine EM_AARCH64: ingest reads "
                  "the vmlinux of x86_64 only"),
        "truncated": (tiny_kernel.stripped.read_bytes()[:0x204000], "bad ELF: Reading section 0 at offset"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(VmlinuxError) as exc:
            read_vmlinux(path)
        assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value) and "\n" not in str(exc.value)


def _machine(elf: bytes, e_machine: int) -> bytes:
    return elf[:18] + e_machine.to_bytes(2, "little") + elf[20:]


def _package(tmp_path, objects, image: bytes):
    """An extracted package: boot/vmlinuz-<release> next to lib/modules/<release>."""
    root = tmp_path / "pkg"
    mods = root / "lib" / "modules" / "6.1.0-test" / "kernel"
    mods.mkdir(parents=True)
    (mods / "mod_a.ko").write_bytes(objects.mod_a.read_bytes())
    (mods / "foo.ko").write_bytes(objects.foo.read_bytes())
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz-6.1.0-test").write_bytes(image)
    return root


def test_ingest_reads_the_package_vmlinuz_and_writes_the_same_bytes_twice(objects, tiny_kernel, tmp_path):
    image = _bzimage(lzma.compress(tiny_kernel.stripped.read_bytes(), format=lzma.FORMAT_XZ))
    root = _package(tmp_path, objects, image)
    serial = ingest_paths([root / "lib" / "modules"], symvers=objects.symvers, jobs=1)
    parallel = ingest_paths([root / "lib" / "modules"], symvers=objects.symvers, jobs=2)
    assert serial.errors == [] and serial.vmlinuz == str(root / "boot" / "vmlinuz-6.1.0-test")
    assert serial.workload.vmlinux == vmlinux_info(tiny_kernel.stripped.read_bytes())
    a, b = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    serial.write(a)
    parallel.write(b)
    assert a.read_bytes() == b.read_bytes()  # deterministic: same input, same bytes


def test_a_vmlinuz_of_another_release_is_refused(objects, tiny_kernel, tmp_path):
    other = tiny_kernel.stripped.read_bytes().replace(b"Linux version 6.1.0-test", b"Linux version 6.1.0-tiny")
    root = _package(tmp_path, objects, other)
    result = ingest_paths([root / "lib" / "modules"], symvers=objects.symvers, jobs=1)
    assert [str(e) for e in result.errors] == [
        f"{root / 'boot' / 'vmlinuz-6.1.0-test'}: kernel release 6.1.0-tiny (linux_banner), the modules are 6.1.0-test"
    ]
    assert result.workload.vmlinux is None and len(result.workload.modules) == 2


def test_cli_ingest_says_which_image_it_read(objects, tiny_kernel, tmp_path, capsys):
    from permalloc.cli import main

    root = _package(tmp_path, objects, tiny_kernel.stripped.read_bytes())
    out = tmp_path / "w.json.gz"
    assert main(["ingest", str(root / "lib" / "modules"), "--symvers", str(objects.symvers), "-o", str(out)]) == 0
    assert f"and {root / 'boot' / 'vmlinuz-6.1.0-test'} -> {out}" in capsys.readouterr().err
    assert main(["ingest", str(objects.mod_a), "-o", str(tmp_path / "x.json.gz")]) == 0
    assert "no boot/vmlinuz-<release> found next to the modules" in capsys.readouterr().err
    assert main(["ingest", str(objects.mod_a), "--vmlinuz", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path / 'nope'}: no such file"


def test_random_corruption_is_an_error_or_a_result_never_a_crash(tiny_kernel, tmp_path):
    elf = tiny_kernel.stripped.read_bytes()
    rng = random.Random(11)
    path = tmp_path / "vmlinuz"
    outcomes = set()
    for _ in range(30):
        data = bytearray(elf)
        for _ in range(rng.randint(1, 8)):
            pos = rng.choice((rng.randrange(64), rng.randrange(len(data))))  # the header, or anywhere
            data[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            read_vmlinux(path)
            outcomes.add("read")
        except VmlinuxError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: ")
            outcomes.add("error")
    assert outcomes == {"read", "error"}


def test_no_vmlinuz_ingests_the_modules_only(objects, tmp_path, capsys):
    """An image ingest cannot read (here: not a kernel at all) is not opened with --no-vmlinuz."""
    root = _package(tmp_path, objects, b"MZ raw Image, no ELF inside")
    out = tmp_path / "w.json.gz"
    assert main(["ingest", "-q", "--no-vmlinuz", "--symvers", str(objects.symvers), str(root / "lib" / "modules"),
                 "-o", str(out)]) == 0
    assert load_workload(out).vmlinux is None and len(load_workload(out).modules) == 2
    assert main(["ingest", "-q", "--symvers", str(objects.symvers), str(root / "lib" / "modules"),
                 "-o", str(out)]) == 1
    assert "vmlinuz-6.1.0-test: " in capsys.readouterr().err
    assert main(["ingest", "--no-vmlinuz", "--vmlinuz", str(root / "boot" / "vmlinuz-6.1.0-test"),
                 str(root / "lib" / "modules"), "-o", str(out)]) == 2
