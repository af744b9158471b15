"""How big a JIT image is, and how much memory the BPF core asks for it.

Line numbers cite the Debian trees at /work/kernel/6.1 (6.1.192) and /work/kernel/6.12
(6.12.117); ``jit`` is arch/x86/net/bpf_jit_comp.c, ``core`` kernel/bpf/core.c, ``filter``
net/core/filter.c. docs/bpf-jit.md explains the model with the same citations.

1. **x86-64 image of an eBPF program** (``ebpf_image_bytes``): prologue + epilogue, which
   are read off ``emit_prologue`` / the first ``BPF_EXIT``, plus the instruction count
   times a weighted mean of bytes per instruction class (``X86_INSN_BYTES``, each class's
   byte count read off its ``do_jit`` case). The weights (``EBPF_MIX``) are an
   **assumption**: a typical compiled program, not measured here.

   * prologue (jit 6.1 ``emit_prologue`` l.344-372): nop5 for the trampoline (l.353, 5 B),
     ``xor eax,eax``/nop2 (l.357/359, 2 B; 6.12 l.510/513: 3 B), ``push rbp`` (l.361, 1),
     ``mov rbp,rsp`` (l.362, 3), ``sub rsp,imm32`` when the program has a stack (l.369,
     7), then ``push_callee_regs`` (l.309: rbx 1 B, r13/r14/r15 2 B each; assumed rbx+r13
     = 3 B). ENDBR is 0 B: Debian's 6.1 config has ``# CONFIG_X86_KERNEL_IBT is not set``
     (assumed for 6.12 too, whose config is not in the tree).
   * epilogue (jit 6.1 l.1819-1821): ``pop_callee_regs`` (3 B) + ``leave`` (1) +
     ``emit_return`` (l.486: ``ret; int3`` = 2 B with CONFIG_SLS=y; a CPU that wants the
     return thunk gets a 5-byte ``jmp __x86_return_thunk`` instead, not modelled).

2. **Classic BPF (seccomp) filters** (``seccomp_image``): the cBPF program is converted as
   ``bpf_convert_filter`` does (filter 6.1 l.570; 6.12 l.576) and each resulting eBPF
   instruction is sized as the x86 JIT emits it, with short/long jumps resolved by passes
   over the image as ``bpf_int_jit_compile`` does (jit 6.1 l.2511, ``MAX_PASSES`` 20). As
   the filter itself is not known from a count, ``libseccomp_filter(n)`` builds one of
   ``n`` instructions with the shape libseccomp gives (a chain of ``jeq #nr`` with the
   allow ``ret`` after each block): see docs/bpf-jit.md for the Docker default profile,
   compiled here with libseccomp 2.5.4 into 952 cBPF instructions (972 eBPF, 11132 B).

3. **Allocation sizes**: ``bpf_jit_binary_alloc`` (core 6.1 l.1088; 6.12 l.1139) asks for
   ``round_up(proglen + sizeof(hdr) + 128, PAGE_SIZE)`` and starts the image at a random
   offset below ``min(size - (proglen + hdr), PAGE_SIZE - hdr)``;
   ``bpf_jit_binary_pack_alloc`` (core 6.1 l.1143; 6.12 l.1194) asks for
   ``round_up(proglen + sizeof(hdr) + 16, 64)`` with a hole below ``64 - hdr``.
   ``sizeof(struct bpf_binary_header)`` is 8 (include/linux/filter.h 6.1 l.552-557: a u32
   and an 8-aligned flexible array).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from permalloc.model.pages import PAGE_SIZE, align_up

Kind = Literal["ebpf", "seccomp"]
KINDS: tuple[str, ...] = ("ebpf", "seccomp")

# include/linux/filter.h (6.1 l.552-557): struct bpf_binary_header { u32 size; u8 image[]
# __aligned(8); } -> sizeof == 8.
BPF_BINARY_HEADER = 8
BPF_IMAGE_ALIGNMENT = 8  # filter.h 6.1 l.552
BPF_PROG_CHUNK_SIZE = 64  # core 6.1 l.842-843: BPF_PROG_CHUNK_SHIFT 6
BINARY_ALLOC_HOLE = 128  # core 6.1 l.1098-1102: "allow at least 128 extra bytes"
PACK_ALLOC_HOLE = 16  # core 6.1 l.1156-1157: "add 16 bytes for a random section"
# The x86 JIT passes __alignof__(struct exception_table_entry) to the pack allocator
# (jit 6.1 l.2547): struct { int insn, fixup, data; } (arch/x86/include/asm/extable.h l.23).
X86_PACK_ALIGN = 4
# Before the pack (5.17 and older) the x86 JIT asked bpf_jit_binary_alloc for alignment 1.
X86_BINARY_ALIGN = 1

BPF_MAXINSNS = 4096  # include/uapi/linux/bpf_common.h l.54; seccomp_prepare_filter checks it
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000  # include/linux/bpf.h l.1492; bpf_prog_load's limit

# -- x86-64 bytes per eBPF instruction class (jit, 6.1 line numbers) ------------------------
X86_INSN_BYTES: dict[str, int] = {
    "alu_reg": 3,  # l.1048: REX.W + opcode + ModRM (maybe_emit_mod + EMIT2)
    "alu_imm": 4,  # l.1079-1114: REX.W 83 /x ib (imm8); 6-7 B for imm32
    "mov_imm": 5,  # emit_mov_imm32 l.669: mov r32, imm32 (B8+r id); 2-3 B for 0, 7 sign-extended
    "ld_imm64": 5,  # emit_mov_imm64 l.709: movabs = 10 B for the two instruction slots
    "ldx": 4,  # emit_ldx l.798 + emit_insn_suffix l.750: REX.W 8B ModRM disp8
    "stx": 4,  # emit_stx l.828: REX.W 89 ModRM disp8
    "st_imm": 8,  # l.1353: REX.W C7 ModRM disp8 imm32
    "jmp_cond": 7,  # l.1607-1705: cmp imm8 (4) + jcc rel8 (2) or rel32 (6); one in four far
    "ja": 3,  # l.1724-1790: jmp rel8 (2) or rel32 (5)
    "call": 5,  # emit_call l.390: E8 rel32
    "exit": 3,  # l.1802-1806: a second BPF_EXIT is a jmp to the epilogue (2 or 5 B)
}
# Share of instruction slots per class, in percent: an ASSUMPTION (a typical clang-compiled
# networking/tracing program), not measured; docs/bpf-jit.md says how to replace it.
EBPF_MIX: dict[str, int] = {
    "alu_reg": 20, "alu_imm": 12, "mov_imm": 10, "ld_imm64": 6, "ldx": 17, "stx": 10,
    "st_imm": 3, "jmp_cond": 14, "ja": 2, "call": 5, "exit": 1,
}  # fmt: skip
assert sum(EBPF_MIX.values()) == 100
# Bytes per 100 eBPF instructions: 452, i.e. 4.52 B per instruction.
EBPF_BYTES_PER_100 = sum(EBPF_MIX[c] * X86_INSN_BYTES[c] for c in EBPF_MIX)

NOP5 = 5  # trampoline patch site, jit 6.1 l.353 (X86_PATCH_SIZE)
PUSH_RBP_MOV_RBP_RSP = 1 + 3  # jit 6.1 l.361-362
SUB_RSP_IMM32 = 7  # jit 6.1 l.369, when stack_depth != 0
CALLEE_REGS_RBX_R13 = 1 + 2  # push_callee_regs, jit 6.1 l.309-322 (assumed: R6 and R7 used)
LEAVE_RET_INT3 = 1 + 2  # jit 6.1 l.1820 leave; emit_return l.493-495 ret + int3 (CONFIG_SLS=y)


def tail_call_nop(kernel: tuple[int, int]) -> int:
    """``xor eax,eax`` / nop2 in 6.1 (jit l.357-359); ``xor rax,rax`` / nop3 in 6.12 (l.510-513)."""
    return 3 if kernel >= (6, 12) else 2


def prologue_bytes(kernel: tuple[int, int], classic: bool, stack: bool) -> int:
    """emit_prologue + push_callee_regs; a converted cBPF program skips the tail-call slot."""
    size = NOP5 + PUSH_RBP_MOV_RBP_RSP + CALLEE_REGS_RBX_R13
    if not classic:
        size += tail_call_nop(kernel)
    if stack:
        size += SUB_RSP_IMM32
    return size


EPILOGUE_BYTES = CALLEE_REGS_RBX_R13 + LEAVE_RET_INT3  # pop_callee_regs + leave + ret/int3


def ebpf_image_bytes(insns: int, kernel: tuple[int, int] = (6, 1)) -> int:
    """x86-64 JIT image (``jited_len``) of an eBPF program of ``insns`` instruction slots."""
    if insns <= 0:
        raise ValueError("insns must be positive")
    body = -(-insns * EBPF_BYTES_PER_100 // 100)
    return prologue_bytes(kernel, classic=False, stack=True) + body + EPILOGUE_BYTES


def ebpf_insns_for_bytes(image: float, kernel: tuple[int, int] = (6, 1)) -> int:
    """The smallest instruction count whose modelled image is at least ``image`` bytes."""
    fixed = prologue_bytes(kernel, classic=False, stack=True) + EPILOGUE_BYTES
    body = int(image) - fixed  # need ceil(insns * 4.52) >= body, i.e. insns * 4.52 > body - 1
    insns = (body - 1) * 100 // EBPF_BYTES_PER_100 + 1 if body > 0 else 1
    return max(1, min(BPF_COMPLEXITY_LIMIT_INSNS, insns))


# -- classic BPF: the converter and the x86 sizes of what it emits --------------------------
# cBPF opcodes (include/uapi/linux/filter.h / bpf_common.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, ABS, IMM, MEM = 0x00, 0x20, 0x00, 0x60
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
AND = 0x50
AUDIT_ARCH_X86_64 = 0xC000003E  # include/uapi/linux/audit.h
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class CInsn:
    """One cBPF instruction (struct sock_filter)."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


