"""arm64 modules: ingest follows module-plts.c on real Debian modules (tests/arches/arm64/data)."""

from __future__ import annotations

import io
import lzma
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from permalloc.arches.arm64.elf import AARCH64
from permalloc.plugins.module_loader.ingest import IngestError, ingest_file

DATA = Path(__file__).parent / "data"
MACHINES = {"EM_AARCH64": AARCH64}
MODULES = sorted((p.parent.name, p) for p in DATA.glob("*/*.ko*"))
RELEASE = {"6.1": "6.1.0-57-arm64", "6.12": "6.12.118+deb12-arm64"}


def _elf(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.suffix == ".xz" else data


def _plts_by_pyelftools(path: Path) -> tuple[int, int]:
    """count_plts written again, one relocation at a time over pyelftools' view of the file."""
    elf = ELFFile(io.BytesIO(_elf(path)))
    symtab = elf.get_section_by_name(".symtab")
    core = init = 0
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_RELA":
            continue
        dst = sec["sh_info"]
        target = elf.get_section(dst)
        if not target["sh_flags"] & 0x4:  # SHF_EXECINSTR
            continue
        seen: set[tuple[int, int]] = set()
        n = 0
        for rel in sec.iter_relocations():
            rtype, sym = rel["r_info_type"], rel["r_info_sym"]
            if rtype not in (282, 283) or symtab.get_symbol(sym)["st_shndx"] == dst:
                continue
            if rel["r_addend"] or (rtype, sym) not in seen:
                n += 1
            seen.add((rtype, sym))
        if target.name.startswith(".init"):
            init += n
        else:
            core += n
    return core, init


@pytest.mark.parametrize(("version", "path"), MODULES, ids=[f"{v}/{p.name}" for v, p in MODULES])
def test_module_plts_are_sized_as_module_frob_arch_sections_does(version, path):
    record = ingest_file(path, RELEASE[version], MACHINES)
    sections = {name: (size, align, flags, cls) for name, size, align, flags, cls in record.sections}
    core, init = _plts_by_pyelftools(path)
    assert core > 0 or path.name.startswith("crc-itu-t")  # crc-itu-t only computes: no calls out
    assert sections[".plt"] == ((core + 1) * 12, 64, "AX", 0)  # class 0: text
    init_text = sections[".init.text"][3] if ".init.text" in sections else sections[".init.plt"][3]
    assert sections[".init.plt"][:3] == ((init + 1) * 12, 64, "AX") and sections[".init.plt"][3] == init_text
    trampoline = {"6.1": 24, "6.12": 12}[version]  # NR_FTRACE_PLTS 2 (6.1) / 1 (6.12)
    assert sections[".text.ftrace_trampoline"] == (trampoline, 4, "AX", 0)
    assert (".init.text.ftrace_trampoline" in sections) == (version == "6.12")
    assert record.machine == "aarch64"
    if path.name.startswith("fat"):  # ftrace sites and alternatives, as arm64 records them
        assert record.tables["__patchable_function_entries"] > 100 and record.tables[".altinstructions"] > 0


def test_a_module_without_its_plt_sections_is_refused(tmp_path):
    data = (DATA / "6.1" / "crc-itu-t.ko").read_bytes().replace(b".plt\0", b".pxt\0")
    path = tmp_path / "crc-itu-t.ko"
    path.write_bytes(data)
    with pytest.raises(IngestError, match="module_frob_arch_sections: module PLT section.s. missing"):
        ingest_file(path, RELEASE["6.1"], MACHINES)


def test_relocations_get_their_aarch64_names():
    record = ingest_file(DATA / "6.12" / "fat.ko.xz", RELEASE["6.12"], MACHINES)
    names = {AARCH64.reloc_name(rtype) for rtype, *_ in record.relocs}
    assert {"R_AARCH64_CALL26", "R_AARCH64_ADR_PREL_PG_HI21", "R_AARCH64_ABS64"} <= names
