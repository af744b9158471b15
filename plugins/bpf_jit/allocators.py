"""Where a JIT image goes: the three allocators that ``policy.bpf_allocator`` selects.

* ``per-program`` -- the x86 path before 5.18 (and of every arch without the pack):
  ``bpf_jit_binary_alloc`` (kernel/bpf/core.c 6.1 l.1088) -> ``bpf_jit_alloc_exec`` ->
  ``module_alloc``: a page-rounded vmalloc area in the module range, RW+NX, with
  VM_FLUSH_RESET_PERMS; filled with int3 and JIT-ed in place; then
  ``bpf_jit_binary_lock_ro`` makes it ROX (``set_memory_ro`` + ``set_memory_x`` in 6.1,
  include/linux/filter.h l.896-900; ``set_memory_rox`` in 6.12, l.1076-1080) through the
  arch's CPA; freed by ``bpf_jit_binary_free`` -> ``module_memfree`` = ``vfree``.
* ``pack`` -- ``bpf_jit_binary_pack_alloc`` (core 6.1 l.1143): a chunk of a shared ROX pack
  (:mod:`.pack`); the JIT writes into a kvmalloc'ed RW buffer (ordinary kernel heap, not
  modelled) and ``bpf_jit_binary_pack_finalize`` (l.1190) copies it with
  ``bpf_arch_text_copy`` = x86 ``text_poke_copy`` (arch/x86/net/bpf_jit_comp.c 6.1
  l.2620): local flushes only. On an arch without text_poke the copy is still modelled as
  a local-alias copy, as arm64's ``aarch64_insn_copy`` does (6.12
  arch/arm64/net/bpf_jit_comp.c l.2011).
* ``perm-alloc`` -- the RFC ("bpf: Use perm_alloc() for BPF JIT filters"):
  ``perm_alloc(size, RX)``, the JIT writes at the writable address, ``perm_writable_finish``
  makes it live; the arch decides the cost. The size is ``bpf_jit_binary_alloc``'s (page
  rounded, 128-byte hole): an assumption, as only the RFC's cover letter is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from permalloc import Perm, PermallocError
from permalloc.model import events as ev
from permalloc.model.pages import PAGE_SHIFT

from .pack import ProgPack, exec_alloc, lock_rox
from .sizes import (
    BPF_BINARY_HEADER,
    ImageSize,
    binary_alloc_hole,
    binary_alloc_size,
    pack_alloc_hole,
    pack_alloc_size,
)

if TYPE_CHECKING:
    from permalloc import Machine


@dataclass(eq=False)
class Program:
    """One loaded program: what was asked, where its image lives, and the allocator's handle."""

    id: str
    kind: str
    image: ImageSize
    size: int = 0  # bytes requested from the allocator (header, hole and rounding included)
    addr: int = 0  # the allocation (struct bpf_binary_header)
    image_addr: int = 0  # hdr->image + the random start: where the code begins
    handle: Any = None

    @property
    def was_classic(self) -> bool:
        return self.kind == "seccomp"


def _start(machine: Machine, hole: int, align: int) -> int:
    """prandom_u32_max(hole) & ~(alignment - 1) (core 6.1 l.1117 / l.1181), seeded."""
    return (machine.rng.randrange(hole) if hole > 0 else 0) & ~(align - 1)


class Allocator:
    name = ""
    description = ""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def load(self, prog: Program) -> None:
        raise NotImplementedError

    def unload(self, prog: Program) -> None:
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        return {}


class PerProgram(Allocator):
    name = "per-program"
    description = "bpf_jit_binary_alloc: a module_alloc area per program, set_memory_ro+x (pre-5.18 x86)"

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine)
        self.live_areas = 0

    def load(self, prog: Program) -> None:
        m = self.m
        size = binary_alloc_size(prog.image.image)
        area = exec_alloc(m, size, source="bpf_jit_alloc_exec")
        # jit_fill_hole (int3 over the whole area), then do_jit writes the image in place
        m.store(area.addr, size, source="bpf_jit_binary_alloc")
        start = _start(m, binary_alloc_hole(prog.image.image, size), prog.image.binary_align)
        prog.size, prog.addr, prog.handle = size, area.addr, area
        prog.image_addr = area.addr + BPF_BINARY_HEADER + start
        lock_rox(m, area.addr, size >> PAGE_SHIFT)  # bpf_jit_binary_lock_ro
        self.live_areas += 1
        m.emit(ev.ALLOC, 1, area.addr, source="bpf_jit_binary_alloc", allocated=area.size, requested=size)

    def unload(self, prog: Program) -> None:
        area = prog.handle
        self.m.vmalloc.vfree(area, source="bpf_jit_free_exec")  # VM_FLUSH_RESET_PERMS
        self.live_areas -= 1
        self.m.emit(ev.FREE, 1, prog.addr, source="bpf_jit_binary_alloc", allocated=area.size, requested=prog.size)

    def report(self) -> dict[str, Any]:
        return {"areas_live": self.live_areas}


