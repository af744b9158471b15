"""The kernel image (vmlinux) a machine runs: its sections and the layout markers that boot
code uses (``_text``, ``__init_begin`` ...), as ``permalloc ingest`` reads them from a real
package's vmlinuz. The image is mapped at its link address (an arch's "kernel_image"
range) and occupies physical memory from where the boot loader or KASLR put it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ImageSection(BaseModel):
    """One SHF_ALLOC section of vmlinux."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    addr: int
    size: int = Field(ge=0)
    flags: str = Field(description="ELF flags as readelf -S prints them, e.g. 'AX', 'WA'")
    align: int = Field(0, ge=0)


class KernelImage(BaseModel):
    """What the machine model needs of vmlinux."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    release: str = Field(description="kernel release, e.g. 6.1.0-56-amd64")
    machine: str = Field(description="ELF machine: x86_64, aarch64")
    sections: tuple[ImageSection, ...] = ()
    layout: dict[str, int] = Field(
        default_factory=dict,
        description="linker-script markers by symbol name (_text, _etext, __init_begin, ...), as addresses",
    )

    def marker(self, name: str) -> int:
        try:
            return self.layout[name]
        except KeyError:
            raise KeyError(f"kernel image {self.release}: no layout marker {name!r}") from None

    @property
    def start(self) -> int:
        return self.marker("_text")

    @property
    def end(self) -> int:
        return self.marker("_end")

    @property
    def size(self) -> int:
        return self.end - self.start
