"""The built-in policies: the kernel's history, registered like any plugin's policies.

Each description says which kernel facts the policy encodes and which workload (kernel
package: modules and vmlinux facts) it runs on; the mechanisms themselves are implemented by
the arch backends and the consumers (see docs/kernel-notes/). The workloads are the ones the
module loader bundles (``permalloc workloads``).
"""

from __future__ import annotations

from permalloc.plugin.hookspecs import hookimpl
from permalloc.plugin.policy import PolicySpec

__version__ = "1.0"

# The bundled workloads (plugins/module_loader/data): Debian's newest 6.1 and 6.12 images.
WORKLOAD_6_1 = "debian-6.1.0-57-amd64"
WORKLOAD_6_12 = "debian-6.12.118-amd64"
# No 5.10 package is bundled: the pre-6.1 policies take the oldest kernel there is, whose module
# loader (one contiguous layout, kernel/module/main.c) is the one they model.
_OLDEST = f"; runs on {WORKLOAD_6_1} (the oldest bundled kernel: no 5.10 package is bundled, and 6.1 still has the one contiguous module layout of that era)"

BUILTIN_POLICIES: tuple[PolicySpec, ...] = (
    PolicySpec(
        name="legacy",
        kernel="5.10",
        description="pre-RFC x86 (about 5.10): module_alloc + set_memory_ro/nx/x on one contiguous "
        "module layout (kernel/module.c), each set_memory_* running vm_unmap_aliases; one JIT "
        "allocation per BPF program locked with set_memory_ro + set_memory_x (bpf_jit_binary_lock_ro)" + _OLDEST,
        workload=WORKLOAD_6_1,
        module_layout="contiguous",
        bpf_allocator="per-program",
    ),
    PolicySpec(
        name="rfc",
        kernel="5.10",
        arch="x86",
        description="the perm_alloc RFC as posted (Nov 2020): optimizations 1 (2 MiB blocks unmapped "
        "from the direct map in bulk, with a shrinker) and 2 (staged loads copied with text_poke) on "
        "x86; modules as 4 allocations per lifetime; BPF JIT through perm_alloc per program" + _OLDEST,
        workload=WORKLOAD_6_1,
        module_layout="rfc",
        text_loading="text_poke",
        directmap="unmapped-block-cache",
        bpf_allocator="perm-alloc",
    ),
    PolicySpec(
        name="rfc-full",
        kernel="5.10",
        arch="x86",
        description="the RFC with all four optimizations: also 3 (freed RX mappings kept live, "
        "int3-filled, reused) and 4 (same-permission allocations packed under 2 MiB leaves)" + _OLDEST,
        workload=WORKLOAD_6_1,
        module_layout="rfc",
        text_loading="text_poke",
        directmap="unmapped-block-cache",
        live_cache=True,
        huge_mappings=True,
        bpf_allocator="perm-alloc",
    ),
    PolicySpec(
        name="linux-6.1",
        kernel="6.1",
        description="6.1: bpf_prog_pack for BPF (kernel/bpf/core.c: 2 MiB packs made RO+X once, "
        "text_poke_copy loads); modules still one contiguous layout with the 6.1 set_memory_* "
        "sequence (kernel/module/strict_rwx.c); runs on its own kernel, " + WORKLOAD_6_1,
        workload=WORKLOAD_6_1,
        module_layout="contiguous",
        bpf_allocator="pack",
    ),
    PolicySpec(
        name="linux-6.12",
        kernel="6.12",
        description="6.12: module_memory (up to 7 allocations per module from execmem, "
        "set_memory_ro / set_memory_nx / set_memory_rox per type), bpf_prog_pack; CPA alias "
        "processing forces full flushes (set_memory.c 6.12: cpa_process_alias); runs on its own kernel, "
        + WORKLOAD_6_12,
        workload=WORKLOAD_6_12,
        module_layout="module-memory",
        bpf_allocator="pack",
    ),
    PolicySpec(
        name="rox-cache",
        kernel="7.3",
        arch="x86",
        description="the execmem ROX cache as upstream has it (linux-mm/linux-mm, Makefile 7.3-rc5; "
        "mm/execmem.c @11384dff, x86 init.c @6388945f, set_memory.c @071ca2c5, module/main.c "
        "@21d4fdc8): module text (MOD_TEXT, MOD_INIT_TEXT: EXECMEM_MODULE_TEXT has EXECMEM_ROX_CACHE "
        "on X86_64 with PSE) is carved from 2 MiB ROX regions (vmalloc VM_ALLOW_HUGE_VMAP, int3-filled, "
        "set_memory_rox), made RW+NX while the module is formed (execmem_alloc_rw -> set_memory_nx + "
        "set_memory_rw), then execmem_restore_rox = set_memory_rox, whose CPA_COLLAPSE merges the "
        "2 MiB leaf of the module mapping again (one extra flush_tlb_all); the direct map is never "
        "collapsed. Freed text is int3-filled back into the cache; a fully free region is given "
        "back by execmem_cache_clean (direct map made RW, then a vfree without "
        "VM_FLUSH_RESET_PERMS: a W+X alias the invariants count). Data types as 6.12 "
        "module_memory; BPF keeps bpf_prog_pack (EXECMEM_BPF has no ROX cache on x86); runs on "
        + WORKLOAD_6_12 + " (the newest bundled kernel: no 7.x package is bundled, and 6.12 already has "
        "the module_memory types whose text the cache serves)",
        workload=WORKLOAD_6_12,
        module_layout="module-memory",
        rox_cache=True,
        bpf_allocator="pack",
    ),
)


@hookimpl
def permalloc_register_policies() -> list[PolicySpec]:
    return list(BUILTIN_POLICIES)
