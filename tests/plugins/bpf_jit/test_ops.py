"""load_bpf / unload_bpf as scenario ops: registration, validation, per-op metrics, extra."""

from __future__ import annotations

import pytest

from permalloc import MachineSpec, PolicySpec, SpecError
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import scenarios
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run


def _run(ops, allocator="pack", **spec):
    spec.setdefault("memory", 1 << 30)
    spec.setdefault("cpus", 4)
    return run(Scenario(name="t", ops=ops), MachineSpec(arch="generic", **spec),
               PolicySpec(name="t", bpf_allocator=allocator), strict=True)


def test_ops_and_scenarios_are_registered():
    pm = registry_manager()
    ops = {t.name: t for batch in pm.hook.permalloc_register_ops() for t in batch}
    assert ops["load_bpf"].metrics_kind == "bpf_load"
    assert ops["unload_bpf"].metrics_kind == "bpf_unload"
    assert {"bpf-churn", "containers"} <= set(scenarios(pm))


def test_run_records_per_op_metrics_and_extra():
    ops = [{"op": "load_bpf", "id": f"p{i}", "insns": 120, "kind": "ebpf"} for i in range(4)]
    ops += [{"op": "load_bpf", "id": "s", "insns": 40, "kind": "seccomp"}, {"op": "unload_bpf", "id": "p0"}]
    result = _run(ops)
    assert result.per_op["bpf_load"]["count"] == 5 and result.per_op["bpf_unload"]["count"] == 1
    extra = result.extra["bpf_jit"]
    assert extra["allocator"] == "pack" and extra["loads"] == {"ebpf": 4, "seccomp": 1}
    assert extra["live_programs"] == 4 and extra["packs_created"] == 1  # the boot's pack
    # 3 live eBPF of 120 insns (image 591 B -> 640 B, 10 chunks) + the seccomp filter (40
    # cBPF insns: 378 B -> 448 B, 7 chunks), next to the kernel's ptp classifier (66 insns:
    # 340 B -> 384 B, 6 chunks)
    assert extra["boot_programs"] == 1 and extra["chunks_used"] == 6 + 3 * 10 + 7
    assert not result.problems


def test_kind_defaults_to_ebpf_and_seccomp_is_capped():
    assert _run([{"op": "load_bpf", "id": "p", "insns": 8}]).extra["bpf_jit"]["loads"]["ebpf"] == 1
    with pytest.raises(SpecError, match="BPF_MAXINSNS"):
        _run([{"op": "load_bpf", "id": "p", "insns": 4097, "kind": "seccomp"}])
    with pytest.raises(SpecError, match="kind"):
        _run([{"op": "load_bpf", "id": "p", "insns": 10, "kind": "xdp"}])


def test_bad_ids_name_the_op():
    with pytest.raises(SpecError, match=r"ops\[1\].*already loaded"):
        _run([{"op": "load_bpf", "id": "p", "insns": 8}] * 2)
    with pytest.raises(SpecError, match=r"ops\[0\].*no loaded program"):
        _run([{"op": "unload_bpf", "id": "nope"}])


def test_no_extra_without_bpf():
    result = _run([{"op": "alloc", "id": "a", "size": 4096, "perm": "RX"}, {"op": "free", "id": "a"}])
    assert "bpf_jit" not in result.extra
