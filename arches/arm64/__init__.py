"""The arm64 arch backend (Debian's arm64 kernels, 6.1 and 6.12), written on the public arch API.

What differs from the generic fallback, each in its own module:

* ``layout.py``: the address map and KASLR of each kernel version (the module region grew
  from 128 MiB to 2 GiB in v6.5), BPF JIT images in vmalloc, relocation reach with module
  PLTs for the branch relocations;
* mechanisms: broadcast TLB invalidation (TLBI ...IS, no IPIs; flush_tlb_kernel_range falls
  back to flush_tlb_all above MAX_TLBI_OPS = PTRS_PER_PTE pages, asm/tlbflush.h; 6.12 calls it
  MAX_DVM_OPS), text patched through the fixmap (kernel/patching.c, the core's TextPatcher),
  a direct map that set_memory may change (can_set_direct_map() with rodata=full);
* the linear map at page granularity under rodata=full (mm/mmu.c: map_mem, NO_BLOCK_MAPPINGS
  when can_set_direct_map()): 4 KiB leaves everywhere, so there is nothing to split;
* ``pageattr.py``: set_memory_* = change_memory_common; ``poke`` through the fixmap patcher;
* ``bpfjit.py``: the arm64 JIT's image sizes;
* ``elf.py``: arm64 modules for ingest (EM_AARCH64, module PLTs);
* policies ``arm64-6.1`` and ``arm64-6.12`` and the bundled arm64 workloads (``data/``).

Not modelled: Cortex-A53 erratum 843419 veneers (a CPU property), KFENCE and
debug_pagealloc (other reasons for a page-mapped linear map), 52-bit VA.
"""

from __future__ import annotations

import functools
from pathlib import Path

from permalloc import ArchInfo, Machine, MachineSpec, Perm, PermAllocation, PolicySpec, hookimpl
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.textpatch import TextPatcher
from permalloc.mechanisms.tlbflush import BroadcastFlush
from permalloc.model.directmap import LEAF_4K
from permalloc.model.elfmachine import ElfMachine
from permalloc.model.memblock import Memblock
from permalloc.model.pages import PAGE_SHIFT
from permalloc.run.workloads import WorkloadSource, read_header

from . import bpfjit, elf, layout, pageattr

__version__ = "1.0"

AARCH64_INSN_SIZE = 4
MAX_TLBI_OPS = 512  # asm/tlbflush.h: PTRS_PER_PTE (4 KiB pages)
DATA = Path(__file__).parent / "data"
WORKLOADS = {"6.1": "debian-6.1.0-57-arm64", "6.12": "debian-6.12.118-arm64"}


@hookimpl
def permalloc_arch_describe(spec: MachineSpec, policy: PolicySpec) -> ArchInfo:
    return layout.describe(spec, policy)


@hookimpl
def permalloc_arch_mechanisms(machine: Machine) -> ArchMechanisms:
    return ArchMechanisms(tlb=BroadcastFlush(MAX_TLBI_OPS), text=TextPatcher(machine), can_set_direct_map=True)


@hookimpl
def permalloc_arch_direct_map(spec: MachineSpec, memblock: Memblock) -> tuple[list, dict]:
    """rodata=full: every RAM range with 4 KiB leaves (one leaf run per range)."""
    leaves = [(r.start >> PAGE_SHIFT, r.end >> PAGE_SHIFT, LEAF_4K) for r in memblock.memory if r.end > r.start]
    return leaves, {LEAF_4K: sum(end - start for start, end, _ in leaves)}


@hookimpl
def permalloc_set_memory(machine: Machine, addr: int, npages: int, set_mask: Perm, clear_mask: Perm,
                         source: str) -> bool:
    pageattr.set_memory(machine, addr, npages, set_mask, clear_mask, source)
    return True


@hookimpl
def permalloc_poke(machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool:
    addr = alloc.addr + offset
    if alloc.perm & Perm.W:
        machine.store(addr, length, source="poke")  # writable data: a plain store
    elif length <= AARCH64_INSN_SIZE:
        # kernel/patching.c: aarch64_insn_patch_text_nosync, one instruction through the fixmap
        machine.text.poke(addr, length, source="aarch64_insn_patch_text_nosync")
    else:
        # kernel/patching.c: aarch64_insn_copy (bpf_arch_text_copy), page by page through the fixmap
        machine.text.copy(addr, length, source="aarch64_insn_copy")
    return True


@hookimpl
def permalloc_bpf_jit_image(machine: Machine, kind: str, insns: int) -> tuple[int, int, int] | None:
    if machine.arch.machine != "aarch64":
        return None
    version = "6.12" if machine.kernel >= (6, 12) else "6.1"
    return bpfjit.image_bytes(kind, insns, version), bpfjit.ALIGN, bpfjit.ALIGN


@hookimpl
def permalloc_elf_machines() -> list[ElfMachine]:
    return [elf.AARCH64]


@functools.cache
def _workloads() -> tuple[WorkloadSource, ...]:
    return tuple(read_header(DATA / f"{name}.json.gz", origin="arm64 (bundled)") for name in WORKLOADS.values())


@hookimpl
def permalloc_register_workloads() -> list[WorkloadSource]:
    return list(_workloads())


POLICIES = (
    PolicySpec(
        name="arm64-6.1",
        kernel="6.1",
        arch="arm64",
        description="arm64 6.1: one contiguous module layout in a 128 MiB KASLR window with module PLTs "
        "(kernel/module.c, kaslr.c, module-plts.c), the 6.1 set_memory_* sequence through "
        "change_memory_common (every page's linear alias changed under rodata=full); one vmalloc'ed JIT "
        "image per BPF program (net/bpf_jit_comp.c 6.1: bpf_jit_binary_alloc, no bpf_prog_pack on arm64 "
        f"yet); runs on {WORKLOADS['6.1']}",
        workload=WORKLOADS["6.1"],
        module_layout="contiguous",
        bpf_allocator="per-program",
    ),
    PolicySpec(
        name="arm64-6.12",
        kernel="6.12",
        arch="arm64",
        description="arm64 6.12: module_memory from execmem in the 2 GiB module_plt_base window "
        "(mm/init.c: execmem_arch_setup, module_init_limits), set_memory_rox as set_memory_ro + "
        "set_memory_x; BPF in bpf_prog_pack (net/bpf_jit_comp.c 6.12: bpf_jit_binary_pack_alloc, "
        f"images copied in through the fixmap, aarch64_insn_copy); runs on {WORKLOADS['6.12']}",
        workload=WORKLOADS["6.12"],
        module_layout="module-memory",
        bpf_allocator="pack",
    ),
)


@hookimpl
def permalloc_register_policies() -> list[PolicySpec]:
    return list(POLICIES)