@dataclass(frozen=True)
class EInsn:
    """One converted eBPF instruction: x86 bytes without its jump, and its jump target.

    ``target`` is a cBPF index (resolved through the converter's ``addrs``); ``jump`` is
    ``"jcc"``, ``"ja"`` or ``""``; ``exit`` marks BPF_EXIT.
    """

    base: int
    jump: str = ""
    target: int = -1
    exit: bool = False


def _s32(k: int) -> int:
    return k - (1 << 32) if k & 0x80000000 else k


def _imm8(v: int) -> bool:
    return -128 <= v <= 127


def convert(prog: list[CInsn]) -> tuple[list[EInsn], list[int]]:
    """bpf_convert_filter for the instructions seccomp allows; returns eBPF insns and addrs.

    filter 6.1 l.570-900 (6.12 l.576): a 3-instruction prologue (l.598-610: ``A ^= A``,
    ``X ^= X``, ``R6 = R1``), then per cBPF instruction: loads and ALU map 1:1 (seccomp's
    ``LD|W|ABS`` became ``LDX|W|ABS`` in seccomp_check_filter, kernel/seccomp.c 6.1 l.285,
    and converts to one ``LDX_MEM``, filter l.847-850); a conditional jump is one
    instruction when ``jf == 0`` (l.720-725) or, for JEQ/JGT/JGE, when ``jt == 0`` (l.728-745,
    inverted), else two (Jxx + JA, l.747-756); a negative K adds ``MOV32 tmp, K`` (l.704-712);
    ``RET K`` is ``MOV32 R0, K`` + ``EXIT`` (l.790-797); ``JA`` is one (l.695-699).
    """
    # x86 bytes of the converter prologue: xor eax,eax (2); xor r13d,r13d (3); mov rbx,rdi (3)
    out: list[EInsn] = [EInsn(2), EInsn(3), EInsn(3)]
    addrs: list[int] = []
    for i, ins in enumerate(prog):
        addrs.append(len(out))
        cls = ins.code & 0x07
        if cls in (LD, LDX):
            mode = ins.code & 0xE0
            if mode == IMM:  # MOV32 imm: mov eax, imm32 (5) or xor (2) for 0 (emit_mov_imm32)
                out.append(EInsn(2 if ins.k == 0 else 5))
            elif mode == MEM:  # LDX_MEM W from the stack: REX + 8B + ModRM + disp8
                out.append(EInsn(4))
            else:  # LDX_MEM W, A, ctx, k: 8B 43 kk (mov eax, [rbx+k]); seccomp_data < 128 B
                out.append(EInsn(3))
        elif cls in (ST, STX):
            out.append(EInsn(4))  # STX_MEM W to the stack
        elif cls == ALU:
            out.append(EInsn(3 if _imm8(_s32(ins.k)) or ins.code & X else 5))  # 83 /x ib or 25 id
        elif cls == MISC:
            out.append(EInsn(3))  # TAX/TXA: mov between rax and r13
        elif cls == RET:
            if ins.code & 0x18 == 0x00:  # RET K: MOV32 R0, K
                out.append(EInsn(2 if ins.k == 0 else 5))
            out.append(EInsn(0, exit=True))
        elif cls == JMP:
            op = ins.code & 0xF0
            if op == JA:
                out.append(EInsn(0, "ja", i + ins.k + 1))
                continue
            k = _s32(ins.k)
            if not ins.code & X and k < 0:
                out.append(EInsn(5))  # MOV32 tmp, K: mov esi, imm32
                cmp = 3  # cmp rax, rsi
            elif ins.code & X:
                cmp = 3
            elif op == JSET:
                cmp = 7  # test rax, imm32: REX.W F7 C0 id
            elif k == 0:
                cmp = 3  # test rax, rax
            else:
                cmp = 4 if _imm8(k) else 7  # cmp rax, imm8 / imm32
            if ins.jf == 0:
                out.append(EInsn(cmp, "jcc", i + ins.jt + 1))
            elif ins.jt == 0 and op != JSET:
                out.append(EInsn(cmp, "jcc", i + ins.jf + 1))
            else:
                out.append(EInsn(cmp, "jcc", i + ins.jt + 1))
                out.append(EInsn(0, "ja", i + ins.jf + 1))
        else:
            raise ValueError(f"cBPF instruction {i}: code {ins.code:#x} is not allowed in seccomp")
    addrs.append(len(out))
    return out, addrs


