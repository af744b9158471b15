"""The kernel image's high mapping and what x86 boot does to it (6.1 and 6.12 alike).

head_64.S maps the image at __START_KERNEL_map with 2 MiB leaves, all RWX
(level2_kernel_pgt, __PAGE_KERNEL_LARGE_EXEC); cleanup_highmap (init_64.c) keeps
[_text, roundup(_brk_end, PMD_SIZE)). That mapping is an alias of the image's pages besides
the direct map: set_memory_* on either updates the other (set_memory.c: cpa_process_alias),
and its splits count in DirectMap4k (split_page_count, virt_addr_valid holds there).

Boot then runs, in this order (arch/x86/kernel/alternative.c, arch/x86/mm/init.c,
init_64.c, mem_encrypt_amd.c):

* alternative_instructions: free_init_pages("SMP alternatives", __smp_locks, __smp_locks_end);
* free_initmem: mem_encrypt_free_decrypted_mem (free_init_pages of the unused part of
  .bss..decrypted), free_kernel_image_pages("unused kernel image (initmem)", __init_begin,
  __init_end);
* mark_rodata_ro: set_memory_ro(_text, __end_rodata_hpage_align), set_memory_nx(_etext,
  roundup(_brk_end, PMD_SIZE)), then free_kernel_image_pages of the text/rodata and the
  rodata/data gaps.

free_init_pages is set_memory_nx + set_memory_rw of the range, then free_reserved_area.
PTI is off on the modelled CPUs (no set_memory_np_noalias).
"""

from __future__ import annotations

from permalloc import Machine, Perm
from permalloc.boot import free_reserved_area
from permalloc.model.directmap import LEAF_2M, LinearAlias
from permalloc.model.kernelimage import KernelImage

PMD = 2 << 20
PAGE = 4096


def _pmd_up(addr: int) -> int:
    return -(-addr // PMD) * PMD


def _pfn_align(addr: int) -> int:
    return -(-addr // PAGE) * PAGE


def map_image(machine: Machine, image: KernelImage, phys: int) -> LinearAlias:
    """The high mapping after cleanup_highmap: [_text, roundup(_brk_end)) in RWX 2 MiB leaves.
    _brk_end is only known at run time; it lies in .brk, whose end (__brk_limit) rounds up
    to the same 2 MiB boundary for the Debian builds."""
    start, end = image.start, _pmd_up(image.marker("__brk_limit"))
    first_pfn, npages = phys // PAGE, (end - start) // PAGE
    alias = LinearAlias("kernel high mapping", first_pfn, npages, start,
                        [(first_pfn, first_pfn + npages, LEAF_2M)], counted=True)
    alias.map.change(range(first_pfn, first_pfn + npages), Perm.X, Perm.NONE)  # RWX, whole leaves
    machine.aliases.append(alias)
    return alias


def preallocate_vmalloc_pages(machine: Machine) -> None:
    """init_64.c: preallocate_vmalloc_pages (mem_init): one page-table page per top-level slot
    of the vmalloc area, P4D pages with 5-level paging, PUD pages with 4 levels. The area
    (VMALLOC_SIZE_TB: 12800 or 32 TiB) starts at a randomised 1 GiB boundary
    (CONFIG_RANDOMIZE_MEMORY), so it straddles one more slot than it fills."""
    five_level = "la57" in machine.spec.cpu_features  # X86_5LEVEL=y uses 5 levels when the CPU can
    size = (12800 << 40) if five_level else (32 << 40)
    slot = (256 << 40) if five_level else (512 << 30)  # PGDIR_SIZE
    for _ in range(size // slot + 1):
        machine.alloc_order(0, source="preallocate_vmalloc_pages")


def idt_ro(machine: Machine, image: KernelImage) -> None:
    """idt.c: idt_setup_apic_and_irq_gates ends with set_memory_ro(&idt_table, 1). idt_table is
    __page_aligned_bss, the first input of .bss; the stripped image has no symbol for it, so
    the first page of .bss stands for it (the same 2 MiB leaf in the Debian builds)."""
    machine.cpa.set_memory("set_memory_ro", image.marker("__bss_start"), 1)


def free_init_pages(machine: Machine, alias: LinearAlias, begin: int, end: int, what: str) -> None:
    """arch/x86/mm/init.c: free_init_pages: make the range RW+NX, then give it to the allocator."""
    begin, end = -(-begin // PAGE) * PAGE, end // PAGE * PAGE
    if begin >= end:
        return
    npages = (end - begin) // PAGE
    machine.cpa.set_memory("set_memory_nx", begin, npages)
    machine.cpa.set_memory("set_memory_rw", begin, npages)
    phys = alias.pfn(begin) * PAGE
    free_reserved_area(machine, phys, phys + npages * PAGE, what)


def smp_alternatives(machine: Machine, alias: LinearAlias, image: KernelImage) -> None:
    """alternative_instructions: the .smp_locks table is freed once patched (SMP, or one CPU)."""
    free_init_pages(machine, alias, image.marker("__smp_locks"), image.marker("__smp_locks_end"), "SMP alternatives")


def free_initmem(machine: Machine, alias: LinearAlias, image: KernelImage) -> None:
    """init.c: free_initmem (mem_encrypt_free_decrypted_mem first, CONFIG_AMD_MEM_ENCRYPT=y)."""
    if "__end_bss_decrypted" in image.layout:
        end = image.marker("__end_bss_decrypted")
        # .bss..decrypted (kvmclock's hv_clock_boot & co.) is merged into .bss in the stripped
        # image, so its size is unknown: one page is assumed used; any size of 1..511 pages
        # splits the same 2 MiB leaf.
        unused = image.layout.get("__start_bss_decrypted_unused", end - PMD + PAGE)
        free_init_pages(machine, alias, unused, end, "unused decrypted memory")
    free_init_pages(machine, alias, image.marker("__init_begin"), image.marker("__init_end"),
                    "unused kernel image (initmem)")


def mark_rodata_ro(machine: Machine, alias: LinearAlias, image: KernelImage) -> None:
    """init_64.c: mark_rodata_ro."""
    start, text_end = image.start, _pfn_align(image.marker("_etext"))
    rodata_start, rodata_end = image.marker("__start_rodata"), _pfn_align(image.marker("__end_rodata"))
    end = image.marker("__end_rodata_hpage_align")
    machine.cpa.set_memory("set_memory_ro", start, (end - start) // PAGE)
    all_end = _pmd_up(image.marker("__brk_limit"))  # roundup(_brk_end, PMD_SIZE)
    machine.cpa.set_memory("set_memory_nx", text_end, (all_end - text_end) // PAGE)
    free_init_pages(machine, alias, text_end, rodata_start, "unused kernel image (text/rodata gap)")
    free_init_pages(machine, alias, rodata_end, image.marker("_sdata"), "unused kernel image (rodata/data gap)")
