"""Loading real modules of the bundled workload."""

from __future__ import annotations

import pytest

from permalloc import (
    ArchInfo,
    ContractError,
    Machine,
    MachineSpec,
    PermallocError,
    PolicySpec,
    SpecError,
    VRange,
    hookimpl,
)
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugins.module_loader import loader as loader_of
from permalloc.plugins.module_loader.workload import MemClass
from permalloc.run.scenario import Scenario
from permalloc.run.simulation import run
from permalloc.run.workloads import resolve_workload


def _machine(arch, layout="contiguous", kernel="6.1", plugins=(), **kw):
    policy = PolicySpec(name="t", module_layout=layout, kernel=kernel, **kw)
    return Machine(MachineSpec(arch=arch, memory="2G", cpus=4), policy, plugins=plugins)


def _load(machine, name):
    from contextlib import nullcontext

    return loader_of(machine).load(name, lambda kind: nullcontext())


def test_dependencies_load_first_in_topological_order(arch):
    m = _machine(arch)
    order = _load(m, "ext4")
    assert order[-1] == "ext4" and set(order[:-1]) == {"crc16", "mbcache", "jbd2"}
    assert _load(m, "ext4") == []  # already loaded: nothing to do
    with pytest.raises(ContractError, match="jbd2 is in use by ext4"):
        loader_of(m).unload("jbd2")


def test_unknown_module_suggests_close_names(arch):
    with pytest.raises(SpecError, match=r"module 'ext5' is not in workload debian-6.1.0-57-amd64 .*did you mean ext4"):
        _load(_machine(arch), "ext5")


def test_6_1_contiguous_runs_the_exact_set_memory_sequence(arch, set_memory_spy):
    spy = set_memory_spy
    m = _machine(arch, plugins=[spy])
    _load(m, "crc16")  # no dependencies
    names = spy.names
    # complete_formation: module_enable_ro (4), module_enable_nx (5), module_enable_x (2);
    # do_init_module: module_enable_ro(mod, true) (4 + ro_after_init)
    assert names == ["set_memory_ro"] * 4 + ["set_memory_nx"] * 5 + ["set_memory_x"] * 2 + ["set_memory_ro"] * 5


def test_6_12_module_memory_sequence(arch, set_memory_spy):
    spy = set_memory_spy
    m = _machine(arch, layout="module-memory", kernel="6.12", plugins=[spy])
    _load(m, "crc16")
    lm = loader_of(m).loaded["crc16"]
    names = spy.names
    types = [r.name for r in lm.regions]
    n_ro = sum(t in ("rodata", "init_rodata") for t in types)
    n_nx = sum(t in ("data", "rodata", "ro_after_init", "init_data", "init_rodata") for t in types)
    n_rox = sum(t in ("text", "init_text") for t in types)
    n_after = sum(t in ("rodata", "init_rodata", "ro_after_init") for t in types)
    # module_enable_rodata_ro, module_enable_data_nx, module_enable_text_rox; after init
    # module_enable_rodata_ro(mod, true); types without memory are skipped
    assert names == ["set_memory_ro"] * n_ro + ["set_memory_nx"] * n_nx + ["set_memory_rox"] * n_rox + ["set_memory_ro"] * n_after
    assert not any(r.init for r in lm.regions if r.name in lm.allocs)  # init freed


def test_contract_mode_makes_each_region_live_at_its_permission(arch):
    m = _machine(arch, layout="rfc")
    _load(m, "jbd2")
    lm = loader_of(m).loaded["jbd2"]
    assert lm.mode == "contract"
    perms = {name: str(alloc.perm) for name, alloc in lm.allocs.items()}
    assert perms["text"] == "RX" and perms["rodata"] == "R" and perms["data"] == "RW"
    assert perms.get("ro_after_init", "R") == "R"  # changed after init
    assert m.metrics.counters["wx_violations"] == 0


@pytest.mark.parametrize("layout", ["contiguous", "rfc", "module-memory"])
def test_load_unload_leaks_nothing(arch, layout):
    scenario = Scenario(name="s", ops=[
        {"op": "load_module", "module": "xfs"},
        {"op": "load_module", "module": "nf_tables"},
        {"op": "unload_module", "module": "xfs"},
    ])
    result = run(scenario, MachineSpec(arch=arch, memory="2G", cpus=4), PolicySpec(name="t", module_layout=layout), strict=True)
    assert result.problems == []
    assert result.per_op["module_load"]["count"] == result.per_op["module_init_free"]["count"]
    assert result.per_op["module_unload"]["count"] == 1
    extra = result.extra["module_loader"]
    assert {row["name"] for row in extra["modules"]} >= {"nf_tables", "libcrc32c", "nfnetlink"}
    assert "xfs" not in {row["name"] for row in extra["modules"]}


