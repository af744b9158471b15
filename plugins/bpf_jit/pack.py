"""bpf_prog_pack: 64-byte chunks in shared ROX packs (kernel/bpf/core.c, 5.18+).

Line numbers: ``core`` is kernel/bpf/core.c of the Debian trees at /work/kernel/6.1 and
/work/kernel/6.12.

* ``BPF_PROG_PACK_SIZE = SZ_2M * num_possible_nodes()`` (core 6.1 l.881; 6.12 l.920):
  one pack spans 2 MiB per NUMA node (``MachineSpec.numa_nodes``), in 64-byte chunks
  (``BPF_PROG_CHUNK_SHIFT 6``, l.842) tracked by a bitmap.
* ``alloc_new_pack`` (6.1 l.888; 6.12 l.927): ``module_alloc(BPF_PROG_PACK_SIZE)`` (6.1
  l.896) / ``bpf_jit_alloc_exec`` = ``execmem_alloc(EXECMEM_BPF)`` (6.12 l.936, l.1128);
  neither passes VM_ALLOW_HUGE_VMAP, so the pack is mapped with 4 KiB PTEs
  (docs/kernel-notes/mm-x86.md section 5). It is filled with int3 (``jit_fill_hole``), then
  made ROX once: ``set_memory_ro`` + ``set_memory_x`` (6.1 l.907-909) or one
  ``set_memory_rox`` (6.12 l.944-946), with VM_FLUSH_RESET_PERMS for the free.
* ``bpf_prog_pack_alloc`` (6.1 l.913; 6.12 l.958): a request larger than a pack gets its
  own ``module_alloc``/``execmem_alloc`` of ``round_up(size, PAGE_SIZE)``, filled and made
  ROX the same way (6.1 l.921-938); otherwise the first pack in ``pack_list`` order with a
  free run of chunks (``bitmap_find_next_zero_area`` from 0: the lowest fit) takes it, and
  a new pack is created (and appended) only when none has room.
* ``bpf_prog_pack_free`` (6.1 l.993; 6.12 l.1044): an oversized allocation is freed with
  ``module_memfree``/``bpf_jit_free_exec`` (vfree); a packed one is overwritten with int3
  by ``bpf_arch_text_invalidate`` (x86: ``text_poke_set(dst, 0xcc, len)``, jit 6.1 l.283),
  its chunks cleared, and the pack freed (vfree) when its bitmap is empty (l.1025-1030).
* Predictor flush (both trees, l.858-865 in 6.1): when ``bpf_pred_flush_enabled`` (x86:
  ``cpu_wants_ibpb_bpf``, arch/x86/kernel/cpu/bugs.c 6.1 l.1830: IBPB present and no
  retpoline sequence) a pack is "dirty" once created or after a free; a classic program
  prefers a clean pack, an eBPF program a dirty one, and a classic program placed in a
  dirty pack first runs ``bpf_arch_ibpb`` = ``on_each_cpu(IBPB)`` and marks all packs
  clean (6.1 l.940-985). Off by default here (policy option ``bpf_jit.pred_flush``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from permalloc import Perm
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_up

from .sizes import BPF_PROG_CHUNK_SIZE

if TYPE_CHECKING:
    from permalloc import Machine
    from permalloc.mechanisms.vmalloc import VmArea


def pack_size(numa_nodes: int) -> int:
    """BPF_PROG_PACK_SIZE = SZ_2M * num_possible_nodes() (core 6.1 l.881)."""
    return PMD_SIZE * numa_nodes


def lock_rox(machine: Machine, addr: int, npages: int) -> None:
    """Make fresh JIT memory read-only and executable, as the kernel of the policy does.

    6.1: ``set_memory_ro`` then ``set_memory_x`` (core 6.1 l.908-909; include/linux/filter.h
    6.1 l.896-900 for bpf_jit_binary_lock_ro). 6.2 and later: one ``set_memory_rox`` (core
    6.12 l.945; filter.h 6.12 l.1076-1080). Both go through the arch's permalloc_set_memory,
    so the arch's CPA decides flushes and direct-map splits.
    """
    if machine.kernel >= (6, 2):
        machine.perm.set_memory("set_memory_rox", addr, npages)
    else:
        machine.perm.set_memory("set_memory_ro", addr, npages)
        machine.perm.set_memory("set_memory_x", addr, npages)


def exec_alloc(machine: Machine, size: int, source: str) -> VmArea:
    """bpf_jit_alloc_exec: module_alloc (6.1) / execmem_alloc(EXECMEM_BPF) (6.12).

    Both are ``__vmalloc_node_range`` in the module range, PAGE_KERNEL (RW+NX), 4 KiB PTEs,
    with VM_FLUSH_RESET_PERMS (arch/x86/kernel/module.c 6.1 l.76-80; mm/execmem.c 6.12 l.17).
    """
    return machine.vmalloc.vmalloc(size, machine.arch.bpf_range, Perm.RW, reset_perms=True, source=source)


class ChunkMap:
    """The chunk bitmap of one pack, kept as sorted free runs [start, end)."""

    def __init__(self, nchunks: int) -> None:
        self.nchunks = nchunks
        self._starts: list[int] = [0]
        self._ends: dict[int, int] = {0: nchunks}
        self.used = 0

    def find(self, nbits: int) -> int | None:
        """bitmap_find_next_zero_area(map, n, 0, nbits, 0): the lowest run of ``nbits`` zeros."""
        for start in self._starts:
            if self._ends[start] - start >= nbits:
                return start
        return None

    def set(self, pos: int, nbits: int) -> None:
        i = bisect.bisect_right(self._starts, pos) - 1
        start = self._starts[i] if i >= 0 else -1
        end = self._ends.get(start, -1)
        if i < 0 or pos + nbits > end:
            raise ValueError(f"chunks {pos}..{pos + nbits} are not free")
        del self._starts[i]
        del self._ends[start]
        if pos + nbits < end:
            self._starts.insert(i, pos + nbits)
            self._ends[pos + nbits] = end
        if start < pos:
            self._starts.insert(i, start)
            self._ends[start] = pos
        self.used += nbits

    def clear(self, pos: int, nbits: int) -> None:
        end = pos + nbits
        i = bisect.bisect_left(self._starts, pos)
        if (i < len(self._starts) and self._starts[i] < end) or (i > 0 and self._ends[self._starts[i - 1]] > pos):
            raise ValueError(f"chunks {pos}..{end} are not in use")
        if i < len(self._starts) and self._starts[i] == end:
            end = self._ends.pop(end)
            del self._starts[i]
        if i > 0 and self._ends[self._starts[i - 1]] == pos:
            self._ends[self._starts[i - 1]] = end
        else:
            self._starts.insert(i, pos)
            self._ends[pos] = end
        self.used -= nbits

    @property
    def empty(self) -> bool:
        return self.used == 0


@dataclass(eq=False)
class Pack:
    area: VmArea
    chunks: ChunkMap
    flush_needed: bool = False

    @property
    def addr(self) -> int:
        return self.area.addr


@dataclass
class PackStats:
    packs_created: int = 0
    packs_freed: int = 0
    peak_packs: int = 0
    oversized_allocs: int = 0
    oversized_frees: int = 0
    int3_fills: int = 0  # bpf_arch_text_invalidate calls (text_poke_set with 0xcc)
    int3_bytes: int = 0
    ibpb_rounds: int = 0  # bpf_arch_ibpb: on_each_cpu(IBPB), when pred_flush is on
    oversized: dict[int, VmArea] = field(default_factory=dict)


class ProgPack:
    """bpf_prog_pack_alloc / bpf_prog_pack_free on one machine."""

    def __init__(self, machine: Machine, pred_flush: bool = False) -> None:
        self.m = machine
        self.size = pack_size(machine.spec.numa_nodes)
        self.nchunks = self.size // BPF_PROG_CHUNK_SIZE  # BPF_PROG_CHUNK_COUNT, core 6.1 l.886
        self.packs: list[Pack] = []  # pack_list, in creation order (list_add_tail)
        self.pred_flush = pred_flush
        self.stats = PackStats()

    # -- allocation -------------------------------------------------------------------------
    def _new_pack(self) -> Pack:
        """alloc_new_pack: allocate, fill with int3, make ROX once (core 6.1 l.888-911)."""
        m = self.m
        area = exec_alloc(m, self.size, source="alloc_new_pack")
        m.store(area.addr, self.size, source="jit_fill_hole")
        pack = Pack(area, ChunkMap(self.nchunks), flush_needed=self.pred_flush)
        self.packs.append(pack)
        lock_rox(m, area.addr, self.size >> PAGE_SHIFT)
        self.stats.packs_created += 1
        self.stats.peak_packs = max(self.stats.peak_packs, len(self.packs))
        m.emit(ev.ALLOC, 1, area.addr, source="bpf_prog_pack", allocated=area.size, requested=0)
        return pack

    def alloc(self, size: int, was_classic: bool) -> int:
        """bpf_prog_pack_alloc(size, ..., was_classic): the read-only address of ``size`` bytes."""
        m = self.m
        if size > self.size:
            rounded = align_up(size, PAGE_SIZE)
            area = exec_alloc(m, rounded, source="bpf_prog_pack_alloc")
            m.store(area.addr, rounded, source="jit_fill_hole")
            lock_rox(m, area.addr, rounded >> PAGE_SHIFT)
            self.stats.oversized[area.addr] = area
            self.stats.oversized_allocs += 1
            m.emit(ev.ALLOC, 1, area.addr, source="bpf_prog_pack", allocated=area.size, requested=size)
            return area.addr
        nbits = -(-size // BPF_PROG_CHUNK_SIZE)  # BPF_PROG_SIZE_TO_NBITS, core 6.1 l.867
        chosen: tuple[Pack, int] | None = None
        fallback: tuple[Pack, int] | None = None
        for pack in self.packs:
            pos = pack.chunks.find(nbits)
            if pos is None:
                continue
            if not self.pred_flush or was_classic ^ pack.flush_needed:
                chosen = (pack, pos)
                break
            if fallback is None:
                fallback = (pack, pos)
        if chosen is None:
            chosen = fallback if fallback is not None else (self._new_pack(), 0)
        pack, pos = chosen
        if self.pred_flush and pack.flush_needed and was_classic:
            # static_call_cond(bpf_arch_pred_flush)() = on_each_cpu(__bpf_arch_ibpb): one
            # all-CPU IPI round that is not a TLB flush (arch/x86/kernel/cpu/bugs.c 6.1 l.1825).
            self.stats.ibpb_rounds += 1
            m.emit(ev.NOTE, 1, pack.addr, source="bpf_arch_ibpb")
            for p in self.packs:
                p.flush_needed = False
        pack.chunks.set(pos, nbits)
        addr = pack.addr + pos * BPF_PROG_CHUNK_SIZE
        m.emit(ev.ALLOC, 1, addr, source="bpf_prog_pack", allocated=0, requested=size)
        return addr

    # -- freeing ------------------------------------------------------------------------------
    def _pack_of(self, addr: int) -> Pack:
        for pack in self.packs:
            if pack.addr <= addr < pack.addr + self.size:
                return pack
        raise ValueError(f"bpf_prog_pack bug: {addr:#x} is in no pack")  # core 6.1 l.1012

    def free(self, addr: int, size: int) -> None:
        """bpf_prog_pack_free(hdr): invalidate with int3, clear chunks, free an empty pack."""
        m = self.m
        if size > self.size:
            area = self.stats.oversized.pop(addr)
            m.vmalloc.vfree(area, source="bpf_jit_free_exec")
            self.stats.oversized_frees += 1
            m.emit(ev.FREE, 1, addr, source="bpf_prog_pack", allocated=area.size, requested=size)
            return
        pack = self._pack_of(addr)
        nbits = -(-size // BPF_PROG_CHUNK_SIZE)
        pos = (addr - pack.addr) // BPF_PROG_CHUNK_SIZE
        # bpf_arch_text_invalidate: x86 text_poke_set(dst, 0xcc, len), jit 6.1 l.283-286
        m.text.copy(addr, size, source="bpf_arch_text_invalidate")
        self.stats.int3_fills += 1
        self.stats.int3_bytes += size
        pack.chunks.clear(pos, nbits)
        m.emit(ev.FREE, 1, addr, source="bpf_prog_pack", allocated=0, requested=size)
        if self.pred_flush:
            pack.flush_needed = True
        if pack.chunks.empty:
            self.packs.remove(pack)
            m.vmalloc.vfree(pack.area, source="bpf_jit_free_exec")
            self.stats.packs_freed += 1
            m.emit(ev.FREE, 1, pack.addr, source="bpf_prog_pack", allocated=pack.area.size, requested=0)

    # -- reporting ----------------------------------------------------------------------------
    def report(self) -> dict[str, int]:
        s = self.stats
        return {
            "pack_size": self.size,
            "chunk_size": BPF_PROG_CHUNK_SIZE,
            "chunks_per_pack": self.nchunks,
            "packs_live": len(self.packs),
            "packs_created": s.packs_created,
            "packs_freed": s.packs_freed,
            "peak_packs": s.peak_packs,
            "chunks_used": sum(p.chunks.used for p in self.packs),
            "chunks_total": len(self.packs) * self.nchunks,
            "oversized_allocs": s.oversized_allocs,
            "oversized_live": len(s.oversized),
            "int3_fills": s.int3_fills,
            "int3_bytes": s.int3_bytes,
            "ibpb_rounds": s.ibpb_rounds,
        }
