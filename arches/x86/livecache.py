"""RFC optimisation 3: a cache of live RX mappings.

The cover letter: "3. Caching of virtual mappings as well as pages. Normally executable
mappings need to be zapped and flushed before the pages return to the page allocator to
prevent random other memory that uses the page later from having an executable alias. But
we could cache these live mappings and delay the flush until the page is needed for an
allocation of a larger size or different permission. The "free" operations could just zero
it with a per-cpu mapping to prevent unwanted text from remaining mapped."

Assumptions:
* Only ranges still mapped RX on every page are kept ("freed RX ranges stay mapped"); a
  range whose permission was changed, or freed before it went live with a writable mapping,
  takes the ordinary free path.
* "zero it with a per-cpu mapping" is done as BPF does for a freed slot of a pack:
  text_poke_set(addr, 0xcc, len) (bpf_prog_pack_free -> bpf_arch_text_invalidate,
  arch/x86/net/bpf_jit_comp.c 6.1 l.283): int3, local flushes only.
* Reuse: a request of the same permission and range whose page count the cached range holds,
  without wasting more than half of it (best fit). The reused range is live and executable,
  so its content is always loaded through a staging buffer and text_poke_copy, whatever
  ``text_loading`` says (it cannot be written in place without a W+X or a flush).
* Reclaim ("delay the flush until the page is needed"): when the cache holds more than
  ``MAX_PAGES`` (oldest first), under memory pressure (the shrinker) and at teardown. Only
  then is the range unmapped and its stale translations flushed, by the path that owns its
  pages (vfree with VM_FLUSH_RESET_PERMS, or the block cache of optimisation 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from permalloc import Perm
from permalloc.mechanisms.vmalloc import VmArea

MAX_PAGES = 512  # 2 MiB of live RX mappings at most (an assumption of the model)


@dataclass(eq=False)
class LiveRange:
    area: VmArea
    source: str  # who owns the pages: "buddy" (vfree frees them) or "cache" (the block cache)
    perm: Perm
    range_name: str

    @property
    def npages(self) -> int:
        return self.area.npages


class LiveCache:
    def __init__(self) -> None:
        self.entries: list[LiveRange] = []  # oldest first
        self.hits = 0
        self.reclaimed = 0

    @property
    def pages(self) -> int:
        return sum(e.npages for e in self.entries)

    def take(self, perm: Perm, range_name: str, npages: int) -> LiveRange | None:
        fits = [e for e in self.entries
                if e.perm == perm and e.range_name == range_name and npages <= e.npages <= 2 * npages]
        if not fits:
            return None
        best = min(fits, key=lambda e: e.npages)
        self.entries.remove(best)
        self.hits += 1
        return best

    def put(self, entry: LiveRange) -> list[LiveRange]:
        """Keep ``entry``; returns the ranges pushed out (to be reclaimed by the caller)."""
        self.entries.append(entry)
        evicted = []
        while self.pages > MAX_PAGES and len(self.entries) > 1:
            evicted.append(self.entries.pop(0))
        self.reclaimed += len(evicted)
        return evicted

    def drain(self) -> list[LiveRange]:
        out, self.entries = self.entries, []
        self.reclaimed += len(out)
        return out
