"""The static keys of the model: vmlinux's real ones, each module's own, and who uses which.

The workload counts a module's ``__jump_table`` entries but has no key pointers, so key
identity is a documented model (an assumption), built from real data where there is some:

* **vmlinux keys**: Debian 6.1.0-54-amd64's vmlinux (scripts/extract-vmlinux of
  boot/vmlinuz-6.1.0-54-amd64; the image is stripped, so ``__start___jump_table`` is not a
  symbol: the table is the run of 6288 16-byte ``struct jump_entry`` inside .rodata —
  the ro_after_init part — whose ``code`` and ``target`` point into kernel text and whose
  ``key`` points into kernel data; the code bytes are all NOP2/NOP5/JMP8/JMP32). It has
  2820 distinct keys, 69 of them initialised true (JUMP_TYPE_TRUE), 171 entries in
  .init.text (skipped after boot by jump_label_can_update), 3398 two-byte and 2890
  five-byte sites. VMLINUX_KEY_HISTOGRAM is the number of keys per count of run-time
  (non-init) entries. Key ``kN`` (0 <= N < 2820) gets its count from that histogram through
  a fixed shuffle; its sites are placed in vmlinux text by a hash of (N, site).
* **which key a module entry uses**: the key field of each entry carries an
  ``R_X86_64_PC64`` relocation from the ro_after_init class (JUMP_TABLE_ENTRY:
  ``.quad key - .``), and the workload counts those by target: ``kernel`` (a vmlinux key),
  ``module:<m>`` (a key of module m) or ``self:*`` (the module's own key). Entries are
  split by those counts in table order; an entry on a vmlinux key uses key
  ``hash(module, index) mod 2820``; a module defines ``ceil(own * 2820 / 6288)`` keys (the
  vmlinux ratio of entries per key) and its own or another module's entries pick one of
  them by hash. Entries whose ``code`` is in init text are counted the same way
  (``R_X86_64_PC32`` from ro_after_init to ``self:init_text``, two per entry).
* **key state**: a key is "enabled" or not; it starts equal to its initializer, except for
  the vmlinux keys that boot flipped (CPU features, command line, sysctls): an assumed
  BOOT_FLIPPED_PERMILLE of them, picked by hash. A module's keys start at their initializer.
* **site size**: 2 or 5 bytes by hash, with vmlinux's share of 2-byte sites.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any

from permalloc import SpecError
from permalloc.plugins.module_loader.patching import VMLINUX_TEXT_SIZE, stable_hash
from permalloc.plugins.module_loader.workload import MemClass

VMLINUX_JUMP_ENTRIES = 6288
VMLINUX_JUMP_INIT_ENTRIES = 171
VMLINUX_JUMP_KEYS = 2820
VMLINUX_KEYS_INIT_TRUE = 69
VMLINUX_JUMP_2BYTE = 3398  # 3260 NOP2 (66 90) + 138 JMP8 (eb); the rest NOP5 / JMP32
# (run-time entries of a key, number of keys with that many)
VMLINUX_KEY_HISTOGRAM: tuple[tuple[int, int], ...] = (
    (0, 144), (1, 2384), (2, 126), (3, 43), (4, 30), (5, 18), (6, 16), (7, 8), (8, 4), (9, 4),
    (10, 5), (11, 1), (12, 1), (13, 2), (14, 3), (15, 2), (16, 1), (17, 1), (18, 3), (20, 3),
    (21, 1), (22, 1), (23, 1), (24, 2), (25, 1), (26, 1), (28, 2), (38, 1), (49, 1), (64, 1),
    (70, 1), (76, 1), (81, 1), (147, 1), (151, 1), (185, 1), (200, 1), (222, 1), (1100, 1),
)  # fmt: skip

BOOT_FLIPPED_PERMILLE = 50  # assumption: 5% of vmlinux keys differ from their initializer after boot
SHUFFLE_SEED = 0x6A756D70  # "jump"

_KEY_NAME = re.compile(r"^(?:(?P<module>[A-Za-z0-9_-]+):)?k(?P<index>\d+)$")


def _vmlinux_counts() -> list[int]:
    counts = [count for count, keys in VMLINUX_KEY_HISTOGRAM for _ in range(keys)]
    random.Random(SHUFFLE_SEED).shuffle(counts)
    return counts


VMLINUX_COUNTS: tuple[int, ...] = tuple(_vmlinux_counts())
assert len(VMLINUX_COUNTS) == VMLINUX_JUMP_KEYS
assert sum(VMLINUX_COUNTS) == VMLINUX_JUMP_ENTRIES - VMLINUX_JUMP_INIT_ENTRIES


def init_true(owner: str, index: int) -> bool:
    """DEFINE_STATIC_KEY_TRUE: vmlinux's share of keys initialised true, by hash."""
    return stable_hash("init_true", owner, index) % VMLINUX_JUMP_KEYS < VMLINUX_KEYS_INIT_TRUE


