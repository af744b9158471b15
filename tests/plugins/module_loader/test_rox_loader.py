"""Module loading with the execmem ROX cache (mode ``rox``): real modules of the workload."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from permalloc import Machine, MachineSpec
from permalloc.model.pages import PAGE_SHIFT, PMD_SIZE
from permalloc.plugin.policies import BUILTIN_POLICIES
from permalloc.plugins.module_loader import loader as loader_of
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run

ROX = next(p for p in BUILTIN_POLICIES if p.name == "rox-cache")
ROX_RESET_PERMS = ROX.model_copy(update={"name": "rox-rp", "options": {"x86.rox_cache_clean": "reset-perms"}})
TEXT = ("text", "init_text")
DATA = ("rodata", "ro_after_init", "data", "init_data", "init_rodata")


def _machine(x86, policy=ROX, plugins=(), strict=True):
    return Machine(MachineSpec(arch=x86, memory="2G", cpus=4), policy, plugins=plugins,
                   strict=strict)


def _load(m, name):
    return loader_of(m).load(name, lambda kind: nullcontext())


def test_xfs_text_comes_from_the_cache_and_goes_live_rox(x86):
    m = _machine(x86)
    assert _load(m, "xfs") == ["libcrc32c", "xfs"]
    lm = loader_of(m).loaded["xfs"]
    assert lm.mode == "rox"
    text = lm.allocs["text"]
    assert text.backend["x86"].kind == "rox" and all("x86" not in lm.allocs[t].backend for t in DATA if t in lm.allocs)
    mapping, index = m.pagetables.lookup(text.addr)
    assert str(mapping.perm(index)) == "RX" and set(mapping.perms) == {5}  # the whole region R+X
    # xfs's 784 KiB of text and libcrc32c's share one 2 MiB region, collapsed again
    assert len({a.addr // PMD_SIZE for a in (text, loader_of(m).loaded["libcrc32c"].allocs["text"])}) == 1
    assert m.gauges()["huge_mappings"] == 1
    assert "init_text" not in lm.allocs  # do_free_init gave it back to the cache
    assert m.metrics.counters["wx_violations"] == 0  # strict: would have raised


def test_rox_mode_runs_upstreams_set_memory_sequence(x86, set_memory_spy):
    spy = set_memory_spy
    m = _machine(x86, plugins=[spy])
    _load(m, "libcrc32c")  # no dependencies
    lm = loader_of(m).loaded["libcrc32c"]
    types = [r.name for r in lm.regions]
    size = {r.name: r.size >> PAGE_SHIFT for r in lm.regions}
    cache = [c for c in spy.calls if c[2] == 512]  # execmem_cache_populate_alloc's set_memory_rox
    calls = [(name, n) for name, _, n in spy.calls if (name, _, n) not in cache]
    expected = []
    for t in types:  # module_memory_alloc: execmem_alloc_rw -> execmem_force_rw, every type
        expected += [("set_memory_nx", size[t]), ("set_memory_rw", size[t])]
    expected += [("set_memory_ro", size[t]) for t in ("rodata", "init_rodata") if t in types]
    expected += [("set_memory_nx", size[t]) for t in ("data", "rodata", "ro_after_init", "init_data",
                                                      "init_rodata") if t in types]
    expected += [("set_memory_rox", size[t]) for t in TEXT if t in types]  # execmem_restore_rox
    expected += [("set_memory_ro", size[t]) for t in ("ro_after_init",) if t in types]
    # do_free_init: execmem_free(init_text) -> __execmem_cache_free; data types are vfree()d
    expected += [("set_memory_nx", size["init_text"]), ("set_memory_rw", size["init_text"]),
                 ("set_memory_rox", size["init_text"])]
    assert len(cache) == 1 and calls == expected


def test_the_region_splits_for_formation_and_collapses_when_it_is_rox_again(x86):
    m = _machine(x86)
    seen = []
    m.trace = seen.append
    _load(m, "libcrc32c")
    sources = [e.source for e in seen if e.kind == "flush_all"]
    # text's execmem_force_rw splits the fresh leaf; init_text is carved from the split PMD.
    # module_enable_text_rox: text's restore finds init_text still RW (no collapse), init_text's
    # collapses. do_free_init: init_text's force_rw splits again, its restore collapses again.
    assert sources.count("set_memory_nx/split_large_page") == 2
    assert sources.count("set_memory_rox/cpa_collapse_large_pages") == 2
    assert m.gauges()["huge_mappings"] == 1


@pytest.mark.parametrize("policy", [ROX_RESET_PERMS, ROX], ids=["reset-perms", "upstream"])
def test_load_unload_leaks_nothing(x86, policy):
    scenario = Scenario(name="s", ops=[
        {"op": "load_module", "module": "xfs"},
        {"op": "load_module", "module": "nf_tables"},
        {"op": "unload_module", "module": "nf_tables"},
        {"op": "unload_module", "module": "xfs"},
    ])
    strict = policy is ROX_RESET_PERMS  # upstream's clean leaves a W+X alias (test_roxcache.py)
    result = run(scenario, MachineSpec(arch=x86, memory="2G", cpus=4), policy, strict=strict)
    assert result.problems == []
    assert result.extra["module_loader"]["mode"] == "rox"
    rox = result.extra["x86"]["rox_cache"]
    assert rox["populates"] >= 1 and rox["allocs"] == rox["frees"] + 2  # core text of libcrc32c, nfnetlink
    assert result.totals["wx_violations"] == 0  # the region is still busy until teardown
