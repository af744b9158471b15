"""The arm64 arch description (Debian's arm64 kernels: 4 KiB pages, 48-bit VA), per kernel version.

Address map (arch/arm64/include/asm/memory.h, pgtable.h; VA_BITS = VA_BITS_MIN = 48):
PAGE_OFFSET = _PAGE_OFFSET(48), MODULES_VADDR = _PAGE_END(48), MODULES_VSIZE 128 MiB in 6.1
and 2 GiB in 6.12 (the module region grew in v6.5), KIMAGE_VADDR = VMALLOC_START =
MODULES_END, and VMALLOC_END below the vmemmap (6.1: VMEMMAP_START - 256 MiB; 6.12:
VMEMMAP_START - 8 MiB, with VMEMMAP_END = -1 GiB).

KASLR (CONFIG_RANDOMIZE_BASE=y, CONFIG_RANDOMIZE_MODULE_REGION_FULL=y in Debian), seeded from
the spec's seed:

* the kernel (pi/kaslr_early.c: kaslr_early_init) at KIMAGE_VADDR + offset, offset =
  BIT(VA_BITS_MIN - 3) + (seed & GENMASK(VA_BITS_MIN - 3, 0)) in 6.1 and range / 2 +
  range * seed / 2^64 with range = (VMALLOC_END - KIMAGE_VADDR) / 2 in 6.12, 2 MiB aligned
  (MIN_KIMG_ALIGN); its size is the Image's image_size (:mod:`.image`);
* the modules: 6.1 (kernel/kaslr.c: kaslr_init) a 128 MiB window at module_alloc_base =
  max(_end - 2 GiB, MODULES_VADDR) + (2 GiB - kernel size) * rand21 / 2^21, page aligned,
  where module_alloc allocates first (its 2 GiB PLT fallback, used only when the window is
  full, is not modelled; the window is clipped at _text where it would overlap the kernel);
  6.12 (mm/init.c: module_init_limits) module_plt_base = random_bounding_box(2 GiB, _text,
  _end): REGION_FULL gives no direct window, every module allocation is in that 2 GiB.

BPF JIT images are vmalloc'ed in both versions (6.1 net/bpf_jit_comp.c: bpf_jit_alloc_exec ->
vmalloc; 6.12 execmem EXECMEM_BPF = [VMALLOC_START, VMALLOC_END), mm/init.c).

Relocation reach (kernel/module.c: apply_relocate_add / reloc_insn_imm, reloc_data): the
branch immediates (CALL26/JUMP26 +-128 MiB) go through a module PLT when out of reach
(module_emit_plt_entry); the rest must reach.
"""

from __future__ import annotations

import random

from permalloc import ArchInfo, MachineSpec, VRange
from permalloc.plugin.policy import PolicySpec

from .image import image_size

_MASK = (1 << 64) - 1
SZ_2M, SZ_128M, SZ_2G = 2 << 20, 128 << 20, 2 << 30
PAGE_SIZE = 4096
VA_BITS = VA_BITS_MIN = 48  # Debian: CONFIG_ARM64_VA_BITS_48
PAGE_OFFSET = -(1 << VA_BITS) & _MASK  # memory.h: _PAGE_OFFSET(va) = -(1 << va)
MODULES_VADDR = -(1 << (VA_BITS_MIN - 1)) & _MASK  # _PAGE_END(va) = -(1 << (va - 1))
MODULES_VSIZE = {"6.1": SZ_128M, "6.12": SZ_2G}
STRUCT_PAGE_SIZE = 64  # sizeof(struct page); 6.1 STRUCT_PAGE_MAX_SHIFT = 6


def vmalloc_end(version: str) -> int:
    """pgtable.h VMALLOC_END of ``version``."""
    if version == "6.1":
        vmemmap_start = -(1 << (VA_BITS - (12 - 6))) & _MASK  # -(1 << (VA_BITS - VMEMMAP_SHIFT))
        return vmemmap_start - (256 << 20)
    vmemmap_size = ((MODULES_VADDR - PAGE_OFFSET) >> 12) * STRUCT_PAGE_SIZE  # VMEMMAP_RANGE >> PAGE_SHIFT
    vmemmap_start = (-(1 << 30) & _MASK) - vmemmap_size  # VMEMMAP_END = -SZ_1G
    return vmemmap_start - (8 << 20)


