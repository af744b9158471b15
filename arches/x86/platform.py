"""x86 platforms: the firmware memory map (e820) a machine boots with, and where the boot
loader and KASLR put the initrd and the kernel.

``q35`` is a qemu 7.2 ``-machine q35`` guest with SeaBIOS (the calibration machine):
hw/i386/pc_q35.c puts at most 2 GiB of RAM below 4 GiB when there are 2.75 GiB or more
(``lowmem = 0x80000000``; else up to 0xb0000000) and the rest at 4 GiB; SeaBIOS reports
[0, 0x9fc00) and [1 MiB, lowmem - hightables) as RAM and reserves its high tables at the top
of low RAM (src/malloc.c: malloc_preinit reserves BUILD_MAX_HIGHTABLE, malloc_prepboot gives
back what the ACPI/SMBIOS tables of the machine did not use: 128 KiB stay on q35). NUMA nodes
(``-numa node``) split RAM into equal parts in address order.

``server-2s`` is a representative two-socket server with UEFI firmware: RAM below the 2 GiB
MMIO window (32-bit PCI BARs, LAPIC/IOAPIC, flash) minus firmware runtime/ACPI areas just
below it, RAM remapped above 4 GiB, one node per socket.

Linux then drops page 0 and the legacy BIOS area from RAM (arch/x86/kernel/setup.c:
trim_bios_range) and page-trims the ranges (e820.c: e820__memblock_setup).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from permalloc import PermallocError
from permalloc.model.memblock import MemRange

MiB, GiB = 1 << 20, 1 << 30
PAGE_SIZE = 4096
BIOS_BEGIN, BIOS_END = 0xA0000, 0x100000  # arch/x86/include/asm/e820/types.h
LOAD_PHYSICAL_ADDR = 16 * MiB  # CONFIG_PHYSICAL_START (Debian), arch/x86/include/asm/page_types.h
PHYSICAL_ALIGN = 2 * MiB  # CONFIG_PHYSICAL_ALIGN (Debian)
# arch/x86/realmode/init.c: reserve_real_mode -> memblock_reserve(0, SZ_1M), always (it also
# covers CONFIG_X86_RESERVE_LOW's 64 KiB)
REAL_MODE_RESERVE = 1 << 20


@dataclass(frozen=True)
class Firmware:
    """What the platform hands over: the e820 map, the initrd's place, the kernel's place."""

    name: str
    e820: list[MemRange]
    initrd: tuple[int, int] | None  # (start, size)


def _nodes(ranges: list[tuple[int, int]], nodes: int) -> list[MemRange]:
    """Split RAM ranges into ``nodes`` equal parts in address order."""
    total = sum(e - s for s, e in ranges)
    share = total // nodes
    out: list[MemRange] = []
    node, left = 0, share
    for start, end in ranges:
        while start < end:
            take = end - start if node == nodes - 1 else min(end - start, left)
            out.append(MemRange(start, start + take, "ram", node))
            start += take
            left -= take
            if left == 0 and node < nodes - 1:
                node, left = node + 1, share
    return out


def q35(memory: int, nodes: int, initrd: int) -> Firmware:
    """qemu q35 + SeaBIOS."""
    lowmem = 0x80000000 if memory >= 0xB0000000 else 0xB0000000  # pc_q35.c: pc_q35_init
    below = min(memory, lowmem)
    above = memory - below
    hightables = 128 << 10  # SeaBIOS high tables kept on q35 (see the module docstring)
    ram = [(0, 0x9FC00), (0x100000, below - hightables)]
    if above:
        ram.append((4 * GiB, 4 * GiB + above))
    e820 = _nodes(ram, nodes) + [
        MemRange(0x9FC00, 0xA0000, "reserved"), MemRange(0xF0000, 0x100000, "reserved"),
        MemRange(below - hightables, below, "reserved"),
        MemRange(0xB0000000, 0xC0000000, "reserved"),  # q35 MMCONFIG (PCIe ECAM)
        MemRange(0xFED1C000, 0xFED20000, "reserved"), MemRange(0xFEFFC000, 0xFF000000, "reserved"),
        MemRange(0xFFFC0000, 0x100000000, "reserved"),
    ]
    return Firmware("q35", sorted(e820, key=lambda r: r.start), _initrd_q35(below - hightables, initrd))


def _initrd_q35(ram_top_below_4g: int, size: int) -> tuple[int, int] | None:
    """hw/i386/x86.c: x86_load_linux puts the initrd at the top of RAM below 4 GiB, below the
    ACPI data qemu keeps there, page-aligned: ``(initrd_max - initrd_size) & ~4095``."""
    if not size:
        return None
    return (ram_top_below_4g - size) & ~(PAGE_SIZE - 1), size


def server_2s(memory: int, nodes: int, initrd: int) -> Firmware:
    """A two-socket UEFI server: 2 GiB below the MMIO window, firmware areas under it."""
    low = min(memory, 2 * GiB)
    firmware = 64 * MiB  # UEFI runtime services, ACPI tables and NVS below the MMIO window
    ram = [(0x1000, 0x9D000), (0x100000, low - firmware)]
    if memory > low:
        ram.append((4 * GiB, 4 * GiB + memory - low))
    e820 = _nodes(ram, max(nodes, 1)) + [
        MemRange(0, 0x1000, "reserved"), MemRange(0x9D000, 0x100000, "reserved"),
        MemRange(low - firmware, low, "reserved"), MemRange(0xFE000000, 0x100000000, "reserved"),
    ]
    # Boot loaders (GRUB's linux command) put the initrd as high as allowed below 4 GiB
    return Firmware("server-2s", sorted(e820, key=lambda r: r.start), _initrd_q35(low - firmware, initrd))


PLATFORMS = {"q35": q35, "server-2s": server_2s}
DEFAULT_PLATFORM = "q35"


def firmware(name: str | None, memory: int, nodes: int, initrd: int) -> Firmware:
    builder = PLATFORMS.get(name or DEFAULT_PLATFORM)
    if builder is None:
        raise PermallocError(f"unknown x86 platform {name!r}; known: {', '.join(sorted(PLATFORMS))}")
    return builder(memory, nodes, initrd)


def memblock_memory(e820: list[MemRange]) -> list[MemRange]:
    """e820__memblock_setup after trim_bios_range: RAM without page 0 and 640K-1M, page-trimmed."""
    out = []
    for r in e820:
        if r.kind != "ram":
            continue
        start, end = max(r.start, PAGE_SIZE), r.end
        pieces = [(start, min(end, BIOS_BEGIN)), (max(start, BIOS_END), end)]
        for s, e in pieces:
            s, e = -(-s // PAGE_SIZE) * PAGE_SIZE, e // PAGE_SIZE * PAGE_SIZE
            if s < e:
                out.append(MemRange(s, e, "ram", r.node))
    return out


def kaslr_phys(ram: list[MemRange], image_size: int, avoid: list[tuple[int, int]], seed: int) -> int:
    """arch/x86/boot/compressed/kaslr.c: choose_random_location -> find_random_phys_addr: a
    uniformly random CONFIG_PHYSICAL_ALIGN slot at or above LOAD_PHYSICAL_ADDR in RAM where
    the image fits without touching mem_avoid (the initrd)."""
    slots: list[tuple[int, int]] = []  # (first slot address, slot count) per region
    total = 0
    for r in ram:
        pieces = [(max(r.start, LOAD_PHYSICAL_ADDR), r.end)]
        for a_start, a_end in avoid:
            pieces = [p for s, e in pieces for p in ((s, min(e, a_start)), (max(s, a_end), e)) if p[0] < p[1]]
        for s, e in pieces:
            first = -(-s // PHYSICAL_ALIGN) * PHYSICAL_ALIGN
            if first + image_size <= e:
                count = (e - image_size - first) // PHYSICAL_ALIGN + 1
                slots.append((first, count))
                total += count
    if not total:
        raise PermallocError(f"x86: no room for a {image_size}-byte kernel image in RAM")
    pick = random.Random(seed ^ 0x4B41534C).randrange(total)  # kaslr_get_random_long
    for first, count in slots:
        if pick < count:
            return first + pick * PHYSICAL_ALIGN
        pick -= count
    raise AssertionError("unreachable")