def x86_image_bytes(einsns: list[EInsn], addrs: list[int], prologue: int) -> int:
    """Lay the converted program out as do_jit does, until the size stops changing.

    Jumps are rel8 when the displacement fits (is_imm8_jmp_offset, jit 6.1 l.107): jcc 2 B
    else 6 (l.1689-1713); jmp 2 B else 5 (l.1770-1790). The first EXIT emits the epilogue,
    later ones jump to it (l.1802-1822). The first pass assumes 64 B per instruction
    (l.2492-2498); at most MAX_PASSES (20, l.2432) passes.
    """
    n = len(einsns)
    ends = [prologue + 64 * (i + 1) for i in range(n)]
    size = prologue
    for _ in range(20):
        size = prologue
        new: list[int] = []
        cleanup = -1
        for i, ins in enumerate(einsns):
            if ins.exit:
                if cleanup < 0:
                    cleanup = size
                    size += EPILOGUE_BYTES
                else:
                    size += 2 if _imm8(cleanup - (ends[i - 1] if i else prologue) - 2) else 5
            elif ins.jump:
                target = addrs[ins.target] if 0 <= ins.target < len(addrs) else n
                dest = ends[target - 1] if target > 0 else prologue
                offset = dest - ends[i]
                short = _imm8(offset)
                size += ins.base + (2 if short else (6 if ins.jump == "jcc" else 5))
            else:
                size += ins.base
            new.append(size)
        if new == ends:
            break
        ends = new
    return size


