"""Kernel virtual address allocation inside one range (mm/vmalloc.c: alloc_vmap_area).

vmalloc hands out the lowest address that fits (__alloc_vmap_area walks the free tree for
the lowest suitable block), so the model keeps the free gaps sorted by address and takes
the first that fits once aligned.
"""

from __future__ import annotations

import bisect

from permalloc.errors import OutOfMemory
from permalloc.model.archinfo import VRange
from permalloc.model.pages import align_up


class AddressSpace:
    """First-fit allocator of [start, end) blocks inside a :class:`VRange`."""

    def __init__(self, vrange: VRange, offset: int = 0) -> None:
        self.range = vrange
        self.base = vrange.start + offset
        self._gap_starts: list[int] = [self.base]
        self._gap_ends: dict[int, int] = {self.base: vrange.end}
        self._busy: dict[int, int] = {}  # start -> end

    def alloc(self, size: int, align: int) -> int:
        """Reserve ``size`` bytes aligned to ``align``; returns the start or raises OutOfMemory."""
        for i, gstart in enumerate(self._gap_starts):
            gend = self._gap_ends[gstart]
            addr = align_up(gstart, align)
            if addr + size <= gend:
                self._take(i, gstart, gend, addr, addr + size)
                return addr
        raise OutOfMemory(f"{self.range.name} range: no {size:#x}-byte hole left")

    def _take(self, i: int, gstart: int, gend: int, start: int, end: int) -> None:
        del self._gap_starts[i]
        del self._gap_ends[gstart]
        if end < gend:
            self._gap_starts.insert(i, end)
            self._gap_ends[end] = gend
        if gstart < start:
            self._gap_starts.insert(i, gstart)
            self._gap_ends[gstart] = start
        self._busy[start] = end

    def free(self, start: int) -> None:
        end = self._busy.pop(start)
        i = bisect.bisect_left(self._gap_starts, start)
        # merge with the following gap
        if i < len(self._gap_starts) and self._gap_starts[i] == end:
            end = self._gap_ends.pop(end)
            del self._gap_starts[i]
        # merge with the preceding gap
        if i > 0 and self._gap_ends[self._gap_starts[i - 1]] == start:
            self._gap_ends[self._gap_starts[i - 1]] = end
        else:
            self._gap_starts.insert(i, start)
            self._gap_ends[start] = end

    def __len__(self) -> int:
        return len(self._busy)
