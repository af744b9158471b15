"""The built-in scenarios: the churn size distribution, determinism, and the container mix."""

from __future__ import annotations

from permalloc import MachineSpec, PolicySpec
from permalloc.plugins.bpf_jit import scenarios as sc
from permalloc.plugins.bpf_jit.sizes import ebpf_image_bytes
from permalloc.run.simulation import run


def _loads(scenario):
    return [op for op in scenario.ops if op["op"] == "load_bpf"]


def test_churn_sizes_match_the_fleet_figures():
    sizes = sc.churn_image_sizes(sc.CHURN_LOADS)
    assert abs(sum(b < 500 for b in sizes) / len(sizes) - 0.50) < 0.03  # about half under 500 B
    assert abs(sum(b < 2048 for b in sizes) / len(sizes) - 0.75) < 0.03  # three quarters under 2 KiB
    # and the images that the loads' instruction counts give (6.1 size model)
    images = [ebpf_image_bytes(op["insns"]) for op in _loads(sc.build_churn())]
    assert abs(sum(b < 500 for b in images) / len(images) - 0.50) < 0.03
    assert abs(sum(b < 2048 for b in images) / len(images) - 0.75) < 0.03


def test_churn_is_deterministic_and_balanced():
    a, b = sc.build_churn(), sc.build_churn()
    assert a.ops == b.ops
    loads = _loads(a)
    assert len(loads) == sc.CHURN_LOADS
    seen = set()
    for op in a.ops:
        if op["op"] == "load_bpf":
            seen.add(op["id"])
        elif op["op"] == "unload_bpf":
            assert op["id"] in seen  # every unload follows its load
            seen.remove(op["id"])
    assert not seen  # and every program is unloaded


def test_containers_mix():
    s = sc.build_containers()
    loads = _loads(s)
    assert len(loads) == sc.CONTAINER_STARTS * 3
    assert all(op["kind"] == "seccomp" for op in loads)
    assert sorted({op["insns"] for op in loads}) == [40, 120, 952]
    assert sum(op["op"] == "unload_bpf" for op in s.ops) == len(loads)


def test_containers_run_under_the_pack():
    # x86: bpf_arch_text_copy is text_poke_copy, a local flush only
    result = run(sc.build_containers(), MachineSpec(arch="x86", memory=2 << 30),
                 PolicySpec(name="t", bpf_allocator="pack"))
    extra = result.extra["bpf_jit"]
    assert extra["loads"]["seccomp"] == 600 and extra["live_programs"] == 0
    assert extra["int3_fills"] == 600  # every filter's chunks are invalidated at exit
    assert result.per_op["bpf_load"]["shootdowns"]["median"] == 0
    assert not result.problems
