"""Regenerate plt-samples.json.gz from real Debian arm64 modules (run once; the .ko are not shipped).

    python tests/arches/arm64/data/make_plt_samples.py 6.1=.../fat.ko 6.12=.../fat.ko.xz ...

Keeps what module_frob_arch_sections reads of each module: the section headers, the symbols'
st_shndx and, per SHT_RELA section, (r_info, r_addend) of every entry.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import sys
from pathlib import Path

from elftools.elf.elffile import ELFFile

SH_TYPES = {"SHT_NULL": 0, "SHT_PROGBITS": 1, "SHT_SYMTAB": 2, "SHT_STRTAB": 3, "SHT_RELA": 4, "SHT_NOBITS": 8}


def sample(path: Path) -> dict:
    data = path.read_bytes()
    elf = ELFFile(io.BytesIO(lzma.decompress(data) if path.suffix == ".xz" else data))
    secs = list(elf.iter_sections())
    symtab = elf.get_section_by_name(".symtab")
    shndx = [s["st_shndx"] if isinstance(s["st_shndx"], int) else 0 for s in symtab.iter_symbols()]
    relas = {str(i): [[r["r_info"], r["r_addend"]] for r in sec.iter_relocations()]
             for i, sec in enumerate(secs) if sec["sh_type"] == "SHT_RELA"}
    return {
        "module": path.name.split(".")[0],
        "names": [s.name for s in secs],
        "types": [SH_TYPES.get(s["sh_type"], 99) for s in secs],
        "flags": [s["sh_flags"] for s in secs],
        "sizes": [s["sh_size"] for s in secs],
        "aligns": [s["sh_addralign"] for s in secs],
        "infos": [s["sh_info"] for s in secs],
        "shndx": shndx,
        "relas": relas,
    }


def main(argv: list[str]) -> int:
    out = [{"version": v, **sample(Path(p))} for v, _, p in (a.partition("=") for a in argv)]
    with gzip.GzipFile(Path(__file__).parent / "plt-samples.json.gz", "wb", mtime=0) as fh:
        fh.write(json.dumps(out, separators=(",", ":")).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