def boot_enabled(index: int) -> bool:
    """A vmlinux key's state after boot: its initializer, flipped for BOOT_FLIPPED_PERMILLE of keys."""
    flipped = stable_hash("boot_flipped", index) % 1000 < BOOT_FLIPPED_PERMILLE
    return init_true("", index) != flipped


def boot_disabled_keys(count: int) -> list[str]:
    """The first ``count`` vmlinux keys that are disabled after boot (for scenarios)."""
    names = [f"k{i}" for i in range(VMLINUX_JUMP_KEYS) if not boot_enabled(i)]
    return names[:count]


def site_len(*parts: object) -> int:
    return 2 if stable_hash("len", *parts) % VMLINUX_JUMP_ENTRIES < VMLINUX_JUMP_2BYTE else 5


def own_key_count(own_entries: int) -> int:
    return math.ceil(own_entries * VMLINUX_JUMP_KEYS / VMLINUX_JUMP_ENTRIES) if own_entries else 0


@dataclass
class Key:
    """A static key: its owner ("" for vmlinux), state and the modules linked to it."""

    owner: str
    index: int
    init_true: bool
    enabled: bool
    users: list[str] = field(default_factory=list)  # static_key_mod list: newest first

    @property
    def name(self) -> str:
        return f"{self.owner}:k{self.index}" if self.owner else f"k{self.index}"

    @property
    def ident(self) -> tuple[str, int]:
        return self.owner, self.index


def vmlinux_sites(base: int, index: int) -> list[tuple[int, int]]:
    """The run-time sites of vmlinux key ``index``: ascending (address, length)."""
    count = VMLINUX_COUNTS[index]
    sites = []
    for j in range(count):
        length = site_len("vmlinux", index, j)
        sites.append((base + stable_hash("site", index, j) % (VMLINUX_TEXT_SIZE - length), length))
    return sorted(sites)


@dataclass
class Entry:
    """One ``__jump_table`` entry of a module: its key, whether its code is init text, its size."""

    key: tuple[str, int]
    init: bool
    length: int


def key_split(info: Any) -> tuple[int, dict[str, int], int, int]:
    """``(vmlinux-key entries, {module: entries}, own entries, init entries)`` from relocations."""
    total = info.table("__jump_table")
    kernel = 0
    others: dict[str, int] = {}
    init_relocs = 0
    for reloc in info.relocations:
        if reloc.source_class != MemClass.RO_AFTER_INIT:
            continue
        if reloc.type == "R_X86_64_PC64":
            if reloc.target_kind == "kernel":
                kernel += reloc.count
            elif reloc.target_kind == "module":
                name = str(reloc.target_name).replace("-", "_")
                others[name] = others.get(name, 0) + reloc.count
        elif reloc.type == "R_X86_64_PC32" and reloc.target == "self:init_text":
            init_relocs += reloc.count
    kernel = min(kernel, total)
    left = total - kernel
    for name in sorted(others):
        others[name] = min(others[name], left)
        left -= others[name]
    return kernel, {k: v for k, v in others.items() if v}, left, min(total, init_relocs // 2)


def module_entries(info: Any, own_keys_of: dict[str, int]) -> tuple[list[Entry], int]:
    """The entries of a module in table order, and how many keys the module defines.

    ``own_keys_of`` gives the key count of the modules already loaded; an entry on the key of
    a module that is not known falls back to a vmlinux key.
    """
    name = info.name
    kernel, others, own, n_init = key_split(info)
    n_own_keys = own_key_count(own)
    total = info.table("__jump_table")
    order = sorted(range(total), key=lambda j: stable_hash("init", name, j))
    init = set(order[:n_init])
    owners = ["" for _ in range(kernel)]
    for other in sorted(others):
        owners += [other] * others[other]
    owners += [name] * own
    entries = []
    for j, owner in enumerate(owners):
        nkeys = n_own_keys if owner == name else own_keys_of.get(owner, 0)
        if owner and nkeys:
            key = (owner, stable_hash("key", name, j) % nkeys)
        else:
            key = ("", stable_hash("key", name, j) % VMLINUX_JUMP_KEYS)
        entries.append(Entry(key, j in init, site_len(name, j)))
    return entries, n_own_keys


def parse_key(name: str) -> tuple[str, int]:
    """``kN`` -> vmlinux key N; ``module:kN`` -> key N of that module; other names hash to a vmlinux key."""
    match = _KEY_NAME.match(name)
    if match is None:
        return "", stable_hash("name", name) % VMLINUX_JUMP_KEYS
    owner = (match["module"] or "").replace("-", "_")
    index = int(match["index"])
    if not owner and index >= VMLINUX_JUMP_KEYS:
        raise SpecError(f"static key {name!r}: vmlinux has keys k0..k{VMLINUX_JUMP_KEYS - 1}")
    return owner, index
