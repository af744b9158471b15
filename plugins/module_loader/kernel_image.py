"""Reading a kernel image: vmlinuz -> vmlinux ELF -> :class:`~.vmlinux.VmlinuxInfo`.

* **extraction** as scripts/extract-vmlinux does it: find a compression magic (gzip, xz,
  bzip2, lzma, lzop, lz4, zstd, in that order), decompress from each place it occurs until
  the result is an ELF file; an uncompressed ELF is taken as it is;
* **sections and segments** with pyelftools;
* **layout markers** from the section headers, by the rules of arch/x86/kernel/vmlinux.lds.S
  (:func:`_x86_layout`): Debian's image is stripped, its ``boot/System.map`` a placeholder;
* **tables**: counted from their output section, or found by the shape of their entries when
  the linker script puts them inside a bigger section (:func:`_x86_tables`);
* the **kernel release** from linux_banner, which picks the struct sizes (:mod:`.rules`).

Only x86-64 has rules (the linker script and the instruction encodings are arch code):
the image of another machine gets a one-line error. (Debian's arm64 ``boot/vmlinuz`` is
not even an ELF file but the raw arm64 ``Image``; its vmlinux is in the -dbg package.)
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import stat
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from permalloc.errors import IngestError

from .elfmachines import Machines, elf_machines
from .rules import rules_for, table_entry_sizes
from .vmlinux import LAYOUT_MARKERS, VmlinuxInfo, VmlinuxSection, VmlinuxSegment, VmlinuxTables

__all__ = ["VmlinuxError", "extract_vmlinux", "read_vmlinux", "vmlinux_info"]

PAGE_SIZE = 4096  # arch/x86/include/asm/page_types.h: 1 << PAGE_SHIFT (12)
HPAGE_SIZE = 2 << 20  # asm/page_types.h: HPAGE_SHIFT = PMD_SHIFT (21, asm/pgtable_64_types.h)
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
_MASK64 = (1 << 64) - 1


class VmlinuxError(IngestError):
    """A kernel image that cannot be read. ``str()`` is one line: ``FILE: reason``."""


# --------------------------------------------------------------------------- extraction

# A vmlinux is tens of MB (Debian 6.12 amd64: 66 MB); what inflates past this is not one.
MAX_VMLINUX_SIZE = 1 << 30


def _gunzip(data: memoryview) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_VMLINUX_SIZE)


def _unxz(data: memoryview) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data, MAX_VMLINUX_SIZE)


def _unlzma(data: memoryview) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data, MAX_VMLINUX_SIZE)


def _bunzip2(data: memoryview) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, MAX_VMLINUX_SIZE)


def _unzstd(data: memoryview) -> bytes:
    import zstandard

    out = bytearray()  # one frame (what follows it is the image's, not the stream's), bounded
    for chunk in zstandard.ZstdDecompressor().read_to_iter(data, write_size=1 << 20):
        out += chunk
        if len(out) >= MAX_VMLINUX_SIZE:
            break
    return bytes(out)


#: scripts/extract-vmlinux: try_decompress, in its order. None: python has no decompressor.
_COMPRESSIONS: tuple[tuple[str, bytes, Callable[[memoryview], bytes] | None], ...] = (
    ("gzip", b"\x1f\x8b\x08", _gunzip),
    ("xz", b"\xfd7zXZ\x00", _unxz),
    ("bzip2", b"BZh", _bunzip2),
    ("lzma", b"\x5d\x00\x00\x00", _unlzma),
    ("lzop", b"\x89\x4c\x5a", None),
    ("lz4", b"\x02!L\x18", None),
    ("zstd", b"(\xb5/\xfd", _unzstd),
)


def _is_elf(data: bytes) -> bool:
    """check_vmlinux (``readelf -h`` accepts it): an ELF header of a known class and byte order."""
    return len(data) >= 64 and data[:4] == b"\x7fELF" and data[4] in (1, 2) and data[5] in (1, 2)


def extract_vmlinux(image: bytes) -> bytes:
    """The ELF inside a kernel image (bzImage/vmlinuz), as scripts/extract-vmlinux finds it.

    Raises ValueError (one line) when there is none."""
    unsupported = []
    view = memoryview(image)  # no copy of the image per place tried
    for name, magic, decompress in _COMPRESSIONS:
        pos = image.find(magic)
        while pos >= 0:
            if decompress is None:
                unsupported.append(name)
                break
            try:
                out = decompress(view[pos:])
            except Exception:  # not a stream start after all (lzma.LZMAError, zlib.error, ...)
                out = b""
            if _is_elf(out):
                return out
            pos = image.find(magic, pos + 1)
    if _is_elf(image):  # "Finally check for uncompressed images or objects"
        return image
    hint = f" (it has {', '.join(unsupported)} data, which python cannot decompress)" if unsupported else ""
    raise ValueError(f"cannot find vmlinux in the kernel image{hint}")


# --------------------------------------------------------------------------- reading

_FLAG_CHARS = ((SHF_WRITE, "W"), (SHF_ALLOC, "A"), (SHF_EXECINSTR, "X"), (0x10, "M"), (0x20, "S"))


def _flags(value: int) -> str:
    return "".join(ch for bit, ch in _FLAG_CHARS if value & bit)


class _Image:
    """The bytes of the kernel mapping (_text ..), built from the PROGBITS sections."""

    def __init__(self, data: bytes, sections: list[tuple[Any, VmlinuxSection]], base: int, end: int) -> None:
        self.base = base
        self.mem = np.zeros(end - base, dtype=np.uint8)
        for shdr, sec in sections:
            if sec.nobits or not base <= sec.addr < end or not sec.size:
                continue
            start = sec.addr - base
            size = min(sec.size, end - sec.addr)
            self.mem[start : start + size] = np.frombuffer(data, np.uint8, count=size, offset=shdr["sh_offset"])

    def u8(self, off: np.ndarray, k: int = 0) -> np.ndarray:
        """The byte at ``off + k`` for each offset (-1 outside the image)."""
        pos = off + k
        out = np.full(off.shape, -1, dtype=np.int64)
        inside = (pos >= 0) & (pos < self.mem.size)
        out[inside] = self.mem[pos[inside]]
        return out

    def rel32_dest(self, off: np.ndarray, ilen: int) -> np.ndarray:
        """Destination of a rel32 branch of ``ilen`` bytes at each offset (displacement last)."""
        disp = np.zeros(off.shape, dtype=np.int64)
        for k in range(4):
            disp |= self.u8(off, ilen - 4 + k).clip(0) << (8 * k)
        disp = np.where(disp >= 1 << 31, disp - (1 << 32), disp)
        return off + ilen + disp

    def array(self, start: int, end: int, dtype: np.dtype) -> np.ndarray:
        n = (end - start) // dtype.itemsize
        return np.frombuffer(self.mem[start : start + n * dtype.itemsize].tobytes(), dtype)


def _ranges(sections: list[VmlinuxSection], base: int, want: Callable[[VmlinuxSection], bool]) -> list[tuple[int, int]]:
    return [(s.addr - base, s.addr - base + s.size) for s in sections if want(s) and s.addr >= base]


def _within(off: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros(off.shape, dtype=bool)
    for start, end in ranges:
        mask |= (off >= start) & (off < end)
    return mask


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True, longest first."""
    idx = np.flatnonzero(mask)
    if not idx.size:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]] + 1
    order = np.argsort(starts - ends, kind="stable")
    return [(int(starts[i]), int(ends[i])) for i in order]


