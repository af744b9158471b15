"""ftrace: NOP5 per mcount site at load, batched enable/disable at run time, records released."""

from __future__ import annotations

import math

from permalloc import Machine, MachineSpec, PolicySpec
from permalloc.plugins.ftrace import record_groups, state, toggle
from permalloc.plugins.module_loader.patching import vmlinux


def _cost(m: Machine, fn):
    before = dict(m.metrics.counters)
    result = fn()
    return result, {k: m.metrics.counters[k] - before[k] for k in ("sync_ipis", "text_pokes", "local_flushes", "shootdowns")}


def test_module_init_nops_every_site_and_sorts_the_table(patch_machine, load, reports):
    m = patch_machine()
    (xfs,) = load(m, "xfs")
    n = xfs.info.table("__mcount_loc")
    assert n == 2647
    r = reports(xfs, "ftrace", "finalize")
    # ftrace_process_locs: one sort of __mcount_loc (8 n bytes) + one 5-byte NOP per site
    assert (r["writes"], r["bytes"], r["sites"]) == (n + 1, 8 * n + 5 * n, n)
    assert r["text_pokes"] == r["sync_ipis"] == r["local_flushes"] == 0  # text_poke_early: memcpy
    # ftrace_allocate_records: 11 pages of records -> groups of order 3, 1 and 0 (8, 2, 1 pages),
    # one __get_free_pages each
    assert record_groups(n) == [3, 1, 0] and r["record_pages"] == 11
    assert reports(xfs, "ftrace", "coming") == {}  # tracing is off


def test_enable_cost_scales_with_sites_and_batches(patch_machine, load):
    m = patch_machine()
    (fuse,) = load(m, "fuse")
    n = fuse.info.table("__mcount_loc")
    assert n == 293  # > TP_VEC_MAX: two batches
    patched, cost = _cost(m, lambda: toggle(m, True))
    batches = math.ceil(n / 256)
    assert patched == n and batches == 2
    # 3 sync rounds per batch; ftrace_update_ftrace_func twice (2 text_poke_bp each) and one
    # ftrace_sync_ipi round
    assert cost["sync_ipis"] == 3 * batches + 4 * 3 + 1
    assert cost["text_pokes"] == 3 * n + 4 * 3 and cost["local_flushes"] == cost["text_pokes"]
    assert cost["shootdowns"] == 0
    assert _cost(m, lambda: toggle(m, True))[0] == 0  # already on: nothing to do
    patched, cost = _cost(m, lambda: toggle(m, False))
    assert patched == n and cost["sync_ipis"] == 3 * batches + 13


def test_more_modules_more_batches(patch_machine, load):
    m = patch_machine()
    mods = load(m, "fuse", "xfs", "crc16")
    total = sum(lm.info.table("__mcount_loc") for lm in mods)
    patched, cost = _cost(m, lambda: toggle(m, True))
    assert patched == total
    # queued in load order; a new batch at each 256 entries and whenever the address goes down
    assert cost["sync_ipis"] >= 3 * math.ceil(total / 256) + 13
    assert cost["text_pokes"] == 3 * total + 12


def test_module_loaded_while_tracing_is_patched_when_it_comes(patch_machine, load, reports):
    m = patch_machine()
    toggle(m, True)
    (fuse,) = load(m, "fuse")
    r = reports(fuse, "ftrace", "coming")
    assert (r["writes"], r["batches"], r["sync_ipis"], r["text_pokes"]) == (293, 2, 6, 3 * 293)


def test_vmlinux_sites_only_when_asked(patch_machine, load):
    m = patch_machine()
    load(m, "crc16")  # no mcount sites
    assert toggle(m, True) == 0
    toggle(m, False)
    patched, cost = _cost(m, lambda: toggle(m, True, vmlinux=True))
    runtime = vmlinux(m).tables.mcount_loc_runtime  # the records left after boot
    assert patched == runtime == vmlinux(m).tables.mcount_loc - vmlinux(m).tables.mcount_loc_init > 30000
    assert cost["sync_ipis"] == 3 * math.ceil(patched / 256) + 13
    assert toggle(m, False) == runtime  # the disable undoes what was enabled


def test_going_releases_the_records(patch_machine, load):
    from permalloc.plugins.module_loader import loader as loader_of

    m = patch_machine()
    load(m, "xfs")
    held = sum(1 << order for r in state(m).modules.values() for _, order in r.blocks)
    assert held >= 11
    seen = []
    m.trace = seen.append
    loader_of(m).unload("xfs")
    loader_of(m).unload("libcrc32c")
    assert state(m).modules == {}
    # ftrace_release_mod: free_pages of every record group, no text written
    assert sum(e.n for e in seen if e.kind == "page_free" and e.source == "ftrace_release_mod") == held
    assert not any(e.kind in ("text_poke", "sync_ipi") for e in seen)
    assert toggle(m, True) == 0


def test_kernel_image_text_can_be_poked():
    m = Machine(MachineSpec(arch="x86", memory="1G", cpus=4), PolicySpec(name="t"))
    seen = []
    m.trace = seen.append
    addr = m.ranges["kernel_image"].start + 0x1234
    m.text.live([(addr, 5)])
    pokes = [e for e in seen if e.kind == "text_poke"]
    assert len(pokes) == 3 and all(not e.pfns for e in pokes)
    assert m.metrics.counters["sync_ipis"] == 3