class PackAllocator(Allocator):
    name = "pack"
    description = "bpf_prog_pack: 64-byte chunks of 2 MiB x NUMA-node ROX packs, text_poke_copy (5.18+)"

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine)
        flag = machine.policy.options.get("bpf_jit.pred_flush", False)
        pred_flush = flag.strip().lower() in ("1", "true", "yes", "on") if isinstance(flag, str) else bool(flag)
        self.pack = ProgPack(machine, pred_flush=pred_flush)
        self.text_copies = 0
        self.text_copy_bytes = 0

    def load(self, prog: Program) -> None:
        m = self.m
        size = pack_alloc_size(prog.image.image, prog.image.pack_align)
        addr = self.pack.alloc(size, prog.was_classic)
        start = _start(m, pack_alloc_hole(prog.image.image, size), prog.image.pack_align)
        prog.size, prog.addr = size, addr
        prog.image_addr = addr + BPF_BINARY_HEADER + start
        # bpf_jit_binary_pack_finalize -> bpf_arch_text_copy(ro_header, rw_header, size)
        m.text.copy(addr, size, source="bpf_arch_text_copy")
        self.text_copies += 1
        self.text_copy_bytes += size

    def unload(self, prog: Program) -> None:
        self.pack.free(prog.addr, prog.size)  # bpf_jit_binary_pack_free

    def report(self) -> dict[str, Any]:
        return {**self.pack.report(), "text_copies": self.text_copies, "text_copy_bytes": self.text_copy_bytes}


class PermAllocAllocator(Allocator):
    name = "perm-alloc"
    description = "the RFC: perm_alloc(size, RX) per program, write at the writable address, finish"

    def load(self, prog: Program) -> None:
        m = self.m
        size = binary_alloc_size(prog.image.image)
        # "short": a JIT image lives as long as its program, not for the life of the kernel like
        # the module core sections the RFC cover letter (idea 4, ll.94-97) would pack together
        alloc = m.perm.alloc(size, Perm.RX, m.arch.bpf_range, lifetime="short")
        m.perm.write(alloc, 0, size)  # fill + JIT through perm_writable_addr
        m.perm.finish(alloc)  # perm_writable_finish
        start = _start(m, binary_alloc_hole(prog.image.image, size), prog.image.binary_align)
        prog.size, prog.addr, prog.handle = size, alloc.addr, alloc
        prog.image_addr = alloc.addr + BPF_BINARY_HEADER + start

    def unload(self, prog: Program) -> None:
        self.m.perm.free(prog.handle)


ALLOCATORS: dict[str, type[Allocator]] = {
    cls.name: cls for cls in (PerProgram, PackAllocator, PermAllocAllocator)
}


def make_allocator(machine: Machine) -> Allocator:
    """The allocator named by ``policy.bpf_allocator``; a clear error for an unknown name."""
    name = machine.policy.bpf_allocator
    cls = ALLOCATORS.get(name)
    if cls is None:
        known = ", ".join(f"{n!r}" for n in ALLOCATORS)
        raise PermallocError(
            f"policy {machine.policy.name!r}: unknown bpf_allocator {name!r}; known allocators: {known}"
        )
    return cls(machine)


@dataclass
class BpfJitState:
    """Per-machine state of the plugin (``machine.state("bpf_jit", BpfJitState)``)."""

    allocator: Allocator | None = None
    programs: dict[str, Program] = field(default_factory=dict)
    loads: dict[str, int] = field(default_factory=lambda: {"ebpf": 0, "seccomp": 0})
    unloads: int = 0
    image_bytes: int = 0  # sum of jited_len over all loads
    baseline: dict[str, int] = field(default_factory=dict)
    boot_programs: list[str] = field(default_factory=list)  # what the kernel itself JITed at boot
    boot_report: dict[str, int] = field(default_factory=dict)  # the allocator's accounting after boot

    def get_allocator(self, machine: Machine) -> Allocator:
        if self.allocator is None:
            self.allocator = make_allocator(machine)
        return self.allocator