def libseccomp_filter(n: int) -> list[CInsn]:
    """A filter of ``n`` cBPF instructions shaped as libseccomp emits an allow-list.

    Header: load the arch, ``jeq AUDIT_ARCH_X86_64`` (else kill), load the syscall number,
    reject x32 numbers; then blocks of ``jeq #nr`` (at most 240: jt is a u8) whose true
    branch is the allow ``ret`` that closes the block, with a ``ja`` over that ``ret`` to
    the next block; the default action (errno) and kill ``ret`` end the program. The kill
    branches of the header jump straight to the end (libseccomp would hop through a ``ja``
    when that is more than 255 instructions away: ignored, it does not change the size
    class of those two jumps).
    """
    if n < 1:
        raise ValueError("a filter has at least one instruction")
    if n < 8:
        return [CInsn(RET | K, k=SECCOMP_RET_ALLOW)] * n
    kill = n - 1
    prog = [
        CInsn(LD | W | ABS, k=4),  # A = seccomp_data.arch
        CInsn(JMP | JEQ | K, jt=0, jf=kill - 2, k=AUDIT_ARCH_X86_64),  # != x86_64 -> kill
        CInsn(LD | W | ABS, k=0),  # A = seccomp_data.nr
        CInsn(JMP | JGE | K, jt=kill - 4, jf=0, k=X32_SYSCALL_BIT),  # x32 number -> kill
    ]
    room = n - len(prog) - 2
    nr = 0
    while room >= 3:
        block = min(240, room - 2)
        for j in range(block):
            prog.append(CInsn(JMP | JEQ | K, jt=block - j, jf=0, k=nr % 450))
            nr += 7
        prog.append(CInsn(JMP | JA, k=1))  # no match in this block: skip its allow ret
        prog.append(CInsn(RET | K, k=SECCOMP_RET_ALLOW))
        room -= block + 2
    prog.extend(CInsn(LD | W | ABS, k=0) for _ in range(room))  # pad (reload nr)
    prog.append(CInsn(RET | K, k=SECCOMP_RET_ERRNO | 1))  # Docker: defaultErrnoRet 1 (EPERM)
    prog.append(CInsn(RET | K, k=SECCOMP_RET_KILL_PROCESS))
    assert len(prog) == n
    return prog


