"""Jump labels: staged table writes, COMING patches for keys off their initializer, key flips."""

from __future__ import annotations

import math

import pytest

from permalloc import Machine, MachineSpec, PolicySpec, SpecError
from permalloc.plugins.jump_label import flip, state, tracing
from permalloc.plugins.jump_label import keys as km
from permalloc.plugins.module_loader import loader as loader_of
from permalloc.plugins.module_loader.patching import vmlinux
from permalloc.plugins.module_loader.scenarios import boot_ops


def _cost(m: Machine, fn):
    before = dict(m.metrics.counters)
    result = fn()
    return result, {k: m.metrics.counters[k] - before[k] for k in ("sync_ipis", "text_pokes", "shootdowns")}


def test_text_poke_queue_batches_like_the_kernel():
    """text_poke_queue/finish: 300 ascending sites -> 2 batches (256 + 44) -> 6 sync rounds."""
    m = Machine(MachineSpec(arch="x86", memory="1G", cpus=4), PolicySpec(name="t"))
    base = m.ranges["kernel_image"].start
    assert m.text.queue([(base + 16 * i, 5) for i in range(300)]) == 2
    assert m.metrics.counters["sync_ipis"] == 6 and m.metrics.counters["text_pokes"] == 900
    # an address below the last queued one flushes early (tp_order_fail)
    assert m.text.queue([(base + 64, 2), (base + 32, 2), (base + 96, 2)]) == 2


def _keys(m: Machine) -> km.VmlinuxKeys:
    return state(m).model


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_vmlinux_key_model_is_the_real_table(patch_machine, kernel):
    m = patch_machine(kernel=kernel)
    vk, tables = _keys(m), vmlinux(m).tables
    assert vk.count == tables.jump_keys > 2000
    assert sum(vk.runtime) == tables.jump_entries - tables.jump_entries_init
    assert sum(vk.init_true) == tables.jump_keys_true == sum(vk.init_true_of("", i) for i in range(vk.count))
    off = [i for i in range(vk.count) if not vk.boot_enabled(i)]
    assert list(vk.disabled) == off and 0.9 * vk.count < len(off) < vk.count
    assert [vk.parse_key(f"off:{i}") for i in range(3)] == [("", i) for i in off[:3]]


def test_key_split_follows_the_pc64_relocations(patch_machine, load):
    m = patch_machine()
    kvm_intel, xfs = load(m, "kvm_intel", "xfs")
    assert km.key_split(xfs.info) == (1, {}, 651, 0)
    assert km.key_split(kvm_intel.info) == (9, {"kvm": 98}, 651, 1)


def test_table_writes_are_staged(patch_machine, load, reports):
    m = patch_machine()
    (xfs,) = load(m, "xfs")
    n = xfs.info.table("__jump_table")
    r = reports(xfs, "jump_label", "finalize")
    # jump_label_sort_entries (16 n) + jump_entry_set_init on every key word (8 n)
    assert (r["writes"], r["bytes"], r["entries"]) == (1 + n, 24 * n, n)
    assert r["text_pokes"] == r["sync_ipis"] == 0


def _kernel_key_of(m, name):
    entries, _ = km.module_entries(_keys(m), loader_of(m).workload.modules[name], {})
    return next(e.key for e in entries if e.key[0] == "")


def test_coming_patches_only_keys_off_their_initializer(patch_machine, load, reports):
    m = patch_machine()
    key = _kernel_key_of(m, "ext4")
    load(m, "jbd2", "mbcache", "crc16")
    k = state(m).key(key)
    flip(m, f"k{key[1]}", not k.enabled)  # now off its initializer (or back on it)
    (ext4,) = load(m, "ext4")
    r = reports(ext4, "jump_label", "coming")
    patched_keys = [ident for ident in state(m).modules["ext4"].by_key if ident[0] != "ext4"
                    and state(m).key(ident).enabled != state(m).key(ident).init_true]
    assert r["keys_patched"] == len(patched_keys)
    assert (key in patched_keys) == (k.enabled != k.init_true)
    assert r["sync_ipis"] == 3 * r["batches"] and r["batches"] >= r["keys_patched"]
    assert r["shootdowns"] == 0 and r["keys_linked"] == len([i for i in state(m).modules["ext4"].by_key if i[0] != "ext4"])


def test_flip_cost_scales_with_sites_and_batches(patch_machine):
    m = patch_machine()
    runtime = _keys(m).runtime
    big = runtime.index(max(runtime))  # the key with the most sites in the real table
    n = runtime[big]
    assert n > 256  # several batches
    name = f"k{big}"
    enable = not state(m).key(("", big)).enabled
    patched, cost = _cost(m, lambda: flip(m, name, enable))
    assert patched == n
    assert cost["sync_ipis"] == 3 * math.ceil(n / 256)
    assert cost["text_pokes"] == 3 * n and cost["shootdowns"] == 0
    assert _cost(m, lambda: flip(m, name, enable)) == (0, {"sync_ipis": 0, "text_pokes": 0, "shootdowns": 0})
    one = runtime.index(1)
    patched, cost = _cost(m, lambda: flip(m, f"k{one}", not state(m).key(("", one)).enabled))
    assert (patched, cost["sync_ipis"]) == (1, 3)


def test_modules_add_a_batch_each_and_going_unlinks(patch_machine, load):
    m = patch_machine()
    load(m, "xfs", "ext4")
    key = _kernel_key_of(m, "ext4")
    users = state(m).key(key).users
    assert "ext4" in users
    module_sites = sum(len(state(m).modules[u].by_key[key]) for u in users)
    vmlinux_sites = _keys(m).runtime[key[1]]
    patched, cost = _cost(m, lambda: flip(m, f"k{key[1]}", not state(m).key(key).enabled))
    assert patched == module_sites + vmlinux_sites
    assert cost["sync_ipis"] >= 3 * (len(users) + (1 if vmlinux_sites else 0))
    loader_of(m).unload("ext4")
    assert "ext4" not in state(m).key(key).users and "ext4" not in state(m).modules


def test_module_keys_and_names(patch_machine, load):
    m = patch_machine()
    load(m, "xfs")
    own = state(m).modules["xfs"].own_keys
    own_entries = km.key_split(loader_of(m).loaded["xfs"].info)[2]
    vk = _keys(m)
    assert own == math.ceil(own_entries * vk.count / vmlinux(m).tables.jump_entries) > 0
    patched = flip(m, "xfs:k0", True)
    assert patched == len(state(m).modules["xfs"].by_key.get(("xfs", 0), []))
    with pytest.raises(SpecError, match=f"vmlinux has keys k0..k{vk.count - 1}"):
        flip(m, f"k{vk.count}", True)
    with pytest.raises(SpecError, match="keys disabled after boot"):
        flip(m, f"off:{vk.count}", True)
    loader_of(m).unload("xfs")
    with pytest.raises(SpecError, match="not loaded"):
        flip(m, "xfs:k0", False)
    assert flip(m, "some_key_name", True) in range(0, 2000)  # any other name hashes to a vmlinux key


def test_tracing_scenario_is_documented():
    sc = tracing()
    ops = [op["op"] for op in sc.ops]
    assert ops.count("load_module") == len(boot_ops()) and ops.count("ftrace") == 2 and ops.count("static_key") == 100
    keys = [op for op in sc.ops if op["op"] == "static_key"]
    assert [k["enable"] for k in keys] == [True] * 50 + [False] * 50
    # named off:N, resolved against the machine's own vmlinux when the op runs
    assert [k["key"] for k in keys] == [f"off:{i}" for i in range(50)] * 2
