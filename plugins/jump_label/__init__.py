"""Jump labels (static keys): a module's ``__jump_table`` at load, key flips at run time.

Load: kernel/jump_label.c:jump_label_module_notify (6.1 l.771; 6.12 l.827) ->
jump_label_add_module (6.1 l.658; 6.12 l.700) at MODULE_STATE_COMING:

* jump_label_sort_entries sorts the table in place, and jump_entry_set_init writes the
  init bit into every entry's ``key`` word: table writes to ``__jump_table``, which is
  ro_after_init and still writable. Counted as one rewrite of the table (``16 n`` bytes)
  plus one 8-byte write per entry. The kernel does it at COMING on memory that is still RW;
  the model does it on the staged copy at finalize (under the RFC the table is staged; in
  either case these are plain stores, no flush, no IPI).
* No text is written for entries whose key is in its compiled state: x86 6.1/6.12 have no
  load-time NOP pass for modules (arch_jump_label_transform_static is the empty default;
  with HAVE_JUMP_LABEL_HACK objtool already emitted the right NOP/JMP). For each key the
  module does not own, it links a static_key_mod, and **only if the key's state differs from
  its initializer** it runs __jump_label_update(key, ..., init=true): every entry of the
  module on that key goes through arch_jump_label_transform_queue (text_poke_queue, 2 or 5
  bytes, arch/x86/kernel/jump_label.c l.123) and arch_jump_label_transform_apply
  (text_poke_finish): one batch per key (more if it has over 256 entries), 3 sync IPIs each.

Run time, the ``static_key`` op (``{"op": "static_key", "key": "k1", "enable": true}``):
static_key_enable / static_key_disable (6.1 l.194/225) change the state and
jump_label_update (6.1 l.840; 6.12 l.896) patches every entry of the key: with modules
linked, __jump_label_mod_update (6.1 l.633) runs one __jump_label_update, i.e. one
text_poke_finish, per participant (newest module first, the key's owner last); init
entries are skipped once the init text is gone. Setting a key to the state it has does
nothing (0 sites).

Going: jump_label_del_module (6.1 l.720; 6.12 l.772) unlinks the module's static_key_mods;
no text writes.

The key model (which key each entry uses, which keys are enabled) is an assumption built on
the real keys of the workload's vmlinux: see :mod:`.keys`. Key names in ops: ``kN`` is
vmlinux key N, ``module:kN`` key N defined by a loaded module, ``off:N`` the N-th vmlinux
key that is disabled after boot, any other name a vmlinux key chosen by hash.

Also registers the ``tracing`` scenario (see :func:`tracing`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from permalloc import ArchInfo, Machine, SpecError, hookimpl
from permalloc.plugins.module_loader.patching import (
    PatchCost,
    class_bytes,
    section_span,
    spread,
    vmlinux,
    vmlinux_text,
    x86_tables,
)
from permalloc.plugins.module_loader.scenarios import boot_ops
from permalloc.plugins.module_loader.workload import MemClass
from permalloc.run.scenario import Op, OpType, Scenario, ScenarioSource

from . import keys as km

__version__ = "1.0"

JUMP_ENTRY_SIZE = 16  # struct jump_entry {s32 code; s32 target; long key}
JUMP_ENTRY_KEY_WORD = 8  # jump_entry_set_init writes the key word


@dataclass
class ModuleJumps:
    module: Any  # the LoadedModule (its init text is gone once lm.address(INIT_TEXT) is None)
    by_key: dict[tuple[str, int], list[tuple[int, int, bool]]]  # key -> ascending (addr, len, init)
    own_keys: int


@dataclass
class JumpLabelState:
    model: km.VmlinuxKeys  # the keys of the machine's vmlinux
    keys: dict[tuple[str, int], km.Key] = field(default_factory=dict)
    modules: dict[str, ModuleJumps] = field(default_factory=dict)
    flips: int = 0
    sites_patched: int = 0
    batches: int = 0

    def key(self, ident: tuple[str, int]) -> km.Key:
        found = self.keys.get(ident)
        if found is None:
            owner, index = ident
            if owner:
                raise SpecError(f"static key {owner}:k{index}: module {owner} is not loaded or defines fewer keys")
            found = self.keys[ident] = km.Key("", index, self.model.init_true_of("", index),
                                              self.model.boot_enabled(index))
        return found


def state(machine: Machine) -> JumpLabelState:
    return machine.state("jump_label", lambda: JumpLabelState(km.VmlinuxKeys.of(vmlinux(machine))))


@hookimpl
def permalloc_applies(arch: ArchInfo) -> bool:
    return x86_tables(arch)  # its key analysis reads x86 relocations and 2/5-byte jumps (arch/x86/kernel/jump_label.c)


@hookimpl
def permalloc_module_finalize(machine: Machine, module: Any, staging: Any) -> dict[str, Any] | None:
    entries = module.info.table("__jump_table")
    span = section_span(module.info, "__jump_table")
    if not entries or span is None:
        return None
    cost = PatchCost(machine)
    cls, offset, size = span
    staging.store(cls, offset, min(size, entries * JUMP_ENTRY_SIZE), "jump_label_sort_entries")
    staging.store_sites(cls, [offset + j * JUMP_ENTRY_SIZE + 8 for j in range(entries)], JUMP_ENTRY_KEY_WORD,
                        "jump_entry_set_init")
    nbytes = min(size, entries * JUMP_ENTRY_SIZE) + entries * JUMP_ENTRY_KEY_WORD
    return cost.report("jump_label", stage="finalize", writes=1 + entries, bytes=nbytes, entries=entries)


def _place(module: Any, entries: list[km.Entry]) -> dict[tuple[str, int], list[tuple[int, int, bool]]]:
    """Final addresses of the entries: core ones spread over core text, init ones over init text."""
    by_key: dict[tuple[str, int], list[tuple[int, int, bool]]] = defaultdict(list)
    for init in (False, True):
        cls = MemClass.INIT_TEXT if init and module.address(MemClass.INIT_TEXT) is not None else MemClass.TEXT
        chosen = [e for e in entries if e.init == init]
        for entry, offset in zip(chosen, spread(class_bytes(module.info, cls), len(chosen), 5), strict=False):
            by_key[entry.key].append((module.address(cls, offset), entry.length, entry.init))
    return {key: sorted(sites) for key, sites in by_key.items()}


def _update(machine: Machine, sites: list[tuple[int, int, bool]], with_init: bool, source: str) -> tuple[int, int, int]:
    """__jump_label_update for one participant: queue what jump_label_can_update allows, then
    apply (text_poke_finish). Returns (sites, bytes, batches)."""
    todo = [(addr, length) for addr, length, init in sites if with_init or not init]
    if not todo:
        return 0, 0, 0
    return len(todo), sum(length for _, length in todo), machine.text.queue(todo, source=source, wait=True)


@hookimpl
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    if not module.info.table("__jump_table"):
        return None
    st = state(machine)
    cost = PatchCost(machine)
    own_keys_of = {name: mj.own_keys for name, mj in st.modules.items()}
    entries, own = km.module_entries(st.model, module.info, own_keys_of)
    by_key = _place(module, entries)
    st.modules[module.name] = ModuleJumps(module, by_key, own)
    for index in range(own):
        ident = (module.name, index)
        start = st.model.init_true_of(module.name, index)
        st.keys[ident] = km.Key(module.name, index, start, start)
    linked = patched_keys = sites = nbytes = batches = 0
    for ident in sorted(by_key):
        if ident[0] == module.name:
            continue  # static_key_set_entries: the module's own key, in its compiled state
        key = st.key(ident)
        key.users.insert(0, module.name)
        linked += 1
        if key.enabled != key.init_true:
            n, nb, b = _update(machine, by_key[ident], True, "jump_label_add_module/text_poke_queue")
            patched_keys += 1
            sites += n
            nbytes += nb
            batches += b
    return cost.report("jump_label", stage="coming", writes=sites, bytes=nbytes, keys_linked=linked,
                       keys_patched=patched_keys, batches=batches)


@hookimpl
def permalloc_module_going(machine: Machine, module: Any) -> None:
    st = machine.state("jump_label", lambda: None)
    if st is None:
        return  # no module with a jump table came
    mj = st.modules.pop(module.name, None)
    if mj is None:
        return
    for ident in mj.by_key:
        key = st.keys.get(ident)
        if key is not None and module.name in key.users:
            key.users.remove(module.name)
    for index in range(mj.own_keys):
        st.keys.pop((module.name, index), None)


def flip(machine: Machine, name: str, enable: bool) -> int:
    """static_key_enable / static_key_disable; returns the sites patched."""
    st = state(machine)
    key = st.key(st.model.parse_key(name))
    if key.enabled == enable:
        return 0
    key.enabled = enable
    total = batches = 0
    source = f"jump_label_update/{key.name}"
    # __jump_label_mod_update: one __jump_label_update per participant, newest module first,
    # the key's owner last; init entries only while the module's init text exists
    participants = [st.modules[user] for user in key.users]
    if key.owner:
        participants.append(st.modules[key.owner])
    for mj in participants:
        n, _, b = _update(machine, mj.by_key.get(key.ident, []), mj.module.address(MemClass.INIT_TEXT) is not None, source)
        total += n
        batches += b
    if not key.owner:
        sites = st.model.vmlinux_sites(vmlinux_text(machine), vmlinux(machine).text_size, key.index)
        n, _, b = _update(machine, [(addr, length, False) for addr, length in sites], False, source)
        total += n
        batches += b
    st.flips += 1
    st.sites_patched += total
    st.batches += batches
    return total


class StaticKeyOp(Op):
    op: Literal["static_key"]
    key: str = Field(min_length=1, description="kN (vmlinux key N), module:kN, off:N (the N-th vmlinux key that is "
                     "disabled after boot), or any name (hashed to a vmlinux key)")
    enable: bool


def _static_key(ctx: Any, op: StaticKeyOp) -> None:
    results = ctx.machine.hook.permalloc_runtime_patch(machine=ctx.machine, kind="static_key", params=op.model_dump())
    if all(result is None for result in results):
        raise SpecError("static_key: no plugin patches static keys")


@hookimpl
def permalloc_runtime_patch(machine: Machine, kind: str, params: dict[str, Any]) -> int | None:
    if kind != "static_key":
        return None
    return flip(machine, str(params["key"]), bool(params["enable"]))


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return [
        OpType("static_key", StaticKeyOp, _static_key, kind="runtime_patch",
               description="enable/disable a static key: patch its sites in vmlinux and the loaded modules "
               "in text_poke_bp batches"),
    ]


TRACING_KEYS = 50


def tracing() -> Scenario:
    """Boot set, ftrace on then off (module sites), then 50 keys disabled at boot enabled, then disabled.

    The keys are named ``off:N``, so that each run takes the keys of its own kernel."""
    names = [f"off:{i}" for i in range(TRACING_KEYS)]
    ops: list[dict[str, Any]] = boot_ops()
    ops += [{"op": "ftrace", "enable": True}, {"op": "ftrace", "enable": False}]
    ops += [{"op": "static_key", "key": name, "enable": True} for name in names]
    ops += [{"op": "static_key", "key": name, "enable": False} for name in names]
    return Scenario(
        name="tracing",
        description="load the boot modules, enable then disable ftrace on their sites, "
        f"then flip {TRACING_KEYS} vmlinux static keys that are off after boot on, then off again (100 flips)",
        ops=ops,
    )


@hookimpl
def permalloc_register_scenarios() -> list[ScenarioSource]:
    return [ScenarioSource("tracing", tracing().description, tracing)]


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    st = machine.state("jump_label", lambda: None)
    if st is None:
        return None
    return {"jump_label": {
        "vmlinux_keys": st.model.count, "module_keys": sum(mj.own_keys for mj in st.modules.values()),
        "linked": sum(len(k.users) for k in st.keys.values()), "flips": st.flips,
        "sites_patched": st.sites_patched, "batches": st.batches,
    }}
