"""The static keys of the model: vmlinux's real ones, each module's own, and who uses which.

Module workloads count a module's ``__jump_table`` entries but keep no key pointers, so key
identity is a documented model (an assumption), built from real data where there is some:

* **vmlinux keys**: the workload's vmlinux (``VmlinuxInfo.jump_keys``, read by ingest from
  the kernel image: see :mod:`permalloc.plugins.module_loader.vmlinux`) lists every key of
  ``__jump_table`` in key address order with its run-time entries, its init-text entries
  (skipped after boot by jump_label_can_update) and whether it is initialised true
  (JUMP_TYPE_TRUE). Key ``kN`` is the N-th of them; its sites are placed in vmlinux text by
  a hash of (N, site).
* **which key a module entry uses**: the key field of each entry carries an
  ``R_X86_64_PC64`` relocation from the ro_after_init class (JUMP_TABLE_ENTRY:
  ``.quad key - .``), and the workload counts those by target: ``kernel`` (a vmlinux key),
  ``module:<m>`` (a key of module m) or ``self:*`` (the module's own key). Entries are
  split by those counts in table order; an entry on a vmlinux key uses key
  ``hash(module, index) mod keys``; a module defines ``ceil(own * keys / entries)`` keys
  (vmlinux's ratio of entries per key) and its own or another module's entries pick one of
  them by hash. Entries whose ``code`` is in init text are counted the same way
  (``R_X86_64_PC32`` from ro_after_init to ``self:init_text``, two per entry).
* **key state**: a key is "enabled" or not; it starts equal to its initializer, except for
  the vmlinux keys that boot flipped (CPU features, command line, sysctls): an assumed
  BOOT_FLIPPED_PERMILLE of them, picked by hash. A module's keys start at their initializer,
  initialised true with vmlinux's share of true keys, by hash.
* **site size**: 2 or 5 bytes by hash, with vmlinux's share of 2-byte sites.

Key names (the ``static_key`` op): ``kN`` is vmlinux key N, ``module:kN`` key N of a loaded
module, ``off:N`` the N-th vmlinux key that is disabled after boot (so that a scenario names
keys whatever kernel it runs on), any other name a vmlinux key chosen by hash.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from permalloc import SpecError
from permalloc.plugins.module_loader.patching import stable_hash
from permalloc.plugins.module_loader.vmlinux import VmlinuxInfo
from permalloc.plugins.module_loader.workload import MemClass

BOOT_FLIPPED_PERMILLE = 50  # assumption: 5% of vmlinux keys differ from their initializer after boot

_KEY_NAME = re.compile(r"^(?:(?P<module>[A-Za-z0-9_-]+):)?k(?P<index>\d+)$")
_OFF_NAME = re.compile(r"^off:(?P<index>\d+)$")


@dataclass(frozen=True)
class VmlinuxKeys:
    """The jump table of one vmlinux, as the key model uses it."""

    runtime: tuple[int, ...]  # run-time entries of key N
    init_true: tuple[bool, ...]  # key N is initialised true
    entries: int  # all __jump_table entries
    two_byte: int  # of those, 2-byte sites
    keys_true: int
    disabled: tuple[int, ...] = ()  # the keys disabled after boot, in key order (set by ``of``)

    @classmethod
    def of(cls, vmlinux: VmlinuxInfo) -> VmlinuxKeys:
        rows = vmlinux.jump_keys
        tables = vmlinux.tables
        if not rows or not tables.jump_entries:
            raise SpecError(f"vmlinux {vmlinux.kernel_release}: no __jump_table in the workload")
        keys = cls(tuple(r for r, _, _ in rows), tuple(t for _, _, t in rows), tables.jump_entries,
                   tables.jump_entries_2byte, tables.jump_keys_true)
        return replace(keys, disabled=tuple(i for i in range(keys.count) if not keys.boot_enabled(i)))

    @property
    def count(self) -> int:
        return len(self.runtime)

    def init_true_of(self, owner: str, index: int) -> bool:
        """Initialised true: vmlinux's keys as the image says; a module's by hash, with vmlinux's share."""
        if not owner:
            return self.init_true[index]
        return stable_hash("init_true", owner, index) % self.count < self.keys_true

    def boot_enabled(self, index: int) -> bool:
        """A vmlinux key's state after boot: its initializer, flipped for BOOT_FLIPPED_PERMILLE of keys."""
        flipped = stable_hash("boot_flipped", index) % 1000 < BOOT_FLIPPED_PERMILLE
        return self.init_true[index] != flipped

    def site_len(self, *parts: object) -> int:
        return 2 if stable_hash("len", *parts) % self.entries < self.two_byte else 5

    def own_key_count(self, own_entries: int) -> int:
        return math.ceil(own_entries * self.count / self.entries) if own_entries else 0

    def vmlinux_sites(self, base: int, text_size: int, index: int) -> list[tuple[int, int]]:
        """The run-time sites of vmlinux key ``index``: ascending (address, length)."""
        sites = []
        for j in range(self.runtime[index]):
            length = self.site_len("vmlinux", index, j)
            sites.append((base + stable_hash("site", index, j) % (text_size - length), length))
        return sorted(sites)

    def parse_key(self, name: str) -> tuple[str, int]:
        """``kN``, ``module:kN``, ``off:N`` (see the module doc); other names hash to a vmlinux key."""
        off = _OFF_NAME.match(name)
        if off is not None:
            index = int(off["index"])
            if index >= len(self.disabled):
                raise SpecError(f"static key {name!r}: vmlinux has {len(self.disabled)} keys disabled after boot")
            return "", self.disabled[index]
        match = _KEY_NAME.match(name)
        if match is None:
            return "", stable_hash("name", name) % self.count
        owner = (match["module"] or "").replace("-", "_")
        index = int(match["index"])
        if not owner and index >= self.count:
            raise SpecError(f"static key {name!r}: vmlinux has keys k0..k{self.count - 1}")
        return owner, index


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


def module_entries(keys: VmlinuxKeys, info: Any, own_keys_of: dict[str, int]) -> tuple[list[Entry], int]:
    """The entries of a module in table order, and how many keys the module defines.

    ``own_keys_of`` gives the key count of the modules already loaded; an entry on the key of
    a module that is not known falls back to a vmlinux key.
    """
    name = info.name
    kernel, others, own, n_init = key_split(info)
    n_own_keys = keys.own_key_count(own)
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
            key = ("", stable_hash("key", name, j) % keys.count)
        entries.append(Entry(key, j in init, keys.site_len(name, j)))
    return entries, n_own_keys
