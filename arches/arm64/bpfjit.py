"""How big the arm64 JIT's image of a BPF program is (arch/arm64/net/bpf_jit_comp.c).

Every A64 instruction is 4 bytes. An image is the prologue, the body, the epilogue and the
JIT's PLT (build_plt: an alignment NOP when needed, ``ldr x10, #8; br x10`` and its 8-byte
target, PLT_TARGET_SIZE), rounded up to the exception table's alignment (4):
``image_size = round_up(prog_size + PLT_TARGET_SIZE, extable_align)`` (bpf_int_jit_compile,
6.1 and 6.12). Debian: CONFIG_ARM64_PTR_AUTH_KERNEL=y (PACIASP/AUTIASP), no
CONFIG_ARM64_BTI_KERNEL.

* prologue, 6.1 build_prologue: mov x9, lr; nop; paciasp; 5 pushes (fp/lr, r6/r7, r8/r9,
  fp/tcc, fpb/x28); mov fp, sp; (eBPF) movz tcc, #0 -> PROLOGUE_OFFSET 11; sub fpb; sub sp:
  13 for eBPF, 12 for a converted cBPF filter. 6.12 (PROLOGUE_OFFSET = 7: mov, nop,
  paciasp, push fp/lr, mov fp, prepare_bpf_tail_call_cnt's 2), then push_callee_regs of the
  registers used (assumed r6/r7: one pair, as the x86 model assumes rbx/r13), mov fp and sub
  sp when the program has a stack: 10 for eBPF, 8 for a filter.
* epilogue, 6.1 build_epilogue: add sp; 5 pops; mov x0; autiasp; ret = 9. 6.12: add sp (with
  a stack); pop_callee_regs (1); pop xzr/ptr; pop fp/lr; mov x0; autiasp; ret = 7 (6 without).
* body: A64 instructions per eBPF instruction class of build_insn, weighted by the same
  instruction mix as the x86 model (plugins/bpf_jit/sizes.py EBPF_MIX, an assumption of that
  model): ALU/MOV/LDX/STX 1 each, ST imm 2 (mov tmp + str), conditional jumps 2 (cmp + b.cond),
  JA 1, ld_imm64 3 for its two slots (a kernel pointer: movn + 2 movk, emit_a64_mov_i64),
  calls 5 (emit_call: emit_addr_mov_i64's movn + 2 movk, blr; then mov r0, x0 -- BPF images
  live in vmalloc, out of BL reach of the kernel, so 6.12's direct-call case does not
  apply), a later EXIT 1 (b to the epilogue).
* a seccomp filter is sized as its converted eBPF program (bpf_convert_filter, the same
  converter as the x86 model) with that mix: the arm64 model does not lay the filter out
  instruction by instruction.

bpf_jit_binary_alloc (6.1) and bpf_jit_binary_pack_alloc (6.12) are passed sizeof(u64) as
the alignment.
"""

from __future__ import annotations

from permalloc.plugins.bpf_jit import sizes

A64_INSN = 4  # AARCH64_INSN_SIZE
PLT_TARGET_SIZE = 8  # sizeof(u64): struct bpf_plt {u32 insn_ldr; u32 insn_br; u64 target}
PLT_TARGET_OFFSET = 8  # offsetof(struct bpf_plt, target)
PLT_INSNS = 2  # build_plt: ldr + br (plus an alignment nop when the target would be misaligned)
EXTABLE_ALIGN = 4  # __alignof__(struct exception_table_entry): {int insn, fixup; short type, data}
ALIGN = 8  # sizeof(u64), the alignment argument of both allocators

A64_INSNS: dict[str, float] = {
    "alu_reg": 1, "alu_imm": 1, "mov_imm": 1, "ld_imm64": 1.5, "ldx": 1, "stx": 1,
    "st_imm": 2, "jmp_cond": 2, "ja": 1, "call": 5, "exit": 1,
}  # fmt: skip
assert set(A64_INSNS) == set(sizes.EBPF_MIX)
#: A64 instructions per 100 eBPF instructions of the mix
A64_PER_100 = round(sum(sizes.EBPF_MIX[c] * A64_INSNS[c] for c in sizes.EBPF_MIX))

PROLOGUE = {"6.1": {"ebpf": 13, "classic": 12}, "6.12": {"ebpf": 10, "classic": 8}}
EPILOGUE = {"6.1": {"ebpf": 9, "classic": 9}, "6.12": {"ebpf": 7, "classic": 6}}


def image_bytes(kind: str, insns: int, version: str) -> int:
    """image_size of bpf_int_jit_compile for a program of ``kind`` with ``insns`` instructions."""
    if kind == "seccomp":
        body_insns = sizes.seccomp_image(insns).ebpf_insns
        frame = "classic"
    elif kind == "ebpf":
        body_insns = insns
        frame = "ebpf"
    else:
        raise ValueError(f"unknown program kind {kind!r}; known: {', '.join(sizes.KINDS)}")
    body = -(-body_insns * A64_PER_100 // 100)
    idx = PROLOGUE[version][frame] + body + EPILOGUE[version][frame]
    idx += (idx + PLT_TARGET_OFFSET // A64_INSN) % 2  # build_plt: make sure the target is 64-bit aligned
    idx += PLT_INSNS
    prog_size = A64_INSN * idx
    return -(-(prog_size + PLT_TARGET_SIZE) // EXTABLE_ALIGN) * EXTABLE_ALIGN
