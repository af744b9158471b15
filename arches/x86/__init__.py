"""The x86-64 arch backend: the kernel's x86 mechanisms plus the RFC's four optimisations.

It overrides the generic arch where x86 does better and inherits the rest (``change`` and
``set_memory`` are the generic set_memory_* engine, which follows set_memory.c already).

* ``alloc``/``free`` with every switch off: the generic module_alloc path (RW+NX vmalloc
  with VM_FLUSH_RESET_PERMS, arch/x86/kernel/module.c:module_alloc 6.1 l.68).
* ``finish`` with ``text_loading=set_memory``: the permission-changing calls of
  kernel/module/strict_rwx.c for the policy's kernel (6.1 and older: set_memory_ro, then
  set_memory_x; 6.12: one set_memory_rox for text).
* ``poke``: text_poke_bp for an instruction (<= POKE_MAX_OPCODE_SIZE bytes, int3 and up to
  three sync IPIs, alternative.c:text_poke_bp_batch), text_poke_copy for anything larger
  (local flushes only); writable data is simply stored to.
* The RFC's switches (PolicySpec fields), each in its own module:
  (1) ``directmap="unmapped-block-cache"`` -> blockcache.py, (2) ``text_loading="text_poke"``
  -> staging.py, (3) ``live_cache`` -> livecache.py, (4) ``huge_mappings`` -> hugepack.py
  (with ``huge_pack_by_lifetime``: packs per permission and ``lifetime`` hint).
  Optimisation 2 without 1 takes fresh pages out of the direct map one by one (dmalias.py).
* ``rox_cache`` -> roxcache.py: the execmem ROX cache as upstream has it (mm/execmem.c,
  linux-mm/linux-mm @11384dff). RX allocations in the module range come from cached 2 MiB ROX
  regions (execmem_alloc_rw: made RW+NX at ``alloc``, written in place), go live with
  execmem_restore_rox = set_memory_rox at ``finish`` (which collapses the 2 MiB leaf again,
  cpa.py), and are int3-filled back into the cache at ``free``. It models upstream's
  execmem, so it is not combined with the RFC's switches (refused at machine start).

Per-machine state lives in ``machine.state("x86", ...)``: this module is shared by machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from permalloc import (
    ArchInfo,
    Machine,
    MachineSpec,
    Perm,
    PermAllocation,
    PermallocError,
    State,
    VRange,
    hookimpl,
)
from permalloc.mechanisms.archmechanisms import ArchMechanisms
from permalloc.mechanisms.vmalloc import VmArea
from permalloc.model.elfmachine import ElfMachine
from permalloc.model.memblock import BootMemory, Memblock
from permalloc.model.pages import PAGE_SIZE, pages_for

from . import bootmap, dmalias, elf, kernelmap, layout, mechanisms, platform, staging
from .blockcache import BlockCache
from .hugepack import HugePacks, Region
from .livecache import LiveCache, LiveRange
from .roxcache import RoxCache

__version__ = "1.0"


class X86State:
    def __init__(self, machine: Machine) -> None:
        self.blocks = BlockCache(machine)
        self.live = LiveCache()
        self.packs = HugePacks(machine)
        self.rox = RoxCache(machine) if machine.policy.rox_cache else None
        self.closing = False  # teardown began: frees bypass the caches from now on


@dataclass(eq=False)
class Backing:
    """What an x86 allocation is made of (``alloc.backend["x86"]``)."""

    kind: str  # "area": its own vmap/vmalloc area; "pack": a slot of a 2 MiB region; "rox": ROX cache
    area: VmArea | None = None
    source: str = "buddy"  # who owns the area's pages: "buddy" (vfree frees them) or "cache"
    staging: VmArea | None = None
    region: Region | None = None
    first: int = 0
    npages: int = 0


def _state(machine: Machine) -> X86State:
    return machine.state("x86", lambda: X86State(machine))


def _blocks(machine: Machine) -> BlockCache | None:
    return _state(machine).blocks if machine.policy.directmap == "unmapped-block-cache" else None


# -- arch description ---------------------------------------------------------------------------
@hookimpl
def permalloc_arch_describe(spec: MachineSpec) -> ArchInfo:
    return layout.describe(spec)


@hookimpl
def permalloc_elf_machines() -> list[ElfMachine]:
    return [elf.X86_64]


@hookimpl
def permalloc_arch_mechanisms(machine: Machine) -> ArchMechanisms:
    return mechanisms.mechanisms(machine)


# arch/x86/kernel/setup_percpu.c: setup_per_cpu_areas embeds the first chunk with
# atom_size = PMD_SIZE on 64-bit ("so that embedded percpu areas are aligned to PMD")
PERCPU_ATOM = 2 << 20

# arch/x86/mm/init.c: zone_sizes_init (MAX_DMA_PFN = 16 MiB, MAX_DMA32_PFN = 4 GiB)
ZONES = [("DMA", 16 << 20), ("DMA32", 1 << 32), ("Normal", None)]


@hookimpl
def permalloc_arch_boot_memory(spec: MachineSpec, image) -> BootMemory:
    fw = platform.firmware(spec.platform, spec.memory, spec.numa_nodes, spec.initrd)
    memory = platform.memblock_memory(fw.e820)
    reserved = [(0, platform.REAL_MODE_RESERVE, "first 1 MiB (reserve_real_mode)")]
    avoid = [(fw.initrd[0], fw.initrd[0] + fw.initrd[1])] if fw.initrd else []
    phys = platform.kaslr_phys(memory, image.size, avoid, spec.seed) if image is not None else None
    return BootMemory(fw.name, fw.e820, memory, ZONES, reserved, kernel_phys=phys, initrd=fw.initrd,
                      percpu_atom=PERCPU_ATOM, dma_reserve=True)  # mm/init.c: memblock_find_dma_reserve


@hookimpl
def permalloc_arch_direct_map(spec: MachineSpec, memblock: Memblock) -> tuple[list, dict]:
    # memory_map_top_down starts below the highest free 2 MiB-aligned 2 MiB block
    top = memblock.alloc(2 << 20, 2 << 20, "init_mem_mapping probe", limit=max(r.end for r in memblock.memory))
    memblock.unreserve(top, top + (2 << 20))  # memblock_phys_free right after
    return bootmap.init_mem_mapping(memblock.memory, top >> 12, spec.gbpages)


@hookimpl(tryfirst=True)
def permalloc_machine_boot(machine: Machine, stage: str) -> None:
    image, phys = machine.kernel_image, machine.boot_memory.kernel_phys
    if image is None or phys is None:
        return
    if stage == "mm_init":
        kernelmap.preallocate_vmalloc_pages(machine)
        alias = kernelmap.map_image(machine, image, phys)
        kernelmap.idt_ro(machine, image)
        kernelmap.smp_alternatives(machine, alias, image)
    elif stage == "late":
        alias = next(a for a in machine.aliases if a.name == "kernel high mapping")
        kernelmap.free_initmem(machine, alias, image)
        kernelmap.mark_rodata_ro(machine, alias, image)


_NOT_WITH_ROX_CACHE = {
    "text_loading=text_poke": lambda p: p.text_loading == "text_poke",
    "directmap=unmapped-block-cache": lambda p: p.directmap == "unmapped-block-cache",
    "live_cache": lambda p: p.live_cache,
    "huge_mappings": lambda p: p.huge_mappings,
}


@hookimpl
def permalloc_machine_start(machine: Machine) -> None:
    policy = machine.policy
    if policy.rox_cache:
        clash = [name for name, on in _NOT_WITH_ROX_CACHE.items() if on(policy)]
        if clash:
            raise PermallocError(
                f"policy {policy.name!r}: rox_cache models upstream execmem and is not combined with "
                f"the RFC's {', '.join(clash)}"
            )
    _state(machine)


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    rox = _state(machine).rox
    return {"x86": {"rox_cache": rox.report()}} if rox is not None else None


# -- alloc --------------------------------------------------------------------------------------
def _staged(machine: Machine, size: int, perm: Perm, vrange: VRange, addr: int, allocated: int,
            backing: Backing) -> PermAllocation:
    backing.staging = staging.create(machine, size)
    return PermAllocation(addr=addr, size=size, perm=perm, range_name=vrange.name, allocated=allocated,
                          staging=backing.staging.addr, backend={"x86": backing})


@hookimpl
def permalloc_alloc(machine: Machine, size: int, perm: Perm, vrange: VRange,
                    lifetime: str = "unknown") -> PermAllocation | None:
    policy = machine.policy
    st = _state(machine)
    blocks = _blocks(machine)
    npages = pages_for(size)
    source = "perm_alloc"
    if st.rox is not None and perm == Perm.RX and vrange.name == "module":
        # execmem_alloc_rw(EXECMEM_MODULE_TEXT): from the ROX cache, then RW+NX until finish
        addr = st.rox.alloc_rw(size, vrange.name)
        return PermAllocation(addr=addr, size=size, perm=perm, range_name=vrange.name, allocated=npages * PAGE_SIZE,
                              staging=addr, backend={"x86": Backing("rox", npages=npages)})
    if policy.live_cache and perm == Perm.RX:
        hit = st.live.take(perm, vrange.name, npages)
        if hit is not None:  # opt 3: a live RX range, int3-filled at its last free
            backing = Backing("area", area=hit.area, source=hit.source)
            return _staged(machine, size, perm, vrange, hit.area.addr, hit.area.size, backing)
    if policy.huge_mappings:
        group = lifetime if policy.huge_pack_by_lifetime else None  # None: every lifetime shares
        slot = st.packs.alloc(perm, vrange.name, npages, blocks, group)
        if slot is not None:  # opt 4: a slot of a 2 MiB leaf mapped at the final permission
            region, first = slot
            addr = st.packs.slot_addr(region, first)
            backing = Backing("pack", region=region, first=first, npages=npages)
            if perm & Perm.W:
                return PermAllocation(addr=addr, size=size, perm=perm, range_name=vrange.name,
                                      allocated=npages * PAGE_SIZE, staging=addr, backend={"x86": backing})
            return _staged(machine, size, perm, vrange, addr, npages * PAGE_SIZE, backing)
    text_poke = policy.text_loading == "text_poke"
    if perm & Perm.W or (blocks is None and not text_poke):
        return None  # the generic module_alloc path: RW+NX, VM_FLUSH_RESET_PERMS
    first_perm = perm if text_poke else Perm.RW
    if blocks is not None:
        # opt 1: pages whose direct map is already gone; map at once, no flush (NP -> P)
        pfns = blocks.take(npages, first_perm, source)
        area = machine.vmalloc.vmap(pfns, vrange.name, first_perm, source=source)
        backing = Backing("area", area=area, source="cache")
    else:
        # opt 2 alone: fresh pages, taken out of the direct map before they are mapped RX
        pfns = machine.alloc_pages(npages, source=source)
        dmalias.unmap(machine, pfns, source)
        area = machine.vmalloc.vmap(pfns, vrange.name, perm, source=source)
        area.pages = pfns  # owned: vfree frees them
        area.reset_perms = True  # VM_FLUSH_RESET_PERMS: vfree flushes and restores the direct map
        backing = Backing("area", area=area, source="buddy")
    if text_poke:
        return _staged(machine, size, perm, vrange, area.addr, area.size, backing)
    return PermAllocation(addr=area.addr, size=size, perm=perm, range_name=vrange.name, allocated=area.size,
                          staging=area.addr, backend={"x86": backing})


@hookimpl
def permalloc_writable(machine: Machine, alloc: PermAllocation) -> int | None:
    backing = alloc.backend.get("x86")
    if backing is None or backing.staging is None:
        return None  # written in place (generic)
    return backing.staging.addr


# -- finish -------------------------------------------------------------------------------------
def _strict_rwx(machine: Machine, alloc: PermAllocation) -> None:
    """The set_memory_* calls of complete_formation that change ``alloc``'s permission.

    (module_enable_nx / module_enable_data_nx change nothing on RW+NX memory; consumers that
    replay the kernel's exact sequence, like the module loader, issue those themselves.)
    """
    addr, npages, perm = alloc.addr, pages_for(alloc.size), alloc.perm
    calls: list[str] = []
    if machine.kernel >= (6, 12) and perm == Perm.RX:
        calls = ["set_memory_rox"]  # strict_rwx.c (6.12 l.32): module_enable_text_rox
    else:
        if not perm & Perm.W:
            calls.append("set_memory_ro")  # strict_rwx.c: module_enable_ro (6.1 l.92) / _rodata_ro (6.12 l.47)
        if perm & Perm.X:
            calls.append("set_memory_x")  # module_enable_x (6.1 l.82)
    for name in calls:
        machine.perm.set_memory(name, addr, npages)


@hookimpl
def permalloc_finish(machine: Machine, alloc: PermAllocation) -> bool:
    backing = alloc.backend.get("x86")
    if backing is not None and backing.kind == "rox":
        # strict_rwx.c:module_enable_text_rox, is_rox -> execmem_restore_rox
        _state(machine).rox.restore_rox(alloc.addr, backing.npages * PAGE_SIZE)
    elif backing is not None and backing.staging is not None:
        staging.load(machine, alloc, backing.staging)  # opt 2: text_poke_copy, local flushes only
        backing.staging = None
    elif machine.policy.text_loading == "set_memory":
        _strict_rwx(machine, alloc)
    # else: mapped at its final permission from the start (RW data under text_poke loading)
    return True


# -- poke ---------------------------------------------------------------------------------------
@hookimpl
def permalloc_poke(machine: Machine, alloc: PermAllocation, offset: int, length: int) -> bool:
    addr = alloc.addr + offset
    if alloc.perm & Perm.W:
        machine.store(addr, length, source="poke")  # writable data: a plain store
    elif alloc.perm & Perm.X and length <= layout.POKE_MAX_OPCODE_SIZE:
        # alternative.c:text_poke_bp (6.1 l.1996) -> text_poke_bp_batch: int3, tail, byte 0
        machine.text.live([(addr, length)], source="text_poke_bp")
    else:
        # alternative.c:text_poke_copy (6.1 l.1514): __text_poke per 2 pages, no IPI
        machine.text.copy(addr, length, source="text_poke_copy")
    return True


# -- free ---------------------------------------------------------------------------------------
def _release_area(machine: Machine, st: X86State, area: VmArea, source: str) -> None:
    """Unmap an area for good: the flush happens here (or is owed by the block cache)."""
    if source == "buddy":
        machine.vmalloc.vfree(area, source="vfree")  # VM_FLUSH_RESET_PERMS: one flush
        return
    assert area.mapping is not None
    pfns, stale = list(area.mapping.pfns), bytes(area.mapping.perms)
    machine.vmalloc.vunmap(area, source="perm_free/vunmap")  # lazy, no flush
    st.blocks.give_back(pfns, stale)


def _live_rx(machine: Machine, area: VmArea | None) -> bool:
    if not machine.policy.live_cache or area is None or area.mapping is None:
        return False
    return set(area.mapping.perms) == {int(Perm.RX)}


def _keep_live(machine: Machine, st: X86State, entry: LiveRange) -> None:
    """opt 3: fill with int3 through text_poke_set and keep the mapping for reuse."""
    machine.text.copy(entry.area.addr, entry.area.size, source="perm_free/text_poke_set")
    for evicted in st.live.put(entry):
        _release_area(machine, st, evicted.area, evicted.source)


@hookimpl
def permalloc_free(machine: Machine, alloc: PermAllocation) -> bool | None:
    st = _state(machine)
    done = _free(machine, st, alloc)
    if st.closing:
        _drain(machine, st)  # a consumer unloading in its own teardown, after ours
    return done


def _free(machine: Machine, st: X86State, alloc: PermAllocation) -> bool | None:
    backing = alloc.backend.get("x86")
    if backing is None:  # allocated by the generic path
        area = alloc.backend.get("area")
        if _live_rx(machine, area):
            _keep_live(machine, st, LiveRange(area, "buddy", Perm.RX, alloc.range_name))
            return True
        return None  # generic vfree
    if backing.kind == "rox":
        assert st.rox is not None
        if alloc.state is State.STAGING:
            st.rox.restore_rox(alloc.addr, backing.npages * PAGE_SIZE)  # main.c:module_memory_restore_rox
        st.rox.free(alloc.addr)  # execmem_free -> execmem_cache_free
        return True
    if backing.staging is not None:
        staging.discard(machine, backing.staging)
        backing.staging = None
    if backing.kind == "pack":
        assert backing.region is not None
        st.packs.free(backing.region, backing.first, backing.npages, loaded=alloc.state is State.LIVE,
                      keep_empty=machine.policy.live_cache, blocks=_blocks(machine))
        return True
    assert backing.area is not None
    if _live_rx(machine, backing.area):
        _keep_live(machine, st, LiveRange(backing.area, backing.source, Perm.RX, alloc.range_name))
    else:
        _release_area(machine, st, backing.area, backing.source)
    return True


# -- memory pressure and teardown ------------------------------------------------------------------
def _reclaim_mappings(machine: Machine, st: X86State) -> int:
    """Unmap every cached live range and empty pack region; returns pages freed to the buddy."""
    freed = 0
    for entry in st.live.drain():
        freed += entry.npages if entry.source == "buddy" else 0
        _release_area(machine, st, entry.area, entry.source)
    return freed + st.packs.release_empty(_blocks(machine))


@hookimpl
def permalloc_shrink(machine: Machine, pages: int) -> int:
    """The shrinker: live mappings first (opt 3/4), then whole blocks of the block cache (opt 1)."""
    if pages <= 0:
        return 0
    st = _state(machine)
    freed = _reclaim_mappings(machine, st)
    blocks = _blocks(machine)
    if blocks is not None and freed < pages:
        freed += blocks.shrink(pages - freed)
    return freed


def _drain(machine: Machine, st: X86State) -> None:
    if st.rox is not None:
        st.rox.clean()  # regions still cached are busy: the invariants report them
    _reclaim_mappings(machine, st)
    blocks = _blocks(machine)
    if blocks is not None:
        blocks.shrink(1 << 62, source="teardown")


@hookimpl
def permalloc_machine_teardown(machine: Machine) -> list[str]:
    """Release every cache, so that the invariants' leak check (trylast) finds nothing.

    Consumers released their allocations in permalloc_machine_release, before this; a late
    free still bypasses the caches from here on. Pages still in use are reported by the
    invariants' check (leaked pages and mappings).
    """
    st = _state(machine)
    st.closing = True
    _drain(machine, st)
    return []