def _align(value: int, align: int) -> int:
    return -(-value // align) * align


def _x86_layout(by_name: Mapping[str, VmlinuxSection], sections: list[VmlinuxSection]) -> dict[str, int | None]:
    """The markers of arch/x86/kernel/vmlinux.lds.S (6.1 and 6.12: same rules), from the sections."""

    def sec(name: str) -> VmlinuxSection:
        found = by_name.get(name)
        if found is None:
            raise ValueError(f"no {name} section: not an x86-64 vmlinux linked by arch/x86/kernel/vmlinux.lds.S")
        return found

    def end(s: VmlinuxSection) -> int:
        return s.addr + s.size

    text, rodata, data, vvar = sec(".text"), sec(".rodata"), sec(".data"), sec(".vvar")
    init_text, smp_locks, bss, brk = sec(".init.text"), sec(".smp_locks"), sec(".bss"), sec(".brk")
    out: dict[str, int | None] = {}
    # .text : { _text = .; _stext = .; ... } then "_etext = .;"
    out["_text"] = out["_stext"] = text.addr
    out["_etext"] = end(text)
    # RO_DATA(PAGE_SIZE) (include/asm-generic/vmlinux.lds.h): .rodata { __start_rodata = .; ...}
    # ... ". = ALIGN((align)); __end_rodata = .;" after its last output section (the
    # sections from .rodata up to .data); X86_ALIGN_RODATA_END (X86_64): ALIGN(HPAGE_SIZE),
    # __end_rodata_hpage_align = __end_rodata_aligned = .
    out["__start_rodata"] = rodata.addr
    ro_end = max(end(s) for s in sections if rodata.addr <= s.addr < data.addr)
    out["__end_rodata"] = _align(ro_end, PAGE_SIZE)
    out["__end_rodata_aligned"] = out["__end_rodata_hpage_align"] = _align(out["__end_rodata"], HPAGE_SIZE)
    # .data : { _sdata = .; ... _edata = .; }
    out["_sdata"] = data.addr
    out["_edata"] = end(data)
    # ". = ALIGN(PAGE_SIZE); __vvar_page = .;" .vvar : {...}; ". = ALIGN(__vvar_page +
    # PAGE_SIZE, PAGE_SIZE);" then ". = ALIGN(PAGE_SIZE); .init.begin : { __init_begin = .; }"
    out["__vvar_page"] = vvar.addr
    out["__init_begin"] = _align(vvar.addr + PAGE_SIZE, PAGE_SIZE)
    # PERCPU_VADDR(INTERNODE_CACHE_BYTES, 0, :percpu) (X86_64 && SMP): a zero-based .data..percpu
    # loaded at __init_begin (__per_cpu_load = .)
    percpu = by_name.get(".data..percpu")
    if percpu is not None:
        out["__per_cpu_load"] = out["__init_begin"]
        out["__per_cpu_start"] = percpu.addr
        out["__per_cpu_end"] = end(percpu)
    # INIT_TEXT_SECTION: .init.text : { _sinittext = .; INIT_TEXT _einittext = .; }
    out["_sinittext"] = init_text.addr
    out["_einittext"] = end(init_text)
    # ". = ALIGN(PAGE_SIZE); .init.end : { __init_end = .; }" after the last init output
    # section (.exit.data, and 6.12's RUNTIME_CONST sections); ".smp_locks" follows, page aligned
    init_last = max(end(s) for s in sections if out["__init_begin"] <= s.addr < smp_locks.addr)
    out["__init_end"] = _align(init_last, PAGE_SIZE)
    # .smp_locks : { __smp_locks = .; *(.smp_locks) . = ALIGN(PAGE_SIZE); __smp_locks_end = .; }
    out["__smp_locks"] = smp_locks.addr
    out["__smp_locks_end"] = end(smp_locks)
    # .bss : { __bss_start = .; ... BSS_DECRYPTED . = ALIGN(PAGE_SIZE); __bss_stop = .; }
    out["__bss_start"] = bss.addr
    out["__bss_stop"] = end(bss)
    scratch = by_name.get(".init.scratch")
    if scratch is not None:
        # .init.scratch exists only with CONFIG_AMD_MEM_ENCRYPT, which also defines
        # BSS_DECRYPTED: "... . = ALIGN(PMD_SIZE); __end_bss_decrypted = .;" right before
        # ". = ALIGN(PAGE_SIZE); __bss_stop = .;", so the two are equal.
        out["__end_bss_decrypted"] = out["__bss_stop"]
        out["__start_bss_decrypted"] = None
        out["__start_bss_decrypted_unused"] = None
        out["__init_scratch_begin"] = scratch.addr
        out["__init_scratch_end"] = end(scratch)
    # "__end_of_kernel_reserve = .;" right after .bss
    out["__end_of_kernel_reserve"] = out["__bss_stop"]
    # .brk : { __brk_base = .; . += 64 * 1024; *(.bss..brk) __brk_limit = .; }
    out["__brk_base"] = brk.addr
    out["__brk_limit"] = end(brk)
    # ". = ALIGN(PAGE_SIZE); _end = .;"
    out["_end"] = _align(end(brk), PAGE_SIZE)
    return out


_JUMP_ENTRY = np.dtype([("code", "<i4"), ("target", "<i4"), ("key", "<i8")])
_STATIC_CALL_SITE = np.dtype([("addr", "<i4"), ("key", "<i4")])
_U64 = np.dtype("<u8")
_S32 = np.dtype("<i4")


def _x86_tables(
    img: _Image, sections: list[VmlinuxSection], by_name: Mapping[str, VmlinuxSection], layout: dict[str, int | None],
    entry_sizes: Mapping[str, int],
) -> tuple[dict[str, int], list[tuple[int, int, bool]], dict[str, int | None]]:
    """Counts of the patch tables (x86-64), the per-key jump table data and the table bounds found."""
    base = img.base
    text = [(layout["_text"] - base, layout["_etext"] - base)]  # type: ignore[operator]
    init_text = [(layout["_sinittext"] - base, layout["_einittext"] - base)]  # type: ignore[operator]
    executable = _ranges(sections, base, lambda s: "X" in s.flags)
    data = _ranges(sections, base, lambda s: "X" not in s.flags)
    counts: dict[str, int] = {}
    bounds: dict[str, int | None] = {}

    # Tables with an output section of their own: walked as sh_size / sizeof(entry)
    # (alternative.c: apply_alternatives, apply_paravirt, apply_retpolines, ...;
    # unwind_orc.c: orc_ip_table). .smp_locks is padded to a page inside its section and
    # alternatives_smp_lock skips zero entries ("if (!*poff ...) continue").
    for name, field in ((".altinstructions", "altinstructions"), (".parainstructions", "parainstructions"),
                        (".retpoline_sites", "retpoline_sites"), (".return_sites", "return_sites"),
                        (".call_sites", "call_sites"), (".ibt_endbr_seal", "ibt_endbr_seal"),
                        (".cfi_sites", "cfi_sites"), (".orc_unwind_ip", "orc_unwind_ip")):
        sec = by_name.get(name)
        if sec is not None and name in entry_sizes:
            counts[field] = sec.size // entry_sizes[name]
    locks = by_name.get(".smp_locks")
    if locks is not None:
        start = locks.addr - base
        counts["smp_locks"] = int(np.count_nonzero(img.array(start, start + locks.size, _S32)))

    # __mcount_loc: MCOUNT_REC() in INIT_DATA (include/asm-generic/vmlinux.lds.h) puts it in
    # .init.data, 8-aligned. Each entry is the address of a "call __fentry__" (e8 rel32,
    # gcc -mfentry -mrecord-mcount; ftrace_init_nop checks those bytes); the table is the
    # longest run of 8-byte words that point into kernel text at a call to the most common
    # such target (__fentry__). ftrace_process_locs skips NULL entries (6.12's sorttable
    # leaves some at the start) and entries outside kernel text, so those are not counted.
    idata = by_name.get(".init.data")
    if idata is not None:
        start = _align(idata.addr - base, 8)
        words = img.array(start, idata.addr - base + idata.size, _U64)
        off = (words - np.uint64(base & _MASK64)).astype(np.int64)
        in_text = _within(off, text + init_text)
        call = in_text & (img.u8(off) == 0xE8)
        dest = np.where(call, img.rel32_dest(off, 5), -1)
        if call.any():
            targets, hits = np.unique(dest[call], return_counts=True)
            fentry = targets[hits.argmax()]
            runs = _runs(call & (dest == fentry))
            first, last = runs[0]
            sites = off[first:last]
            counts["mcount_loc"] = int(sites.size)
            counts["mcount_loc_init"] = int(_within(sites, init_text).sum())
            bounds["__stop_mcount_loc"] = base + start + 8 * last

    # __jump_table: JUMP_TABLE_DATA in RO_AFTER_INIT_DATA, inside .rodata, 8-aligned
    # struct jump_entry {s32 code; s32 target; long key} with fields relative to themselves
    # (include/linux/jump_label.h: jump_entry_code, jump_entry_target, jump_entry_key, the
    # key's low 2 bits being flags). Code and target are in executable sections; the key is
    # kernel data; the code is what arch_jump_entry_size decodes (arch/x86/kernel/
    # jump_label.c): NOP2 (66 90), JMP8 (eb), NOP5 (0f 1f 44 00 00) or JMP32 (e9).
    rodata = by_name[".rodata"]
    ro_start, ro_end = rodata.addr - base, rodata.addr - base + rodata.size
    best: tuple[int, int, int] | None = None
    for phase in (0, 8):
        entries = img.array(_align(ro_start, 8) + phase, ro_end, _JUMP_ENTRY)
        pos = _align(ro_start, 8) + phase + 16 * np.arange(entries.size, dtype=np.int64)
        code = pos + entries["code"]
        b0, b1 = img.u8(code), img.u8(code, 1)
        site = ((b0 == 0x66) & (b1 == 0x90)) | (b0 == 0xEB) | ((b0 == 0x0F) & (b1 == 0x1F)) | (b0 == 0xE9)
        key = pos + 8 + (entries["key"] & ~3)
        good = site & _within(code, executable) & _within(pos + 4 + entries["target"], executable) & _within(key, data)
        runs = _runs(good)
        if runs and (best is None or runs[0][1] - runs[0][0] > best[2] - best[1]):
            best = (phase, *runs[0])
    keys_rows: list[tuple[int, int, bool]] = []
    if best is not None:
        phase, first, last = best
        start = _align(ro_start, 8) + phase + 16 * first
        entries = img.array(start, start + 16 * (last - first), _JUMP_ENTRY)
        pos = start + 16 * np.arange(entries.size, dtype=np.int64)
        code = pos + entries["code"]
        key = pos + 8 + (entries["key"] & ~3)
        init = _within(code, init_text)
        b0, b1 = img.u8(code), img.u8(code, 1)
        counts["jump_entries"] = int(entries.size)
        counts["jump_entries_init"] = int(init.sum())
        counts["jump_entries_2byte"] = int((((b0 == 0x66) & (b1 == 0x90)) | (b0 == 0xEB)).sum())
        uniq, inverse = np.unique(key, return_inverse=True)
        runtime = np.bincount(inverse, weights=~init, minlength=uniq.size).astype(int)
        at_init = np.bincount(inverse, weights=init, minlength=uniq.size).astype(int)
        # struct static_key {atomic_t enabled; union {unsigned long type; ...}}: bit 0 of type
        # is JUMP_TYPE_TRUE, set by STATIC_KEY_INIT_TRUE (include/linux/jump_label.h)
        true = (img.u8(uniq, 8) & 1) == 1
        keys_rows = [(int(r), int(i), bool(t)) for r, i, t in zip(runtime, at_init, true, strict=True)]
        counts["jump_keys"] = int(uniq.size)
        counts["jump_keys_true"] = int(true.sum())
        end = start + 16 * entries.size
        bounds["__start___jump_table"] = base + start
        bounds["__stop___jump_table"] = base + end

        # STATIC_CALL_DATA follows (". = ALIGN(8); __start_static_call_sites = .;"):
        # struct static_call_site {s32 addr; s32 key}. A site is a CALL/JMP rel32 (or a Jcc
        # rel32 tail call) to a static call trampoline, which arch/x86/kernel/static_call.c
        # recognises by its signature: tramp_ud = {0x0f, 0xb9, 0xcc} right after the 5-byte
        # instruction (__static_call_validate). Then .static_call_tramp_key: {s32 tramp; s32
        # key}, tramp pointing at such a trampoline.
        def trampoline(off: np.ndarray) -> np.ndarray:
            return (img.u8(off, 5) == 0x0F) & (img.u8(off, 6) == 0xB9) & (img.u8(off, 7) == 0xCC)

        sc_start = _align(end, 8)
        sites = img.array(sc_start, ro_end, _STATIC_CALL_SITE)
        spos = sc_start + 8 * np.arange(sites.size, dtype=np.int64)
        insn = spos + sites["addr"]
        b0, b1 = img.u8(insn), img.u8(insn, 1)
        jcc = (b0 == 0x0F) & (b1 >= 0x80) & (b1 <= 0x8F)
        dest = np.where((b0 == 0xE8) | (b0 == 0xE9), img.rel32_dest(insn, 5), np.where(jcc, img.rel32_dest(insn, 6), -1))
        is_site = _within(insn, executable) & trampoline(dest)
        n_sites = int(np.argmin(is_site)) if not is_site.all() else int(is_site.size)
        skey = spos[:n_sites] + 4 + (sites["key"][:n_sites] & ~3)
        counts["static_call_sites"] = n_sites
        counts["static_call_sites_init"] = int(_within(insn[:n_sites], init_text).sum())
        counts["static_call_keys"] = int(np.unique(skey).size)
        tramp = insn[n_sites:]
        is_tramp_key = _within(tramp, executable) & trampoline(tramp)
        n_tramp = int(np.argmin(is_tramp_key)) if not is_tramp_key.all() else int(is_tramp_key.size)
        counts["static_call_tramp_keys"] = n_tramp
        bounds["__start_static_call_sites"] = base + sc_start
        bounds["__stop_static_call_sites"] = base + sc_start + 8 * n_sites
        bounds["__stop_static_call_tramp_key"] = base + sc_start + 8 * (n_sites + n_tramp)
    return counts, keys_rows, bounds


def _banner_release(img: _Image, rodata: VmlinuxSection) -> str:
    """UTS_RELEASE from linux_banner, "Linux version <release> (..." (init/version-timestamp.c)."""
    start = rodata.addr - img.base
    blob = img.mem[start : start + rodata.size].tobytes()
    at = blob.find(b"Linux version ")
    if at < 0:
        raise ValueError("no linux_banner (\"Linux version ...\") in .rodata")
    stop = blob.find(b" ", at + len(b"Linux version "))
    return blob[at + len(b"Linux version ") : stop].decode("ascii", "replace")


#: The machines whose vmlinux layout and tables this module can read.
READABLE = ("x86_64",)


def vmlinux_info(elf: bytes, machines: Machines | None = None) -> VmlinuxInfo:
    """Read an uncompressed vmlinux ELF of one of ``machines`` (default: those the installed
    arch plugins contribute). ValueError (one line) on what it cannot read."""
    if machines is None:
        machines = elf_machines()
    try:
        f = ELFFile(io.BytesIO(elf))
        header = f.header
        arch = machines.get(header["e_machine"])
        if arch is None or arch.name not in READABLE:
            raise ValueError(f"vmlinux of machine {header['e_machine']}: ingest reads the vmlinux of "
                             f"{', '.join(READABLE)} only")
        if header["e_type"] != "ET_EXEC":
            raise ValueError(f"not an executable ({header['e_type']}): vmlinux is ET_EXEC")
        shdrs = []
        for shdr in f.iter_sections():
            if shdr["sh_flags"] & SHF_ALLOC:
                shdrs.append((shdr, VmlinuxSection(
                    name=shdr.name, addr=shdr["sh_addr"], size=shdr["sh_size"], flags=_flags(shdr["sh_flags"]),
                    align=shdr["sh_addralign"], nobits=shdr["sh_type"] == "SHT_NOBITS",
                )))
        segments = [
            VmlinuxSegment(vaddr=seg["p_vaddr"], paddr=seg["p_paddr"], memsz=seg["p_memsz"],
                           flags="".join(ch for bit, ch in ((4, "R"), (2, "W"), (1, "X")) if seg["p_flags"] & bit),
                           align=seg["p_align"])
            for seg in f.iter_segments() if seg["p_type"] == "PT_LOAD"
        ]
    except ELFError as exc:
        raise ValueError(f"bad ELF: {exc}") from None
    sections = [sec for _, sec in shdrs]
    for shdr, sec in shdrs:
        if not sec.nobits and shdr["sh_offset"] + sec.size > len(elf):
            raise ValueError(f"section {sec.name} runs past the end of the file: truncated?")
    by_name = {sec.name: sec for sec in sections}
    layout = _x86_layout(by_name, sections)
    img = _Image(elf, shdrs, layout["_text"], layout["_end"])  # type: ignore[arg-type]
    release = _banner_release(img, by_name[".rodata"])
    rules = rules_for(release)
    counts, jump_keys, bounds = _x86_tables(img, sections, by_name, layout, table_entry_sizes(rules, arch))
    layout.update(bounds)
    return VmlinuxInfo(
        machine=arch.name, kernel_release=release, sections=sections, segments=segments,
        layout={name: layout[name] for name in LAYOUT_MARKERS if name in layout},
        tables=VmlinuxTables(**counts), jump_keys=jump_keys,
    )


def read_vmlinux(path: str | os.PathLike[str], machines: Machines | None = None) -> VmlinuxInfo:
    """Read a kernel image file (vmlinuz or vmlinux) of one of ``machines``. Raises
    :class:`VmlinuxError` naming it."""
    try:
        st = os.stat(path)  # before open: opening a FIFO would block
        if not stat.S_ISREG(st.st_mode):
            raise VmlinuxError(path, "not a regular file (only regular files are read)")
        if st.st_size > MAX_VMLINUX_SIZE:
            raise VmlinuxError(path, f"more than {MAX_VMLINUX_SIZE >> 20} MiB: not a kernel image")
        with open(path, "rb") as fh:
            image = fh.read()
    except OSError as exc:
        raise VmlinuxError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        return vmlinux_info(extract_vmlinux(image), machines)
    except (ValueError, KeyError) as exc:
        raise VmlinuxError(path, str(exc).strip("'\"")) from None
    except Exception as exc:  # a corrupt image must be named, never a traceback
        raise VmlinuxError(path, f"malformed kernel image ({type(exc).__name__}: {exc})") from None