@dataclass(frozen=True)
class ImageSize:
    """The JIT image of one program: ``insns`` as loaded, ``ebpf_insns`` after conversion."""

    kind: str
    insns: int
    ebpf_insns: int
    image: int  # jited_len: what the JIT emits (bytes)
    binary_align: int = X86_BINARY_ALIGN  # what the JIT passes to bpf_jit_binary_alloc
    pack_align: int = X86_PACK_ALIGN  # ... and to bpf_jit_binary_pack_alloc


@functools.lru_cache(maxsize=4096)
def seccomp_image(cbpf_insns: int, kernel: tuple[int, int] = (6, 1)) -> ImageSize:
    """Convert a libseccomp-shaped filter of ``cbpf_insns`` and size its x86 image."""
    if not 1 <= cbpf_insns <= BPF_MAXINSNS:
        raise ValueError(f"a seccomp filter has 1..{BPF_MAXINSNS} instructions, not {cbpf_insns}")
    einsns, addrs = convert(libseccomp_filter(cbpf_insns))
    # libseccomp filters use no scratch memory: stack_depth 0, so no sub rsp (jit l.368)
    size = x86_image_bytes(einsns, addrs, prologue_bytes(kernel, classic=True, stack=False))
    return ImageSize("seccomp", cbpf_insns, len(einsns), size)


def image_size(kind: str, insns: int, kernel: tuple[int, int] = (6, 1)) -> ImageSize:
    """The JIT image of a program of ``kind`` with ``insns`` instructions (as loaded)."""
    if kind == "ebpf":
        return ImageSize("ebpf", insns, insns, ebpf_image_bytes(insns, kernel))
    if kind == "seccomp":
        return seccomp_image(insns, kernel)
    raise ValueError(f"unknown program kind {kind!r}; known: {', '.join(KINDS)}")


# -- what the BPF core asks the allocator for -----------------------------------------------
def binary_alloc_size(proglen: int) -> int:
    """bpf_jit_binary_alloc: round_up(proglen + sizeof(*hdr) + 128, PAGE_SIZE) (core 6.1 l.1102)."""
    return align_up(proglen + BPF_BINARY_HEADER + BINARY_ALLOC_HOLE, PAGE_SIZE)


def binary_alloc_hole(proglen: int, size: int) -> int:
    """Room for the random start: min(size - (proglen + hdr), PAGE_SIZE - hdr) (core 6.1 l.1115-1116)."""
    return min(size - (proglen + BPF_BINARY_HEADER), PAGE_SIZE - BPF_BINARY_HEADER)


def pack_alloc_size(proglen: int, align: int = X86_PACK_ALIGN) -> int:
    """bpf_jit_binary_pack_alloc: round_up(proglen + sizeof(*hdr) + 16, 64) (core 6.1 l.1157).

    The x86 JIT passes ``roundup(proglen, align) + extable_size`` (jit 6.1 l.2552); no
    exception-table entries are modelled.
    """
    return align_up(align_up(proglen, align) + BPF_BINARY_HEADER + PACK_ALLOC_HOLE, BPF_PROG_CHUNK_SIZE)


def pack_alloc_hole(proglen: int, size: int) -> int:
    """min(size - (proglen + hdr), BPF_PROG_CHUNK_SIZE - hdr) (core 6.1 l.1178-1180)."""
    return min(size - (proglen + BPF_BINARY_HEADER), BPF_PROG_CHUNK_SIZE - BPF_BINARY_HEADER)