def test_proc_modules_size_follows_the_modeled_kernel(arch):
    m = _machine(arch)
    _load(m, "crc16")
    lm = loader_of(m).loaded["crc16"]
    core = next(r for r in lm.regions if r.name == "core")
    assert loader_of(m).proc_size(lm) == core.size  # 6.1: core_layout.size once live
    m12 = _machine(arch, layout="module-memory", kernel="6.12")
    _load(m12, "crc16")
    lm12 = loader_of(m12).loaded["crc16"]
    assert loader_of(m12).proc_size(lm12) == sum(r.size for r in lm12.regions if not r.init)


class FarArch:
    """An arch whose module area lies 3 GiB below the kernel image: out of PC32 reach."""

    name = "fararch"

    @hookimpl
    def permalloc_arch_describe(self, spec):
        image = 0xFFFFFFFF81000000
        return ArchInfo(
            name="far",
            page_offset=0xFFFF888000000000,
            ranges={
                "kernel_image": VRange(name="kernel_image", start=image, end=image + (64 << 20)),
                "module": VRange(name="module", start=image - (3 << 30), end=image - (2 << 30) - (512 << 20)),
                "vmalloc": VRange(name="vmalloc", start=0xFFFFC90000000000, end=0xFFFFE90000000000),
            },
            reloc_reach={"R_X86_64_PC32": (1 << 31) - 1, "R_X86_64_PLT32": (1 << 31) - 1},
        )


def test_text_3_gib_from_the_kernel_is_flagged():
    m = Machine(MachineSpec(arch="far", memory="1G"), PolicySpec(name="t"), plugins=[FarArch()])
    _load(m, "crc16")
    assert m.metrics.counters["reloc_out_of_range"] > 0
    strict = Machine(MachineSpec(arch="far", memory="1G"), PolicySpec(name="t"), plugins=[FarArch()], strict=True)
    with pytest.raises(PermallocError, match=r"module crc16: \d+ R_X86_64_(PLT32|PC32) relocation\(s\) from crc16:core to kernel out of reach \(distance \+0xc"):
        _load(strict, "crc16")


def test_dependency_cycle_is_named(monkeypatch, arch):
    m = _machine(arch)
    w = loader_of(m).workload
    real = w.modules["crc16"]
    fake = {"crc16": real.model_copy(update={"depends": ["mbcache"]}),
            "mbcache": w.modules["mbcache"].model_copy(update={"depends": ["crc16"]})}

    class Fake:
        modules = fake
        package, version = "fake", "0"

    with pytest.raises(SpecError, match="dependency cycle"):
        loader_of(m).load_order(loader_of(m).source, Fake(), "crc16")


def test_address_lookup(arch):
    m = _machine(arch)
    _load(m, "crc16")
    lm = loader_of(m).loaded["crc16"]
    assert lm.address(MemClass.TEXT) == lm.allocs["core"].addr
    assert lm.address(MemClass.INIT_TEXT) is None  # freed after init


