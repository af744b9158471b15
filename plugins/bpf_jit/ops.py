"""The scenario ops ``load_bpf`` and ``unload_bpf`` and the load/unload entry points.

``{"op": "load_bpf", "id": "p1", "insns": 120, "kind": "ebpf"}`` JITs a program of
``insns`` instructions (``kind`` ``ebpf``, or ``seccomp`` for a classic BPF seccomp filter,
whose ``insns`` counts cBPF instructions before ``bpf_convert_filter``) and places its image
with the policy's ``bpf_allocator``; ``{"op": "unload_bpf", "id": "p1"}`` frees it (the last
reference dropped: ``bpf_jit_free``, or ``seccomp_filter_free`` -> ``bpf_prog_destroy``,
kernel/seccomp.c 6.1 l.518-521). Their per-op metrics are the kinds ``bpf_load`` and
``bpf_unload``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from permalloc import SpecError
from permalloc.run.scenario import Op, OpType

from .allocators import BpfJitState, Program
from .sizes import BPF_COMPLEXITY_LIMIT_INSNS, BPF_MAXINSNS, KINDS, ImageSize

if TYPE_CHECKING:
    from permalloc import Machine
    from permalloc.run.simulation import RunContext


class LoadBpfOp(Op):
    op: Literal["load_bpf"]
    id: str
    insns: int = Field(gt=0, le=BPF_COMPLEXITY_LIMIT_INSNS, description="instructions as loaded")
    kind: Literal["ebpf", "seccomp"] = "ebpf"

    @model_validator(mode="after")
    def _seccomp_limit(self) -> LoadBpfOp:
        # kernel/seccomp.c: seccomp_prepare_filter rejects fprog->len > BPF_MAXINSNS (6.1 l.650)
        if self.kind == "seccomp" and self.insns > BPF_MAXINSNS:
            raise ValueError(f"a seccomp filter has at most {BPF_MAXINSNS} instructions (BPF_MAXINSNS)")
        return self


class UnloadBpfOp(Op):
    op: Literal["unload_bpf"]
    id: str


def state(machine: Machine) -> BpfJitState:
    return machine.state("bpf_jit", BpfJitState)


def jit_image(machine: Machine, kind: str, insns: int) -> ImageSize:
    """The arch's JIT image of a program (permalloc_bpf_jit_image)."""
    if kind not in KINDS:
        raise SpecError(f"load_bpf: unknown program kind {kind!r}; known: {', '.join(KINDS)}")
    found = machine.hook.permalloc_bpf_jit_image(machine=machine, kind=kind, insns=insns)
    if found is None:
        raise SpecError(f"load_bpf: arch {machine.arch.name!r} has no BPF JIT size model (no plugin answers "
                        "permalloc_bpf_jit_image)")
    image, binary_align, pack_align = found
    return ImageSize(kind, insns, insns, image, binary_align, pack_align)


def has_jit(machine: Machine) -> bool:
    """Whether some plugin sizes this arch's JIT images (else, as a kernel without
    CONFIG_BPF_JIT, programs run in the interpreter and take no executable memory)."""
    return machine.hook.permalloc_bpf_jit_image(machine=machine, kind="ebpf", insns=1) is not None


def load_program(machine: Machine, prog_id: str, insns: int, kind: str = "ebpf") -> Program:
    """JIT a program and place its image with the policy's allocator."""
    st = state(machine)
    if prog_id in st.programs:
        raise SpecError(f"load_bpf: id {prog_id!r} is already loaded")
    allocator = st.get_allocator(machine)
    prog = Program(prog_id, kind, jit_image(machine, kind, insns))
    allocator.load(prog)
    st.programs[prog_id] = prog
    st.loads[kind] += 1
    st.image_bytes += prog.image.image
    return prog


def unload_program(machine: Machine, prog_id: str) -> None:
    """Free a loaded program's image."""
    st = state(machine)
    prog = st.programs.pop(prog_id, None)
    if prog is None:
        raise SpecError(f"unload_bpf: no loaded program with id {prog_id!r}")
    st.get_allocator(machine).unload(prog)
    st.unloads += 1


def _load(ctx: RunContext, op: LoadBpfOp) -> None:
    load_program(ctx.machine, op.id, op.insns, op.kind)


def _unload(ctx: RunContext, op: UnloadBpfOp) -> None:
    unload_program(ctx.machine, op.id)


OP_TYPES = (
    OpType("load_bpf", LoadBpfOp, _load, kind="bpf_load",
           description="JIT a BPF program (ebpf, or a classic seccomp filter) and load its image"),
    OpType("unload_bpf", UnloadBpfOp, _unload, kind="bpf_unload", description="free a BPF program's JIT image"),
)  # fmt: skip
