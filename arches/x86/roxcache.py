"""The execmem ROX cache (mm/execmem.c under CONFIG_ARCH_HAS_EXECMEM_ROX), as x86 uses it.

Modelled on upstream mm/execmem.c as of linux-mm/linux-mm @11384dff, with
arch/x86/mm/init.c @6388945f, arch/x86/mm/pat/set_memory.c @071ca2c5 and
kernel/module/main.c @21d4fdc8 (docs/kernel-notes/rox-cache.md has every fact, cited):

* Which memory: x86 init.c:execmem_arch_setup gives EXECMEM_ROX_CACHE (and PAGE_KERNEL_ROX)
  to EXECMEM_MODULE_TEXT, EXECMEM_KPROBES and EXECMEM_FTRACE when CONFIG_ARCH_HAS_EXECMEM_ROX
  (Kconfig: X86_64 && STRICT_MODULE_RWX) and X86_FEATURE_PSE; EXECMEM_BPF and EXECMEM_MODULE_DATA stay PAGE_KERNEL vmalloc.
  Of these the model has module text only (module_memory_alloc: MOD_TEXT, MOD_INIT_TEXT).
* Alloc (execmem_cache_alloc): first fit, in address order, among the free areas inside the
  range; the request (PAGE_ALIGNed) is carved from the area's start. On a miss,
  execmem_cache_populate_alloc: vmalloc(round_up(size, PMD_SIZE), PAGE_KERNEL,
  VM_ALLOW_HUGE_VMAP) (2 MiB leaves; no VM_FLUSH_RESET_PERMS), execmem_fill_trapping_insns
  (x86: memset int3, through the still-writable mapping), set_memory_rox on all of it, added
  to the free areas, then carved.
* execmem_alloc_rw = execmem_alloc + execmem_force_rw: set_memory_nx, then set_memory_rw on
  the allocation (the first one splits the 2 MiB leaf). execmem_restore_rox = set_memory_rox,
  whose CPA_COLLAPSE merges the leaf again once all 512 pages agree (cpa.py, one more flush).
* Free (execmem_cache_free -> __execmem_cache_free): execmem_force_rw, fill with int3,
  execmem_restore_rox, back into the free areas (merged with free neighbours); then
  execmem_cache_clean, a work item, modelled as running at once: every free area that is
  PMD-aligned and a PMD multiple is given back: execmem_set_direct_map_valid(vm, true)
  (__set_pages_p: P+RW on the direct map, no flush) and vfree() (lazy vunmap, no flush).

Assumptions and deviations:
* Allocation failures (the pending-free slow path, the populate fallback to ``size``) are not
  modelled: the simulator raises OutOfMemory instead.
* Clean on a PMD-aligned free area that is not a whole region (possible for regions of more
  than 2 MiB) would, upstream, vfree() a region with busy parts, or WARN on an address that
  does not start a vm area. The model counts the case (``clean_partial``) and leaves the area
  in the cache.
* Policy option ``x86.rox_cache_clean`` = ``upstream`` (default) or ``reset-perms``. Upstream,
  clean makes the direct map writable while the ROX vmalloc alias is still mapped, and vfree()
  leaves its executable translations in the TLBs until the lazy purge: the W^X checker counts
  both (``wx_violations``). ``reset-perms`` is a what-if, not upstream: the region is freed
  the VM_FLUSH_RESET_PERMS way (vm_reset_perms: direct map invalid, one flush, default).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from permalloc import Machine, Perm, PermallocError
from permalloc.mechanisms.vmalloc import VmArea
from permalloc.model.pages import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_up

CLEAN_OPTION = "x86.rox_cache_clean"
CLEAN_MODES = ("upstream", "reset-perms")


def clean_mode(machine: Machine) -> str:
    mode = str(machine.policy.options.get(CLEAN_OPTION, "upstream"))
    if mode not in CLEAN_MODES:
        raise PermallocError(f"policy {machine.policy.name!r}: {CLEAN_OPTION}={mode!r}; known: {', '.join(CLEAN_MODES)}")
    return mode


@dataclass
class RoxStats:
    populates: int = 0
    populated_bytes: int = 0
    cleans: int = 0  # regions given back by execmem_cache_clean
    clean_partial: int = 0  # PMD-aligned free areas that are not a whole region (left cached)
    allocs: int = 0
    frees: int = 0


class RoxCache:
    """execmem_cache: free and busy areas over 2 MiB ROX regions, on one machine."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self.clean_mode = clean_mode(machine)
        self._free_starts: list[int] = []  # free_areas (maple tree), by start
        self._free_end: dict[int, int] = {}  # start -> end (exclusive)
        self.busy: dict[int, int] = {}  # busy_areas: start -> size
        self.regions: dict[int, VmArea] = {}  # populated vm areas, by start
        self.stats = RoxStats()

    # -- accounting ----------------------------------------------------------------------------
    @property
    def free_bytes(self) -> int:
        return sum(end - start for start, end in self._free_end.items())

    @property
    def region_bytes(self) -> int:
        return sum(area.size for area in self.regions.values())

    def free_areas(self) -> list[tuple[int, int]]:
        return [(start, self._free_end[start]) for start in self._free_starts]

    def report(self) -> dict[str, int | str]:
        s = self.stats
        return {
            "clean": self.clean_mode, "populates": s.populates, "populated_bytes": s.populated_bytes,
            "cleans": s.cleans, "clean_partial": s.clean_partial, "allocs": s.allocs, "frees": s.frees,
            "regions_live": len(self.regions), "region_bytes": self.region_bytes,
            "busy_bytes": sum(self.busy.values()), "free_bytes": self.free_bytes,
        }

    # -- free areas ----------------------------------------------------------------------------
    def _add_free(self, addr: int, size: int) -> None:
        """execmem_cache_add_locked: insert [addr, addr+size), merged with adjacent free areas."""
        lower, upper = addr, addr + size
        i = bisect.bisect_left(self._free_starts, addr)
        if i > 0 and self._free_end[self._free_starts[i - 1]] == addr:
            i -= 1
            lower = self._free_starts.pop(i)
            del self._free_end[lower]
        if i < len(self._free_starts) and self._free_starts[i] == upper:
            upper = self._free_end.pop(self._free_starts.pop(i))
        self._free_starts.insert(i, lower)
        self._free_end[lower] = upper

    def _take(self, size: int, range_name: str) -> int | None:
        """execmem_cache_alloc_locked: the first free area (address order) that fits and lies
        in the range (within_range); carve ``size`` from its start."""
        vrange = self.m.range(range_name)
        for i, start in enumerate(self._free_starts):
            end = self._free_end[start]
            if end - start >= size and start >= vrange.start and start + size < vrange.end:
                del self._free_starts[i]
                del self._free_end[start]
                if end - start > size:
                    self._free_starts.insert(i, start + size)
                    self._free_end[start + size] = end
                self.busy[start] = size
                return start
        return None

    # -- permissions (mm/execmem.c) ------------------------------------------------------------
    def force_rw(self, addr: int, size: int) -> None:
        """execmem_force_rw: set_memory_nx, then set_memory_rw (RW+NX for formation)."""
        npages = align_up(size, PAGE_SIZE) >> PAGE_SHIFT
        self.m.perm.set_memory("set_memory_nx", addr, npages)
        self.m.perm.set_memory("set_memory_rw", addr, npages)

    def restore_rox(self, addr: int, size: int) -> None:
        """execmem_restore_rox: set_memory_rox (CPA_COLLAPSE: the 2 MiB leaf comes back)."""
        self.m.perm.set_memory("set_memory_rox", addr, align_up(size, PAGE_SIZE) >> PAGE_SHIFT)

    def fill_trapping_insns(self, addr: int, size: int) -> None:
        """x86 init.c:execmem_fill_trapping_insns: memset(int3), a plain write (the range is RW)."""
        self.m.store(addr, size, source="execmem_fill_trapping_insns")

    # -- alloc ---------------------------------------------------------------------------------
    def alloc(self, size: int, range_name: str = "module") -> int:
        """execmem_alloc for a ROX-cache type: ROX memory, 2 MiB-mapped until someone splits it."""
        size = align_up(size, PAGE_SIZE)  # execmem_alloc: PAGE_ALIGN(size)
        addr = self._take(size, range_name)
        if addr is None:
            addr = self._populate_alloc(size, range_name)
        self.stats.allocs += 1
        return addr

    def alloc_rw(self, size: int, range_name: str = "module") -> int:
        """execmem_alloc_rw: execmem_alloc, then execmem_force_rw."""
        addr = self.alloc(size, range_name)
        self.force_rw(addr, size)
        return addr

    def _populate_alloc(self, size: int, range_name: str) -> int:
        """execmem_cache_populate_alloc: a new 2 MiB-mapped region, int3-filled, made ROX."""
        m = self.m
        alloc_size = align_up(size, PMD_SIZE)
        area = m.vmalloc.vmalloc(alloc_size, range_name, Perm.RW, align=PMD_SIZE, reset_perms=False, huge=True,
                                 source="execmem_cache_populate_alloc")
        self.fill_trapping_insns(area.addr, area.size)
        m.perm.set_memory("set_memory_rox", area.addr, area.npages)  # vm->nr_pages
        self.regions[area.addr] = area
        self.stats.populates += 1
        self.stats.populated_bytes += area.size
        self._add_free(area.addr, area.size)
        addr = self._take(size, range_name)
        assert addr is not None, "a fresh region holds the request"
        return addr

    # -- free ----------------------------------------------------------------------------------
    def owns(self, addr: int) -> bool:
        return addr in self.busy

    def free(self, addr: int) -> bool:
        """execmem_cache_free: False if ``addr`` is not a busy cache area (execmem_free then vfrees)."""
        size = self.busy.get(addr)
        if size is None:
            return False
        # __execmem_cache_free
        self.force_rw(addr, size)
        self.fill_trapping_insns(addr, size)
        self.restore_rox(addr, size)
        del self.busy[addr]
        self._add_free(addr, size)
        self.stats.frees += 1
        self.clean()  # schedule_work(&execmem_cache_clean_work)
        return True

    def _region_of(self, addr: int) -> VmArea | None:
        for area in self.regions.values():
            if area.addr <= addr < area.addr + area.size:
                return area
        return None

    def clean(self) -> None:
        """execmem_cache_clean: give back every free area that is PMD-aligned and PMD-sized."""
        m = self.m
        for start, end in self.free_areas():
            if start % PMD_SIZE or (end - start) % PMD_SIZE:
                continue
            area = self._region_of(start)
            if area is None or area.addr != start or area.size != end - start:
                self.stats.clean_partial += 1  # upstream: vfree of a busy region, or a WARN
                continue
            self._free_starts.remove(start)
            del self._free_end[start]
            del self.regions[start]
            assert area.mapping is not None
            if self.clean_mode == "upstream":
                with m.atomic("execmem_cache_clean"):
                    # execmem_set_direct_map_valid(vm, true): __set_pages_p, P+RW, no flush
                    m.change_directmap(list(area.mapping.pfns), Perm.RW, Perm.NONE,
                                       source="execmem_cache_clean/set_direct_map_valid_noflush")
                    m.vmalloc.vfree(area, source="execmem_cache_clean/vfree")  # no VM_FLUSH_RESET_PERMS
            else:
                area.reset_perms = True  # what-if: vfree does vm_reset_perms
                m.vmalloc.vfree(area, source="execmem_cache_clean/vfree")
            self.stats.cleans += 1