def test_run_modules_view_and_ingest_errors_through_the_cli(tmp_path, capsys, arch):
    from permalloc.cli import main

    scenario = tmp_path / "s.json"
    scenario.write_text('{"name": "s", "ops": [{"op": "load_module", "module": "ext4"}]}')
    assert main(["run", "-s", str(scenario), "--arch", arch, "--memory", "1G", "--modules"]) == 0
    out = capsys.readouterr().out
    assert "/proc/modules (4 modules)" in out and "jbd2" in out and "Live" in out
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"not an elf at all")
    assert main(["ingest", str(bad), "-o", str(tmp_path / "w.json.gz"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: not an ELF file" in err and "Traceback" not in err


class Arm64Arch:
    """An arch that models aarch64 kernels: x86-64 workloads must not run on it."""

    name = "arm64test"

    @hookimpl
    def permalloc_arch_describe(self, spec):
        return ArchInfo(
            name="arm64test", machine="aarch64", page_offset=0xFFFF000000000000,
            ranges={
                "module": VRange(name="module", start=0xFFFF800000000000, end=0xFFFF800080000000),
                "vmalloc": VRange(name="vmalloc", start=0xFFFF800080000000, end=0xFFFFFBFFFE000000),
            },
        )


def test_a_workload_of_another_machine_is_refused():
    spec = MachineSpec(arch="arm64test", memory="1G")
    source = resolve_workload(registry_manager(), "debian-6.1.0-57-amd64")
    with pytest.raises(PermallocError, match=r"^workload debian-6.1.0-57-amd64 is x86_64, arch 'arm64test' is aarch64$"):
        Machine(spec, PolicySpec(name="t"), plugins=[Arm64Arch()], workload=source)
    # without a workload the loader takes the policy's default, and refuses it the same way
    m = Machine(spec, PolicySpec(name="t"), plugins=[Arm64Arch()])
    with pytest.raises(SpecError, match=r"^workload debian-6.1.0-57-amd64 is x86_64, arch 'arm64test' is aarch64$"):
        _load(m, "crc16")


def test_unload_works_whatever_workload_loaded_the_module(arch):
    """A module loaded from another workload (the op's override) unloads like the others."""
    ops = [{"op": "load_module", "module": "crc16"},
           {"op": "load_module", "module": "mbcache", "workload": "debian-6.12.118-amd64"},
           {"op": "unload_module", "module": "mbcache"}, {"op": "unload_module", "module": "crc16"},
           {"op": "load_module", "module": "mbcache", "workload": "debian-6.12.118-amd64"}]
    result = run(Scenario(name="mix", ops=ops), MachineSpec(arch=arch, memory="2G"), PolicySpec(name="t"))
    assert result.workload == "debian-6.1.0-57-amd64" and result.problems == []
    assert [row["name"] for row in result.extra["module_loader"]["modules"]] == ["mbcache"]
    with pytest.raises(SpecError, match=r"ops\[0\] \(load_module\): module 'fuse' is not in workload "
                       r"debian-6.12.118-amd64"):
        run(Scenario(name="s", ops=[{"op": "load_module", "module": "fuse"}]), MachineSpec(arch=arch, memory="1G"),
            PolicySpec(name="t", kernel="6.12"))


class VeneerArch:
    """x86-64 kernels with a branch reach of 64 KiB that a PLT extends (as arm64's CALL26)."""

    name = "veneertest"

    @hookimpl
    def permalloc_arch_describe(self, spec):
        return ArchInfo(
            name="veneertest", machine="x86_64", page_offset=0xFFFF888000000000,
            ranges={
                "module": VRange(name="module", start=0xFFFFFFFFC0000000, end=0xFFFFFFFFFF000000),
                "vmalloc": VRange(name="vmalloc", start=0xFFFFC90000000000, end=0xFFFFE90000000000),
                "kernel_image": VRange(name="kernel_image", start=0xFFFFFFFF81000000, end=0xFFFFFFFFA0000000),
            },
            reloc_reach={"R_X86_64_PLT32": (1 << 16) - 1, "R_X86_64_PC32": (1 << 31) - 1},
            reloc_plt=frozenset({"R_X86_64_PLT32"}),
        )


def test_branches_out_of_reach_go_through_plts_not_out_of_range():
    m = Machine(MachineSpec(arch="veneertest", memory="1G"), PolicySpec(name="t"), plugins=[VeneerArch()])
    _load(m, "mbcache")  # calls into the kernel image, ~1 GiB away
    report = m.hook.permalloc_result_extra(machine=m)
    loader = next(r["module_loader"] for r in report if r and "module_loader" in r)
    assert loader["plt_relocs"] > 0
    assert loader["reloc_out_of_range"] == 0 and m.metrics.counters["reloc_out_of_range"] == 0


class LifetimeRecorder:
    """Sees every permalloc_alloc first (tryfirst) and passes it on."""

    name = "lifetime-recorder"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange, lifetime):
        if vrange.name == "module":
            self.seen.append(lifetime)


@pytest.mark.parametrize(("layout", "kernel", "arch_of", "extra"), [
    ("contiguous", "6.1", None, {}),  # 6.1: one core and one init allocation
    ("rfc", "5.10", None, {}),  # the RFC: one per class
    ("module-memory", "6.12", None, {}),  # 6.12 module_memory
    ("module-memory", "7.3", "x86", {"rox_cache": True}),  # the ROX cache path
])
def test_core_sections_are_allocated_long_lived_and_init_sections_short_lived(arch, layout, kernel, arch_of, extra):
    recorder = LifetimeRecorder()
    m = _machine(arch_of or arch, layout=layout, kernel=kernel, plugins=[recorder], **extra)
    _load(m, "crc16")  # no dependencies: every module allocation is crc16's
    lm = loader_of(m).loaded["crc16"]
    expected = ["short" if region.name.startswith("init") else "long" for region in lm.regions]
    assert recorder.seen == expected
    assert "long" in expected and "short" in expected
    assert all(lm.allocs[r.name].lifetime == "long" for r in lm.regions if r.name in lm.allocs)  # init ones freed