S26 = (1 << 27) - 1  # reloc_insn_imm(..., 2, 26): a signed 28-bit byte offset
RELOC_REACH: dict[str, int | None] = {
    "R_AARCH64_CALL26": S26,
    "R_AARCH64_JUMP26": S26,
    "R_AARCH64_PREL32": (1 << 31) - 1,  # reloc_data(RELOC_OP_PREL, ..., 32)
    "R_AARCH64_PREL64": None,
    "R_AARCH64_ABS64": None,
    "R_AARCH64_ADR_PREL_PG_HI21": (1 << 32) - 1,  # 21-bit page immediate: +-4 GiB
    "R_AARCH64_ADR_PREL_PG_HI21_NC": None,  # _NC: no overflow check
    "R_AARCH64_ADR_PREL_LO21": (1 << 20) - 1,
    "R_AARCH64_LD_PREL_LO19": (1 << 20) - 1,  # 19-bit word offset: +-1 MiB
    "R_AARCH64_CONDBR19": (1 << 20) - 1,
    "R_AARCH64_TSTBR14": (1 << 15) - 1,  # 14-bit word offset: +-32 KiB
}
RELOC_PLT = frozenset({"R_AARCH64_CALL26", "R_AARCH64_JUMP26"})  # module-plts.c: module_emit_plt_entry


def _version(policy: PolicySpec | None) -> str:
    return "6.12" if policy is not None and policy.kernel == "6.12" else "6.1"


def kernel_placement(spec: MachineSpec, version: str) -> tuple[int, int]:
    """[_text, _end) of the kernel after KASLR, seeded from the spec."""
    rng = random.Random(f"arm64-kaslr-{spec.seed}")
    seed = rng.getrandbits(64)
    kimage_vaddr = MODULES_VADDR + MODULES_VSIZE[version]
    if version == "6.1":
        offset = (1 << (VA_BITS_MIN - 3)) + (seed & ((1 << (VA_BITS_MIN - 2)) - 1))
    else:
        span = (vmalloc_end(version) - kimage_vaddr) // 2
        offset = span // 2 + ((span * seed) >> 64)
    text = kimage_vaddr + offset // SZ_2M * SZ_2M
    return text, text + image_size(version)


def module_window(spec: MachineSpec, version: str, text: int, end: int) -> tuple[int, int]:
    """Where module_alloc / execmem_alloc(EXECMEM_DEFAULT) places modules."""
    rng = random.Random(f"arm64-modules-{spec.seed}")
    size = end - text
    if version == "6.1":
        base = max(end - SZ_2G, MODULES_VADDR) + (((SZ_2G - size) * rng.getrandbits(21)) >> 21)
        base &= ~(PAGE_SIZE - 1)
        return base, min(base + SZ_128M, text) if base < text else base + SZ_128M
    # random_bounding_box(SZ_2G, _text, _end): get_random_u32_inclusive(0, max_pgoff)
    pgoff = rng.randint(0, (SZ_2G - size) // PAGE_SIZE)
    base = text - pgoff * PAGE_SIZE
    return base, base + SZ_2G


def describe(spec: MachineSpec, policy: PolicySpec | None) -> ArchInfo:
    version = _version(policy)
    text, end = kernel_placement(spec, version)
    mod_start, mod_end = module_window(spec, version, text, end)
    vmalloc_start = MODULES_VADDR + MODULES_VSIZE[version]
    return ArchInfo(
        name="arm64",
        description=f"arm64 (Linux {version}), 48-bit VA: broadcast TLBI, rodata=full linear map at page "
        "granularity, text patched through the fixmap, module PLTs, BPF JIT images in vmalloc",
        machine="aarch64",  # arch/arm64/Makefile: UTS_MACHINE := aarch64
        page_offset=PAGE_OFFSET,
        ranges={
            "module": VRange(name="module", start=mod_start, end=mod_end),
            "vmalloc": VRange(name="vmalloc", start=vmalloc_start, end=vmalloc_end(version)),
            "kernel_image": VRange(name="kernel_image", start=text, end=end),
        },
        bpf_range="vmalloc",
        reloc_reach=dict(RELOC_REACH),
        reloc_plt=RELOC_PLT,
    )
