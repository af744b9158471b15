"""Fuzz target for module ingestion: structured mutations of a real module's bytes.

A mutation rewrites what the ELF parser trusts: an ELF header field, a field of one
section header, of one symbol or of one relocation entry (the offsets of an ELF64
little-endian object, elf(5)), or truncates the file or flips bytes; one to three at a time.
Values come from the edges that break parsers (0, 1, the file size, all ones, 2**31 ...) or
anywhere in the field's width. The target holds ingestion to its contract: every input gives
a module record or an :class:`~permalloc.errors.IngestError` of one line naming the file.

hypothesis draws the mutations (``tests/plugins/module_loader/test_fuzz.py`` runs a small
budget on the objects the tests build with gcc, ``benchmarks/fuzz.py`` a long one on real
Debian modules).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile
from hypothesis import strategies as st

from permalloc.errors import IngestError
from permalloc.plugins.module_loader.ingest import ingest_file

# (offset, width) of the fields, elf(5): Elf64_Ehdr, Elf64_Shdr, Elf64_Sym, Elf64_Rela
EHDR = {"ei_class": (4, 1), "ei_data": (5, 1), "e_type": (0x10, 2), "e_machine": (0x12, 2),
        "e_shoff": (0x28, 8), "e_shentsize": (0x3A, 2), "e_shnum": (0x3C, 2), "e_shstrndx": (0x3E, 2)}
SHDR = {"sh_name": (0, 4), "sh_type": (4, 4), "sh_flags": (8, 8), "sh_offset": (0x18, 8), "sh_size": (0x20, 8),
        "sh_link": (0x28, 4), "sh_info": (0x2C, 4), "sh_addralign": (0x30, 8), "sh_entsize": (0x38, 8)}
SYM = {"st_name": (0, 4), "st_info": (4, 1), "st_shndx": (6, 2), "st_value": (8, 8), "st_size": (16, 8)}
RELA = {"r_offset": (0, 8), "r_info": (8, 8), "r_addend": (16, 8)}
ENTRY = 24  # sizeof(Elf64_Sym) == sizeof(Elf64_Rela)


@dataclass(frozen=True)
class Seed:
    """A real module and where its tables are."""

    raw: bytes
    shoff: int
    shnum: int
    shentsize: int
    symtab: tuple[int, int]  # (offset, entries)
    relas: tuple[tuple[int, int], ...]

    @classmethod
    def read(cls, path: str | Path) -> Seed:
        raw = Path(path).read_bytes()
        elf = ELFFile(io.BytesIO(raw))
        symtab, relas = (0, 0), []
        for section in elf.iter_sections():
            span = (section["sh_offset"], section["sh_size"] // ENTRY)
            if section["sh_type"] == "SHT_SYMTAB":
                symtab = span
            elif section["sh_type"] == "SHT_RELA" and span[1]:
                relas.append(span)
        return cls(raw, elf["e_shoff"], elf["e_shnum"], elf["e_shentsize"], symtab, tuple(relas))


def _value(width: int, size: int) -> st.SearchStrategy[int]:
    top = (1 << (8 * width)) - 1
    edges = [v & top for v in (0, 1, 2, 7, 8, 64, 4096, size - 1, size, size + 1, 1 << 31, top, top - 1)]
    return st.one_of(st.sampled_from(edges), st.integers(0, top))


def _field(draw: st.DrawFn, seed: Seed) -> tuple[int, int]:
    """(file offset, width) of one field of the header, a section header, a symbol or a relocation."""
    table = draw(st.sampled_from(["ehdr", "shdr", "sym", "rela"] if seed.relas else ["ehdr", "shdr", "sym"]))
    if table == "ehdr":
        return EHDR[draw(st.sampled_from(sorted(EHDR)))]
    if table == "shdr":
        offset, width = SHDR[draw(st.sampled_from(sorted(SHDR)))]
        return seed.shoff + draw(st.integers(0, seed.shnum - 1)) * seed.shentsize + offset, width
    base, count = seed.symtab if table == "sym" else draw(st.sampled_from(seed.relas))
    fields = SYM if table == "sym" else RELA
    offset, width = fields[draw(st.sampled_from(sorted(fields)))]
    return base + draw(st.integers(0, max(count - 1, 0))) * ENTRY + offset, width


@st.composite
def mutants(draw: st.DrawFn, seed: Seed) -> bytes:
    """The seed's bytes with one to three structured mutations."""
    data = bytearray(seed.raw)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "field", "field", "truncate", "flip"]))
        if kind == "truncate":
            del data[draw(st.integers(0, max(len(data) - 1, 0))):]
        elif kind == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            offset, width = _field(draw, seed)
            if offset + width <= len(data):
                data[offset:offset + width] = draw(_value(width, len(seed.raw))).to_bytes(width, "little")
    return bytes(data)


def check_ingest(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` and ingest it: ``"ok"`` or ``"refused"``. Anything else (another
    exception, a message that is not one line naming the file) is an AssertionError."""
    path.write_bytes(data)
    try:
        ingest_file(path)
    except IngestError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message and exc.reason, message
        return "refused"
    return "ok"
