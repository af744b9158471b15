"""One buddy free list (``zone->free_area[order].free_list[migratetype]``), kept sparse.

The kernel's list is a ``list_head`` of free blocks: ``add_to_free_list`` puts a block at the
head, ``add_to_free_list_tail`` and ``move_to_free_list`` at the tail, and allocation takes
the first entry (mm/page_alloc.c: get_page_from_free_area). Here the list is a sequence of
*segments* in list order, each either explicit blocks (an ordered dict) or a *run* of
evenly spaced blocks that stands for thousands of them (memblock_free_all frees whole
MAX_ORDER blocks in address order, each to the tail; dropping a page cache frees whole
blocks one after the other). So a list's cost grows with the blocks the simulation
touched, not with RAM.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(slots=True)
class Run:
    """Blocks ``first, first + step, ...`` (``count`` of them), in list order."""

    first: int
    step: int  # block size in pages; negative for a run that lists blocks downwards
    count: int

    def index(self, pfn: int) -> int | None:
        offset = pfn - self.first
        if offset % self.step:
            return None
        i = offset // self.step
        return i if 0 <= i < self.count else None

    def at(self, i: int) -> int:
        return self.first + i * self.step

    def blocks(self) -> range:
        return range(self.first, self.first + self.count * self.step, self.step)


Segment = OrderedDict[int, None] | Run


class FreeList:
    """The free blocks of one order and migratetype, in the kernel's list order."""

    __slots__ = ("segments", "nr")

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.nr = 0

    def __len__(self) -> int:
        return self.nr

    def __iter__(self) -> Iterator[int]:
        """Every block, head first (for tests and reports)."""
        for seg in self.segments:
            yield from (seg.blocks() if isinstance(seg, Run) else seg)

    def add_head(self, pfn: int) -> None:
        """list_add (add_to_free_list)."""
        if not self.segments or isinstance(self.segments[0], Run):
            self.segments.insert(0, OrderedDict())
        seg = self.segments[0]
        seg[pfn] = None
        seg.move_to_end(pfn, last=False)
        self.nr += 1

    def add_tail(self, pfn: int) -> None:
        """list_add_tail (add_to_free_list_tail, move_to_free_list)."""
        if not self.segments or isinstance(self.segments[-1], Run):
            self.segments.append(OrderedDict())
        self.segments[-1][pfn] = None
        self.nr += 1

    def add_run(self, first: int, step: int, count: int, head: bool = False) -> None:
        """``count`` blocks ``first, first + step ...`` added one by one at the tail (or, with
        ``head``, at the head: the list then shows them in reverse order), as one run."""
        if count <= 0:
            return
        if head:
            run = Run(first + (count - 1) * step, -step, count)
            first_seg = self.segments[0] if self.segments else None
            if isinstance(first_seg, Run) and first_seg.step == run.step and run.at(count) == first_seg.first:
                self.segments[0] = Run(run.first, run.step, count + first_seg.count)
            else:
                self.segments.insert(0, run)
        else:
            last = self.segments[-1] if self.segments else None
            if isinstance(last, Run) and last.step == step and last.at(last.count) == first:
                last.count += count
            else:
                self.segments.append(Run(first, step, count))
        self.nr += count

    def first(self) -> int | None:
        """list_first_entry, or None when the list is empty."""
        for seg in self.segments:
            if isinstance(seg, Run):
                return seg.first
            if seg:
                return next(iter(seg))
        return None

    def remove(self, pfn: int) -> bool:
        """list_del of block ``pfn``; False if it is not on this list."""
        for k, seg in enumerate(self.segments):
            if isinstance(seg, Run):
                i = seg.index(pfn)
                if i is None:
                    continue
                pieces = [Run(seg.first, seg.step, i), Run(seg.at(i + 1), seg.step, seg.count - i - 1)]
                self.segments[k : k + 1] = [p for p in pieces if p.count]
            elif pfn in seg:
                del seg[pfn]
                if not seg:
                    del self.segments[k]
            else:
                continue
            self.nr -= 1
            return True
        return False

    def contains(self, pfn: int) -> bool:
        return any(seg.index(pfn) is not None if isinstance(seg, Run) else pfn in seg for seg in self.segments)

    def has_runs(self) -> bool:
        return any(isinstance(seg, Run) for seg in self.segments)

    def take_front_run(self, limit: int) -> Run | None:
        """Remove up to ``limit`` blocks from the list head when it is a run (bulk use)."""
        if not self.segments or not isinstance(self.segments[0], Run) or limit <= 0:
            return None
        run = self.segments[0]
        n = min(limit, run.count)
        if n == run.count:
            self.segments.pop(0)
        else:
            self.segments[0] = Run(run.at(n), run.step, run.count - n)
        self.nr -= n
        return Run(run.first, run.step, n)
