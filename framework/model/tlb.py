"""TLB state: translations that may still be cached after a PTE was changed or removed.

Entries become stale when a mapping is removed or downgraded without a flush (lazy vunmap,
the *_noflush direct-map helpers); a flush that covers them ends them. CPUs are not
modelled one by one: a stale entry may be cached on any CPU until an all-CPU flush covers
it, which keeps the cost independent of the CPU count.
"""

from __future__ import annotations

from collections import Counter

from permalloc.model.pages import PAGE_SHIFT
from permalloc.model.perms import Perm

_W, _X = int(Perm.W), int(Perm.X)


class TLBState:
    def __init__(self) -> None:
        self._stale: dict[int, tuple[int, int]] = {}  # virtual page -> (pfn, old perm)
        self.stale_w: Counter[int] = Counter()  # pfn -> stale writable translations
        self.stale_x: Counter[int] = Counter()  # pfn -> stale executable translations

    def add(self, addr: int, pfns: list[int] | tuple[int, ...], perms: bytes | list[int]) -> None:
        """Record that ``pfns`` mapped from ``addr`` may still be cached with ``perms``."""
        vpn = addr >> PAGE_SHIFT
        w, x = _W, _X
        for i, pfn in enumerate(pfns):
            perm = perms[i]
            if not perm & (w | x):
                continue  # a stale read-only or not-present entry cannot break W^X
            self._drop(vpn + i)
            self._stale[vpn + i] = (pfn, perm)
            if perm & w:
                self.stale_w[pfn] += 1
            if perm & x:
                self.stale_x[pfn] += 1

    def _drop(self, vpn: int) -> int | None:
        entry = self._stale.pop(vpn, None)
        if entry is None:
            return None
        pfn, perm = entry
        for counter, bit in ((self.stale_w, _W), (self.stale_x, _X)):
            if perm & bit:
                counter[pfn] -= 1
                if not counter[pfn]:
                    del counter[pfn]
        return pfn

    def flush_range(self, start: int, end: int) -> list[int]:
        """Drop entries in [start, end); returns the PFNs that lost a stale entry."""
        first, last = start >> PAGE_SHIFT, (end - 1) >> PAGE_SHIFT
        if last - first + 1 < len(self._stale):
            candidates = [vpn for vpn in range(first, last + 1) if vpn in self._stale]
        else:
            candidates = [vpn for vpn in self._stale if first <= vpn <= last]
        return [pfn for vpn in candidates if (pfn := self._drop(vpn)) is not None]

    def flush_all(self) -> list[int]:
        pfns = [pfn for pfn, _ in self._stale.values()]
        self._stale.clear()
        self.stale_w.clear()
        self.stale_x.clear()
        return pfns

    def __len__(self) -> int:
        return len(self._stale)
