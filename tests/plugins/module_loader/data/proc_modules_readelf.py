"""Regenerate proc-modules-readelf.json: /proc/modules sizes of real modules, from readelf alone.

For each module this reads ``readelf -W -S -s`` (after ``xz -dc`` for a .ko.xz) and applies
the loader's rules to that text, without any permalloc code, to get the size a Live module
shows in /proc/modules:

* 6.1 (kernel/module/procfs.c:m_show): core_layout.size. kernel/module/main.c:layout_sections
  puts core text, rodata, ro_after_init and data one after the other, each section at
  ALIGN(size, sh_addralign), with PAGE_ALIGN after text, rodata and ro_after_init and at the
  end; kernel/module/kallsyms.c:layout_symtab then appends the core symbols at ALIGN(size, 8)
  and page-aligns again.
* 6.12 (procfs.c:module_total_size): the PAGE_ALIGNed sizes of MOD_TEXT, MOD_DATA, MOD_RODATA
  and MOD_RO_AFTER_INIT (the init types are gone once Live), the core symbols appended to
  MOD_DATA at ALIGN(size, 8).

Sections: SHF_ALLOC, minus .modinfo, __versions and .data..percpu; .data..ro_after_init and
__jump_table get SHF_RO_AFTER_INIT; the first of the masks {AX}, {A, not W}, {RO_AFTER_INIT},
{WA} that matches; init when the name starts with .init. Core symbols (CONFIG_KALLSYMS_ALL):
symbol 0 and every named symbol defined in .data..percpu or in a core section; bytes = 24 n +
names + n.

    python tests/plugins/module_loader/data/proc_modules_readelf.py \\
        /path/to/image-6.1.0-57-amd64/lib/modules/6.1.0-57-amd64 \\
        /path/to/image-6.12.118+deb12-amd64/lib/modules/6.12.118+deb12-amd64

(the extracted linux-image packages of docs/workload.md). The sample: every 200th module in
name order, plus xfs and ext4. It rewrites proc-modules-readelf.json next to itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = 4096


def page_align(value: int) -> int:
    return -(-value // PAGE) * PAGE


def align(value: int, to: int) -> int:
    to = to or 1
    return -(-value // to) * to


def readelf(path: Path) -> str:
    if path.name.endswith(".xz"):
        data = subprocess.run(["xz", "-dc", str(path)], check=True, capture_output=True).stdout
        plain = Path(os.environ.get("TMPDIR", "/tmp")) / path.name[: -len(".xz")]
        plain.write_bytes(data)
        path = plain
    return subprocess.run(["readelf", "-W", "-S", "-s", str(path)], check=True, capture_output=True, text=True).stdout


SECTION = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+"
                     r"([A-Za-z]*)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
SYMBOL = re.compile(r"^\s*(\d+):\s+[0-9a-f]+\s+(?:0x)?[0-9a-f]+\s+(\S+)\s+\S+\s+\S+\s+(\S+)\s*(\S*)\s*$")
COUNTS = re.compile(r"^There are (\d+) section headers|^Symbol table '\.symtab' contains (\d+) entries")


def size_of(path: Path, kernel: str) -> int:
    sections, symbols, in_symtab = [], [], False
    text = readelf(path)
    # readelf's own counts of section headers and symbols: every line must have been parsed
    declared = [int(m[1] or m[2]) for m in (COUNTS.match(line) for line in text.splitlines()) if m]
    for line in text.splitlines():
        if line.startswith("Symbol table '.symtab'"):
            in_symtab = True
            continue
        match = SECTION.match(line)
        if match and not in_symtab:
            sections.append({"index": int(match[1]), "name": match[2], "size": int(match[6], 16),
                             "flags": match[8], "align": int(match[11])})
            continue
        match = SYMBOL.match(line)
        if match and in_symtab:
            symbols.append({"ndx": match[3], "name": match[4], "type": match[2]})
    assert declared == [len(sections), len(symbols)], (path, declared, len(sections), len(symbols))
    kept = []
    for s in sections:
        if "A" not in s["flags"] or s["name"] in (".modinfo", "__versions", ".data..percpu"):
            continue
        ro_after_init = s["name"] in (".data..ro_after_init", "__jump_table")
        if "X" in s["flags"]:
            cls = "text"
        elif "W" not in s["flags"]:
            cls = "rodata"
        elif ro_after_init:
            cls = "ro_after_init"
        else:
            cls = "data"
        init = s["name"].startswith(".init")
        kept.append({**s, "class": cls, "init": init})
    core_index = {s["index"] for s in kept if not s["init"]}
    percpu = next((s["index"] for s in sections if s["name"] == ".data..percpu"), None)
    ndst, names = 1, 1  # symbol 0
    for sym in symbols[1:]:
        if sym["type"] == "SECTION" or not sym["name"] or not sym["ndx"].isdigit():
            continue
        if int(sym["ndx"]) in core_index or int(sym["ndx"]) == percpu:
            ndst += 1
            names += len(sym["name"]) + 1
    kallsyms = 24 * ndst + names + ndst

    def place(cls: str, start: int) -> int:
        for s in kept:
            if s["class"] == cls and not s["init"]:
                start = align(start, s["align"]) + s["size"]
        return start

    if kernel == "6.1":
        size = page_align(place("text", 0))
        size = page_align(place("rodata", size))
        size = page_align(place("ro_after_init", size))
        size = page_align(place("data", size))
        return page_align(align(size, 8) + kallsyms)
    total = 0
    for cls in ("text", "rodata", "ro_after_init", "data"):
        size = place(cls, 0)
        if cls == "data":
            size = align(size, 8) + kallsyms
        total += page_align(size)
    return total


def main(argv: list[str]) -> int:
    out = {}
    for moddir in argv:
        release = Path(moddir).name
        kernel = "6.12" if release.startswith("6.12.") else "6.1"
        files = sorted(Path(moddir).rglob("*.ko*"), key=lambda p: p.name)
        names = {p.name.split(".ko")[0].replace("-", "_"): p for p in files}
        sample = sorted(set(list(names)[::200]) | {"xfs", "ext4"})
        out[release] = {name: size_of(names[name], kernel) for name in sample}
    path = Path(__file__).with_name("proc-modules-readelf.json")
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
