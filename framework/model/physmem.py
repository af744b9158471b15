"""Physical memory: a sparse page allocator over PFNs grouped in 2 MiB pageblocks.

Only pageblocks that the simulation touched are represented, so the cost does not grow with
the amount of simulated RAM. The ``fragmentation`` knob of the spec stands for the rest of
the kernel: that share of pageblocks already holds unmovable pages (so it cannot give an
order-9 block), and an order-0 request comes from another pageblock than the previous one
with that probability — the "random pages from the page allocator" of the RFC cover letter.
"""

from __future__ import annotations

import random

from permalloc.errors import OutOfMemory
from permalloc.model.pages import PAGE_SIZE, PAGES_PER_PMD

_FULL = (1 << PAGES_PER_PMD) - 1
# A pre-used pageblock keeps its lower half for the rest of the kernel (an assumption of
# the model, documented in docs/machine-model.md): only the upper half serves our requests.
_FOREIGN = (1 << (PAGES_PER_PMD // 2)) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
_RANDOM_TRIES = 512


class PhysMem:
    """Order-0 and order-9 allocation from ``total_bytes`` of RAM."""

    def __init__(self, total_bytes: int, fragmentation: float, seed: int) -> None:
        self.npages = total_bytes // PAGE_SIZE
        self.nblocks = self.npages // PAGES_PER_PMD
        if self.nblocks < 2:
            raise OutOfMemory("memory: need at least two 2 MiB pageblocks")
        self.fragmentation = fragmentation
        self._rng = random.Random(seed ^ 0x5EED)
        self._salt = (seed * _GOLDEN + 0x1234567) & _MASK64
        self._threshold = int(fragmentation * (1 << 64))
        self._used: dict[int, int] = {}  # pageblock -> bitmask of pages handed out by us
        self._whole: set[int] = set()  # pageblocks handed out as order-9 blocks
        self._cursor: int | None = None
        self._next_fresh = 0
        self.allocated_pages = 0
        premixed = int(self.nblocks * fragmentation)
        self.capacity = self.nblocks * PAGES_PER_PMD - premixed * (PAGES_PER_PMD // 2)

    def premixed(self, block: int) -> bool:
        """Whether ``block`` already holds pages of the rest of the kernel (seeded hash)."""
        if self._threshold == 0:
            return False
        h = ((block + 1) * _GOLDEN ^ self._salt) & _MASK64
        h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9 & _MASK64
        return (h ^ (h >> 32)) < self._threshold

    def _occupied(self, block: int) -> int:
        return self._used.get(block, 0) | (_FOREIGN if self.premixed(block) else 0)

    def _check_capacity(self, pages: int) -> None:
        if self.allocated_pages + pages > self.capacity:
            raise OutOfMemory(
                f"memory: out of physical pages ({self.allocated_pages} of {self.capacity} in use)"
            )

    def _fresh_block(self) -> int:
        """A pageblock for sequential order-0 filling (lowest free one, like a fresh free list)."""
        for _ in range(self.nblocks):
            block = self._next_fresh
            self._next_fresh = (self._next_fresh + 1) % self.nblocks
            if block not in self._whole and self._occupied(block) != _FULL:
                return block
        raise OutOfMemory("memory: no pageblock with free pages")

    def _random_block(self) -> int:
        for _ in range(_RANDOM_TRIES):
            block = self._rng.randrange(self.nblocks)
            if block not in self._whole and self._occupied(block) != _FULL:
                return block
        return self._fresh_block()

    def alloc_page(self) -> int:
        """One order-0 page; returns its PFN."""
        self._check_capacity(1)
        cursor = self._cursor
        if (
            cursor is None
            or cursor in self._whole
            or self._occupied(cursor) == _FULL
            or (self._threshold and self._rng.random() < self.fragmentation)
        ):
            cursor = self._random_block() if self._threshold else self._fresh_block()
            self._cursor = cursor
        occupied = self._occupied(cursor)
        free_bits = ~occupied & _FULL
        bit = (free_bits & -free_bits).bit_length() - 1
        self._used[cursor] = self._used.get(cursor, 0) | (1 << bit)
        self.allocated_pages += 1
        return cursor * PAGES_PER_PMD + bit

    def alloc_block(self) -> int | None:
        """One order-9 (2 MiB) block; returns its first PFN, or None when none is free."""
        if self.allocated_pages + PAGES_PER_PMD > self.capacity:
            return None
        for _ in range(_RANDOM_TRIES):
            block = self._rng.randrange(self.nblocks)
            if block not in self._whole and block not in self._used and not self.premixed(block):
                self._whole.add(block)
                self.allocated_pages += PAGES_PER_PMD
                return block * PAGES_PER_PMD
        return None

    def free_page(self, pfn: int) -> None:
        block, bit = divmod(pfn, PAGES_PER_PMD)
        if block in self._whole:
            raise ValueError(f"pfn {pfn:#x} belongs to an order-9 block; free the block")
        mask = self._used.get(block, 0)
        if not mask >> bit & 1:
            raise ValueError(f"double free of pfn {pfn:#x}")
        mask &= ~(1 << bit)
        if mask:
            self._used[block] = mask
        else:
            del self._used[block]
        self.allocated_pages -= 1

    def free_block(self, pfn: int) -> None:
        block = pfn // PAGES_PER_PMD
        if pfn % PAGES_PER_PMD or block not in self._whole:
            raise ValueError(f"pfn {pfn:#x} is not an allocated order-9 block")
        self._whole.remove(block)
        self.allocated_pages -= PAGES_PER_PMD
