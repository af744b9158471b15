"""Ingest under hostile input: bounded decompression, regular files only, every fault one
file's, section layouts checked against the file and the cap; outputs written atomically."""

from __future__ import annotations

import dataclasses
import gzip
import json
import lzma
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from permalloc import IngestError, PermallocError
from permalloc.plugins.module_loader.ingest import SHDR_DT, ingest_file, ingest_paths


def _module(result, name):
    return next(m for m in result.workload.modules if m.name == name)


def _run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_ingest_error_is_a_permalloc_error():
    err = IngestError("x.ko", "bad\nthing")
    assert isinstance(err, PermallocError) and str(err) == "x.ko: bad thing"


def test_a_zstd_bomb_is_refused_within_the_default_cap_memory(tmp_path):
    import zstandard

    bomb = tmp_path / "bomb.ko.zst"
    with open(bomb, "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh, size=3 << 29) as w:
        zeros = bytes(64 << 20)
        for _ in range(24):  # 1.5 GiB of zeros in about 49 KB
            w.write(zeros)
    assert bomb.stat().st_size < 64 << 10
    out = tmp_path / "w.json"
    proc = _run_python(f"""
        import sys
        from permalloc.cli import main
        rc = main(["ingest", {str(bomb)!r}, "-o", {str(out)!r}, "--no-vmlinuz", "-q"])
        # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's RSS over exec)
        print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
        sys.exit(rc)
    """)
    assert proc.returncode == 1, proc.stderr
    assert f"{bomb}: inflates to more than 256 MiB (--max-module-size)" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    peak_kb = int(proc.stdout.split()[-1])
    assert peak_kb < 400 << 10  # stopped at the cap, not after 1.5 GiB


def test_an_xz_bomb_stops_at_a_smaller_cap(tmp_path):
    bomb = tmp_path / "bomb.ko.xz"
    bomb.write_bytes(lzma.compress(bytes(16 << 20)))
    with pytest.raises(IngestError, match=r"inflates to more than 4 MiB"):
        ingest_file(bomb, max_size=4 << 20)
    plain = tmp_path / "big.ko"
    plain.write_bytes(bytes(5 << 20))
    with pytest.raises(IngestError, match=r"more than 4 MiB \(--max-module-size\) on disk"):
        ingest_file(plain, max_size=4 << 20)


def test_multi_frame_zstd_and_multi_member_gzip_and_xz_are_read_whole(objects, tmp_path):
    import zstandard

    raw = objects.foo.read_bytes()
    half = len(raw) // 2
    want = ingest_file(objects.foo)
    zst = zstandard.ZstdCompressor()
    files = {
        "foo.ko.zst": zst.compress(raw[:half]) + zst.compress(raw[half:]),
        "foo.ko.gz": gzip.compress(raw[:half]) + gzip.compress(raw[half:]),
        "foo.ko.xz": lzma.compress(raw[:half]) + lzma.compress(raw[half:]),
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        got = ingest_file(path)
        assert dataclasses.replace(got, stored_size=0, path="") == \
            dataclasses.replace(want, stored_size=0, path=""), name


def test_a_fifo_in_a_directory_is_skipped_and_named_it_is_refused(objects, tmp_path):
    d = tmp_path / "mods"
    d.mkdir()
    (d / "foo.ko").write_bytes(objects.foo.read_bytes())
    os.mkfifo(d / "x.ko")
    out = tmp_path / "w.json"
    # in a subprocess with a timeout: opening the FIFO would block for ever
    proc = _run_python(f"""
        import sys
        from permalloc.cli import main
        sys.exit(main(["ingest", {str(d)!r}, "-o", {str(out)!r}, "--no-vmlinuz", "--jobs", "1"]))
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {d / 'x.ko'}: a FIFO, not a module file: skipped" in proc.stderr
    assert json.loads(out.read_text().splitlines()[0])["modules"] == 1
    proc = _run_python(f"""
        import sys
        from permalloc.cli import main
        sys.exit(main(["ingest", {str(d / 'x.ko')!r}, "/dev/zero", "-o", {str(out)!r}, "--no-vmlinuz", "-q"]))
    """, timeout=60)
    assert proc.returncode == 1
    assert f"{d / 'x.ko'}: a FIFO, not a module file (only regular files are read)" in proc.stderr
    assert "/dev/zero: a character device, not a module file" in proc.stderr
    assert json.loads(out.read_text().splitlines()[0])["modules"] == 1  # the old output is kept


def _patched(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and raw.count(old) == 1
    return raw.replace(old, new)


def test_a_blank_vermagic_loses_only_its_own_module(objects, tmp_path):
    d = tmp_path / "mods"
    d.mkdir()
    raw = objects.foo.read_bytes()
    old = b"vermagic=6.1.0-test SMP mod_unload"
    (d / "a_blank.ko").write_bytes(_patched(raw, old, b"vermagic=" + b" " * (len(old) - 9)))
    (d / "b_good.ko").write_bytes(_patched(raw, b"name=foo\0", b"name=bar\0"))
    res = ingest_paths([d], jobs=1, no_vmlinuz=True)
    assert list(res.workload.modules) == ["bar"]
    assert [str(e) for e in res.errors] == [
        f"{d / 'a_blank.ko'}: no vermagic in .modinfo (check_modinfo refuses such a module) and no kernel "
        "release given (--kernel-release)"]


def _with_section(raw: bytes, name: str, **fields: int) -> bytes:
    """``raw`` with fields of section ``name``'s header replaced."""
    data = bytearray(raw)
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    shnum = int.from_bytes(raw[0x3C:0x3E], "little")
    shstrndx = int.from_bytes(raw[0x3E:0x40], "little")
    sh = np.frombuffer(raw, SHDR_DT, count=shnum, offset=shoff).copy()
    strtab = raw[int(sh[shstrndx]["offset"]):]
    index = next(i for i in range(shnum) if strtab[int(sh[i]["name"]):].split(b"\0", 1)[0] == name.encode())
    for key, value in fields.items():
        sh[index][key] = value
    data[shoff:shoff + shnum * SHDR_DT.itemsize] = sh.tobytes()
    return bytes(data)


@pytest.mark.parametrize(("section", "fields", "message"), [
    (".text", {"addralign": 24}, r"section \.text: sh_addralign 0x18 is not a power of two"),
    (".init.text", {"addralign": 1 << 40}, r"makes the module's layout more than 256 MiB \(--max-module-size\)"),
])
def test_section_alignments_are_checked(objects, tmp_path, section, fields, message):
    path = tmp_path / "mod_a.ko"
    path.write_bytes(_with_section(objects.mod_a.read_bytes(), section, **fields))
    with pytest.raises(IngestError, match=message):
        ingest_file(path)


def test_a_bss_bigger_than_a_module_can_be_is_refused(objects, tmp_path):
    raw = objects.mod_a.read_bytes()
    path = tmp_path / "mod_a.ko"
    path.write_bytes(_with_section(raw, ".bss", size=1 << 40))  # NOBITS: no file bytes needed
    with pytest.raises(IngestError, match=r"section \.bss \(size 0x10000000000.*more than 256 MiB"):
        ingest_file(path)


def test_ingest_refuses_an_output_it_cannot_write_before_reading(objects, tmp_path, capsys):
    from permalloc.cli import main

    assert main(["ingest", str(objects.foo), "-o", str(tmp_path / "no" / "w.json"), "-q", "--no-vmlinuz"]) == 1
    err = capsys.readouterr().err
    assert err == f"permalloc: error: {tmp_path / 'no' / 'w.json'}: cannot write: no such directory {tmp_path / 'no'}\n"
