"""Regenerate vmlinux-reference.json: what the real symbol table says about the bundled kernels.

The bundled workloads' vmlinux facts come from the stripped image (``boot/vmlinuz-*``), where
markers and tables are derived from section headers and entry shapes. This script takes the
symbols of the *unstripped* build instead -- the System.map of the ``linux-image-*-dbg``
package -- and counts the tables between their real ``__start_*``/``__stop_*`` symbols, so
that test_vmlinux_reference.py can hold the bundled facts against them without the 1 GB
packages:

    apt-get download linux-image-6.1.0-57-amd64-dbg linux-image-6.12.118+deb12-amd64-dbg
    for REL in 6.1.0-57-amd64 6.12.118+deb12-amd64; do
        dpkg-deb --fsys-tarfile linux-image-$REL-dbg_*_amd64.deb \\
            | tar -xO ./usr/lib/debug/boot/System.map-$REL > System.map-$REL
        sh /path/to/linux-source/scripts/extract-vmlinux /path/to/image/boot/vmlinuz-$REL > vmlinux-$REL
    done
    python tests/plugins/module_loader/data/vmlinux_reference.py \\
        System.map-6.1.0-57-amd64 vmlinux-6.1.0-57-amd64 \\
        System.map-6.12.118+deb12-amd64 vmlinux-6.12.118+deb12-amd64

(the ``vmlinux-*`` files are what scripts/extract-vmlinux of the kernel source makes of the
package's vmlinuz). It rewrites vmlinux-reference.json next to itself.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

# The symbols the test compares (those that the workload's layout holds, and the table bounds).
SYMBOLS = (
    "_text", "_stext", "_etext", "__start_rodata", "__start___jump_table", "__stop___jump_table",
    "__start_static_call_sites", "__stop_static_call_sites", "__start_static_call_tramp_key",
    "__stop_static_call_tramp_key", "__end_rodata", "__end_rodata_aligned", "__end_rodata_hpage_align",
    "_sdata", "_edata", "__vvar_page", "__init_begin", "__per_cpu_load", "__per_cpu_start", "__per_cpu_end",
    "_sinittext", "_einittext", "__start_mcount_loc", "__stop_mcount_loc", "__init_end", "__smp_locks",
    "__smp_locks_end", "__bss_start", "__start_bss_decrypted", "__start_bss_decrypted_unused",
    "__end_bss_decrypted", "__bss_stop", "__end_of_kernel_reserve", "__brk_base", "__brk_limit", "_end",
    "__init_scratch_begin", "__init_scratch_end", "__alt_instructions", "__alt_instructions_end",
    "__parainstructions", "__parainstructions_end", "__retpoline_sites", "__retpoline_sites_end",
    "__return_sites", "__return_sites_end", "__call_sites", "__call_sites_end", "__ibt_endbr_seal",
    "__ibt_endbr_seal_end", "__start_orc_unwind_ip", "__stop_orc_unwind_ip",
)  # fmt: skip


def system_map(path: str) -> dict[str, int]:
    out = {}
    for line in open(path):
        addr, _, name = line.split()
        if name in SYMBOLS:
            out[name] = int(addr, 16)
    return out


class Image:
    def __init__(self, path: str) -> None:
        self.elf = ELFFile(open(path, "rb"))
        self.secs = [s for s in self.elf.iter_sections() if s["sh_type"] == "SHT_PROGBITS" and s["sh_addr"]]

    def read(self, addr: int, size: int) -> bytes:
        for s in self.secs:
            if s["sh_addr"] <= addr and addr + size <= s["sh_addr"] + s["sh_size"]:
                off = addr - s["sh_addr"]
                return s.data()[off : off + size]
        return bytes(size)  # NOBITS (.bss): zeros


def tables(sym: dict[str, int], img: Image) -> dict[str, int]:
    init = range(sym["_sinittext"], sym["_einittext"])
    text = range(sym["_text"], sym["_etext"])
    out: dict[str, int] = {}
    # kernel/trace/ftrace.c:ftrace_process_locs: records for non-NULL entries in kernel text
    start, stop = sym["__start_mcount_loc"], sym["__stop_mcount_loc"]
    entries = struct.unpack(f"<{(stop - start) // 8}Q", img.read(start, stop - start))
    sites = [a for a in entries if a and (a in text or a in init)]
    out["mcount_loc"] = len(sites)
    out["mcount_loc_init"] = sum(a in init for a in sites)
    # include/linux/jump_label.h: struct jump_entry {s32 code; s32 target; long key}
    start, stop = sym["__start___jump_table"], sym["__stop___jump_table"]
    keys, n_init = set(), 0
    for pos in range(start, stop, 16):
        code, _, key = struct.unpack("<iiq", img.read(pos, 16))
        n_init += (pos + code) in init
        keys.add(pos + 8 + (key & ~3))
    out["jump_entries"] = (stop - start) // 16
    out["jump_entries_init"] = n_init
    out["jump_keys"] = len(keys)
    # include/linux/static_call_types.h: struct static_call_site {s32 addr; s32 key}
    start, stop = sym["__start_static_call_sites"], sym["__stop_static_call_sites"]
    out["static_call_sites"] = (stop - start) // 8
    out["static_call_keys"] = len({pos + 4 + (struct.unpack("<ii", img.read(pos, 8))[1] & ~3)
                                   for pos in range(start, stop, 8)})
    out["static_call_tramp_keys"] = (sym["__stop_static_call_tramp_key"] - sym["__start_static_call_tramp_key"]) // 8
    return out


def main(argv: list[str]) -> int:
    ref = {}
    for map_path, vmlinux_path in zip(argv[::2], argv[1::2], strict=True):
        sym = system_map(map_path)
        img = Image(vmlinux_path)
        banner = img.read(sym["__start_rodata"], 1 << 22).split(b"Linux version ", 1)[1].split(b" ", 1)[0]
        ref[banner.decode()] = {"symbols": dict(sorted(sym.items())), "tables": tables(sym, img)}
    out = Path(__file__).with_name("vmlinux-reference.json")
    out.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
