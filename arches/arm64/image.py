"""The arm64 kernel ``Image`` header: what the layout needs of the kernel image.

Debian's arm64 ``boot/vmlinuz-*`` is the raw ``Image`` (not an ELF file: its section headers
are in the -dbg package's vmlinux), whose 64-byte header (Documentation/arch/arm64/booting.rst,
arch/arm64/kernel/head.S + image.h) says how big the loaded kernel is: ``image_size`` at
offset 16 is ``_end - _text`` (image.h: ``le64sym(_kernel_size_le)``), the bytes KASLR
places and module_alloc_base / module_init_limits measure. ``data/images.json`` keeps it for
the bundled kernels, read from their packages by ``python -m permalloc.arches.arm64.image``.
"""

from __future__ import annotations

import functools
import json
import struct
import sys
from pathlib import Path

from permalloc.atomicfile import write_text

__all__ = ["image_size", "read_header"]

ARM64_IMAGE_MAGIC = b"ARM\x64"  # asm/image.h: ARM64_IMAGE_MAGIC "ARM\x64", at offset 56
DATA = Path(__file__).parent / "data" / "images.json"


def read_header(path: str | Path) -> dict[str, int]:
    """The header fields of an arm64 Image file; ValueError (one line) if it is not one."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if len(head) < 64 or head[56:60] != ARM64_IMAGE_MAGIC:
        raise ValueError(f"{path}: not an arm64 Image (no ARM\\x64 magic at offset 56)")
    text_offset, size, flags = struct.unpack_from("<QQQ", head, 8)
    return {"text_offset": text_offset, "image_size": size, "flags": flags}


@functools.cache
def _bundled() -> dict[str, dict[str, int]]:
    return json.loads(DATA.read_text())


def image_size(version: str) -> int:
    """``_end - _text`` of the bundled Debian arm64 kernel of ``version`` ("6.1", "6.12")."""
    return _bundled()[version]["image_size"]


def main(argv: list[str]) -> int:  # pragma: no cover - regeneration helper
    """``python -m permalloc.arches.arm64.image VERSION=VMLINUZ ...`` writes data/images.json."""
    out = {}
    for arg in argv:
        version, _, path = arg.partition("=")
        out[version] = {"vmlinuz": Path(path).name, **read_header(path)}
    write_text(DATA, json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
