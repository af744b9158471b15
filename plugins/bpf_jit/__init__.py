"""The BPF JIT consumer: how the kernel allocates and fills JIT images.

Models kernel/bpf/core.c (``bpf_jit_binary_alloc``, ``bpf_jit_binary_pack_alloc``,
``bpf_prog_pack_alloc``/``free``), the x86-64 JIT (arch/x86/net/bpf_jit_comp.c), 6.12's
execmem, the RFC's conversion of the JITs to ``perm_alloc``, and classic-BPF seccomp
filters (``bpf_convert_filter``, net/core/filter.c). See docs/bpf-jit.md.

* :mod:`.sizes` -- the JIT image size model (x86-64 bytes per instruction class, prologue,
  epilogue; the cBPF converter) and the header/alignment/random-hole arithmetic;
* :mod:`.pack` -- ``bpf_prog_pack``;
* :mod:`.allocators` -- ``per-program``, ``pack`` and ``perm-alloc``, chosen by
  ``policy.bpf_allocator`` (an unknown name is a :class:`~permalloc.PermallocError` that
  lists the known ones);
* :mod:`.ops` -- the ops ``load_bpf`` / ``unload_bpf`` (per-op kinds ``bpf_load`` /
  ``bpf_unload``);
* :mod:`.scenarios` -- ``bpf-churn`` and ``containers``.

Per-machine state lives in ``machine.state("bpf_jit", ...)``. The result carries
``extra["bpf_jit"]``: loads, live programs, image bytes, the allocator's accounting (for
the pack: packs created/freed/live, chunks used, int3 fills) and the direct map before
(at machine start) and now. At teardown every program still loaded is unloaded, so that
the invariants plugin (``trylast``) sees no leak of ours.
"""

from __future__ import annotations

from typing import Any

from permalloc import Machine, hookimpl
from permalloc.plugins.module_loader.patching import x86_tables
from permalloc.run.scenario import OpType, ScenarioSource

from .ops import OP_TYPES, has_jit, load_program, state, unload_program
from .scenarios import SCENARIOS
from .sizes import X86_BINARY_ALIGN, X86_PACK_ALIGN, image_size

__version__ = "1.0"


def _directmap(machine: Machine) -> dict[str, int]:
    out = dict(machine.directmap.meminfo())
    out["splits_1g"] = machine.directmap.splits_1g
    out["splits_2m"] = machine.directmap.splits_2m
    return out


@hookimpl(trylast=True)
def permalloc_bpf_jit_image(machine: Machine, kind: str, insns: int) -> tuple[int, int, int] | None:
    """The x86-64 JIT's sizes (:mod:`.sizes`), for the arches that run x86-64 kernels."""
    if not x86_tables(machine.arch):
        return None
    return image_size(kind, insns, machine.kernel).image, X86_BINARY_ALIGN, X86_PACK_ALIGN


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return list(OP_TYPES)


@hookimpl
def permalloc_register_scenarios() -> list[ScenarioSource]:
    return list(SCENARIOS)


# net/core/ptp_classifier.c: ptp_classifier_init (from sock_init, a core initcall) builds its
# 66-instruction classic BPF filter with bpf_prog_create, which the JIT compiles at boot and
# the kernel keeps for good: on 6.1+ it is what creates the first bpf_prog_pack. (The image is
# sized as 66 eBPF instructions, a lower bound of the converted program; any size that fits a
# pack chunk range has the same memory effect.)
PTP_CLASSIFIER_INSNS = 66


@hookimpl
def permalloc_machine_boot(machine: Machine, stage: str) -> None:
    if stage == "initcalls" and has_jit(machine):
        st = state(machine)
        prog = load_program(machine, "ptp_classifier", PTP_CLASSIFIER_INSNS)
        st.boot_programs.append(prog.id)
        st.loads = dict.fromkeys(st.loads, 0)  # the run counts its own loads only
        st.image_bytes = 0


@hookimpl
def permalloc_measurement_op(event: str, row: dict[str, str]) -> dict[str, Any] | None:
    """bpf_load: a BPF_PROG_LOAD of ``insns`` instructions whose fd is ``rc``; bpf_unload: the
    close of that fd (``object`` is ``fd<N>``)."""
    if event == "bpf_load":
        return {"op": "load_bpf", "id": f"fd{row['rc']}", "insns": int(row["insns"])}
    if event == "bpf_unload":
        return {"op": "unload_bpf", "id": row["object"]}
    return None


@hookimpl
def permalloc_machine_start(machine: Machine) -> None:
    st = state(machine)
    st.baseline = _directmap(machine)
    st.boot_report = st.allocator.report() if st.allocator is not None else {}


@hookimpl
def permalloc_result_extra(machine: Machine) -> dict[str, Any] | None:
    st = state(machine)
    if st.allocator is None or not (sum(st.loads.values()) or st.unloads):
        return None  # the run loaded no BPF program
    return {
        "bpf_jit": {
            "allocator": st.allocator.name,
            "kernel": machine.policy.kernel,
            "loads": dict(st.loads),
            "unloads": st.unloads,
            "live_programs": len(st.programs) - len(st.boot_programs),
            "boot_programs": len(st.boot_programs),
            "image_bytes_loaded": st.image_bytes,
            "live_image_bytes": sum(p.image.image for k, p in st.programs.items() if k not in st.boot_programs),
            "live_alloc_bytes": sum(p.size for k, p in st.programs.items() if k not in st.boot_programs),
            **st.allocator.report(),
            "directmap_before": st.baseline,
            "directmap_after": _directmap(machine),
        }
    }


@hookimpl
def permalloc_machine_release(machine: Machine) -> None:
    """Unload what the run still has loaded (the kernel keeps what it JITed at boot)."""
    st = state(machine)
    for prog_id in list(st.programs):
        if prog_id not in st.boot_programs:
            unload_program(machine, prog_id)


@hookimpl
def permalloc_machine_teardown(machine: Machine) -> list[str]:
    """Report allocator state that did not return to zero."""
    st = state(machine)
    if st.allocator is None:
        return []
    report = st.allocator.report()
    problems = []
    for key in ("packs_live", "oversized_live", "areas_live"):
        if report.get(key, 0) > st.boot_report.get(key, 0):
            problems.append(f"bpf_jit: {report[key]} {key.replace('_live', '')} still allocated after unloading every program")
    return problems
