"""arm64 modules: module_frob_arch_sections on what real Debian modules hold.

``data/plt-samples.json.gz`` keeps the section headers, symbol section indices and relocation
entries of six Debian arm64 modules (make_plt_samples.py); the modules themselves are not
shipped.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from permalloc.arches.arm64.elf import AARCH64, frob_sections
from permalloc.model.elfmachine import ElfSections

SAMPLES = json.loads(gzip.decompress((Path(__file__).parent / "data" / "plt-samples.json.gz").read_bytes()))
RELA_DT = np.dtype([("offset", "<u8"), ("info", "<u8"), ("addend", "<i8")])


def _sections(sample: dict) -> ElfSections:
    def rela(i: int) -> np.ndarray:
        rows = sample["relas"].get(str(i), [])
        return np.array([(0, info, addend) for info, addend in rows], dtype=RELA_DT)

    return ElfSections(
        names=list(sample["names"]), types=list(sample["types"]), flags=list(sample["flags"]),
        sizes=list(sample["sizes"]), aligns=list(sample["aligns"]), infos=list(sample["infos"]),
        symtab=np.array([(s,) for s in sample["shndx"]], dtype=[("shndx", "<u2")]), rela=rela,
    )


def _plts_one_by_one(sample: dict) -> tuple[int, int]:
    """count_plts written again, one relocation at a time."""
    core = init = 0
    for i, rows in sample["relas"].items():
        dst = sample["infos"][int(i)]
        if not sample["flags"][dst] & 0x4:  # SHF_EXECINSTR
            continue
        seen: set[tuple[int, int]] = set()
        n = 0
        for info, addend in rows:
            rtype, sym = info & 0xFFFFFFFF, info >> 32
            if rtype not in (282, 283) or sample["shndx"][sym] == dst:
                continue
            if addend or (rtype, sym) not in seen:
                n += 1
            seen.add((rtype, sym))
        if sample["names"][dst].startswith(".init"):
            init += n
        else:
            core += n
    return core, init


@pytest.mark.parametrize("sample", SAMPLES, ids=[f"{s['version']}/{s['module']}" for s in SAMPLES])
def test_module_plts_are_sized_as_module_frob_arch_sections_does(sample):
    sec = _sections(sample)
    frob_sections(sec, sample["version"])
    core, init = _plts_one_by_one(sample)
    assert core > 0 or sample["module"] == "crc-itu-t"  # crc-itu-t only computes: no calls out
    at = {name: i for i, name in enumerate(sec.names)}
    for name, n in ((".plt", core), (".init.plt", init)):
        i = at[name]
        assert (sec.sizes[i], sec.aligns[i], sec.flags[i], sec.types[i]) == ((n + 1) * 12, 64, 0x6, 8)
    trampoline = {"6.1": 24, "6.12": 12}[sample["version"]]  # NR_FTRACE_PLTS 2 (6.1) / 1 (6.12)
    assert sec.sizes[at[".text.ftrace_trampoline"]] == trampoline
    assert (".init.text.ftrace_trampoline" in at) == (sample["version"] == "6.12")


def test_a_module_without_its_plt_sections_is_refused():
    sample = next(s for s in SAMPLES if s["module"] == "crc-itu-t")
    sec = _sections(sample)
    sec.names = [".pxt" if n == ".plt" else n for n in sec.names]
    with pytest.raises(ValueError, match="module PLT section.s. missing"):
        frob_sections(sec, sample["version"])


def test_relocations_get_their_aarch64_names():
    sample = next(s for s in SAMPLES if s["module"] == "fat" and s["version"] == "6.12")
    names = {AARCH64.reloc_name(info & 0xFFFFFFFF) for rows in sample["relas"].values() for info, _ in rows}
    assert {"R_AARCH64_CALL26", "R_AARCH64_ADR_PREL_PG_HI21", "R_AARCH64_ABS64"} <= names
