"""The x86-64 arch description: 4-level layout, direct-map page sizes, relocation reach.

Every constant cites docs/kernel-notes/mm-x86.md section 6 (Debian 6.1.192 / 6.12.117 trees).

Assumptions:
* KASLR build (Debian: CONFIG_RANDOMIZE_BASE=y), so KERNEL_IMAGE_SIZE is 1 GiB and the
  module area starts at 0xffffffffc0000000; CONFIG_DYNAMIC_MEMORY_LAYOUT randomisation of
  PAGE_OFFSET / VMALLOC_START is not modelled (the 4-level bases are used).
* The per-CPU area is zero-based (vmlinux.lds.S: PERCPU_VADDR(..., 0, :percpu)); the
  ``percpu`` range below is the bound that vmlinux.lds.S asserts for .data..percpu
  (``SIZEOF(.data..percpu) < CONFIG_PHYSICAL_START`` = 16 MiB), not its real size.
"""

from __future__ import annotations

from permalloc import ArchInfo, MachineSpec, VRange

# arch/x86/include/asm/page_64_types.h: __PAGE_OFFSET_BASE_L4
PAGE_OFFSET = 0xFFFF888000000000
# page_64_types.h: __START_KERNEL_map; KERNEL_IMAGE_SIZE = 1 GiB under CONFIG_RANDOMIZE_BASE
START_KERNEL_MAP = 0xFFFFFFFF80000000
KERNEL_IMAGE_SIZE = 1 << 30
# page_types.h: __START_KERNEL = __START_KERNEL_map + ALIGN(PHYSICAL_START 16M, PHYSICAL_ALIGN 2M)
START_KERNEL = 0xFFFFFFFF81000000
# pgtable_64_types.h (6.1 l.196-203): MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE
MODULES_VADDR = START_KERNEL_MAP + KERNEL_IMAGE_SIZE  # 0xffffffffc0000000
MODULES_END = 0xFFFFFFFFFF000000  # exclusive; MODULES_LEN = 1008 MiB
# pgtable_64_types.h: __VMALLOC_BASE_L4, VMALLOC_SIZE_TB_L4 = 32 (VMALLOC_END is inclusive)
VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = VMALLOC_START + (32 << 40)
# arch/x86/kernel/module.c:get_module_load_offset (6.1 l.46-60) and, in 6.12,
# arch/x86/mm/init.c:execmem_arch_setup: (random 0..1023 + 1) pages under KASLR
MODULE_LOAD_OFFSET_MAX_PAGES = 1024
# arch/x86/mm/tlb.c: tlb_single_page_flush_ceiling (6.1 l.983; 6.12 l.998)
TLB_SINGLE_PAGE_FLUSH_CEILING = 33
# arch/x86/kernel/vmlinux.lds.S (6.1 l.238-239): zero-based per-CPU area, asserted < 16 MiB
PERCPU_START = 0
PERCPU_BOUND = 16 << 20
# arch/x86/include/asm/text-patching.h: POKE_MAX_OPCODE_SIZE (6.1 l.26; 6.12 l.14)
POKE_MAX_OPCODE_SIZE = 5

S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1

# arch/x86/kernel/module.c:__apply_relocate_add (6.1 l.164-201) / __write_relocate_add (6.12 l.81):
# PC32/PLT32 store a signed 32-bit displacement (val - loc), PC64 and 64 eight bytes.
# 6.1 compiles the PC32 overflow check out (#if 0, l.190-193): an out-of-reach PC32 is
# silently truncated, so a layout must keep them in reach itself.
RELOC_REACH: dict[str, int | None] = {
    "R_X86_64_PC32": S32_MAX,
    "R_X86_64_PLT32": S32_MAX,
    "R_X86_64_PC64": None,
    "R_X86_64_64": None,
}
# R_X86_64_32S: "(s64)val != *(s32 *)loc -> overflow" (6.1 l.178-184): the value itself must
# be a sign-extended 32-bit number, i.e. lie in the top (or bottom) 2 GiB of the address space.
RELOC_ABSOLUTE32 = frozenset({"R_X86_64_32S"})
# R_X86_64_32 (zero-extended, l.171-177) can never hold a kernel address.
RELOC_ABSOLUTE32_UNSIGNED = frozenset({"R_X86_64_32"})

FEATURES = frozenset({
    "text_poke",          # alternative.c: __text_poke through poking_mm, local flush only
    "text_poke_bp",       # alternative.c: text_poke_bp_batch, int3 + up to 3 sync IPIs
    "huge_vmap",          # CONFIG_HAVE_ARCH_HUGE_VMALLOC (X86_64), arch_vmap_pmd_supported = PSE
    "gbpages",            # init.c:probe_page_size_mask: 1 GiB direct map with X86_FEATURE_GBPAGES
    "percpu_zero_based",  # vmlinux.lds.S: PERCPU_VADDR(INTERNODE_CACHE_BYTES, 0, :percpu)
    "unmapped-block-cache",  # RFC optimisation 1 (blockcache.py); names checked by Machine
    "live-cache",            # RFC optimisation 3 (livecache.py)
    "rox-cache",             # execmem ROX cache (roxcache.py): init.c:execmem_arch_setup, X86_64 + PSE
})


def describe(spec: MachineSpec) -> ArchInfo:
    return ArchInfo(
        name="x86",
        description="x86-64, 4-level paging: module area with KASLR offset, 1 GiB/2 MiB direct map, "
        "text_poke through a temporary mm, the RFC's four perm_alloc optimisations as policy switches, "
        "and the execmem ROX cache",
        machine="x86_64",  # arch/x86/Makefile: UTS_MACHINE := x86_64 (CONFIG_X86_64)
        page_offset=PAGE_OFFSET,
        ranges={
            "module": VRange(name="module", start=MODULES_VADDR, end=MODULES_END),
            "vmalloc": VRange(name="vmalloc", start=VMALLOC_START, end=VMALLOC_END),
            "kernel_image": VRange(name="kernel_image", start=START_KERNEL, end=START_KERNEL_MAP + KERNEL_IMAGE_SIZE),
            "percpu": VRange(name="percpu", start=PERCPU_START, end=PERCPU_START + PERCPU_BOUND),
        },
        module_load_offset_max_pages=MODULE_LOAD_OFFSET_MAX_PAGES,
        # The machine uses 1 GiB leaves only if the spec's CPU has them (MachineSpec.gbpages):
        # init.c:probe_page_size_mask needs direct_gbpages && X86_FEATURE_GBPAGES.
        direct_map_gbpages=True,
        huge_vmap=True,
        text_poke=True,
        cpu_features=frozenset({"la57", "invlpgb"}),
        page_table_levels=5 if "la57" in spec.cpu_features else 4,  # CONFIG_X86_5LEVEL=y: 5 when the CPU can
        reloc_reach=dict(RELOC_REACH),
        reloc_absolute32=RELOC_ABSOLUTE32,
        reloc_absolute32_unsigned=RELOC_ABSOLUTE32_UNSIGNED,
        features=FEATURES,
    )
