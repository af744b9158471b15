"""The JIT image size model and the allocation-size arithmetic of kernel/bpf/core.c."""

from __future__ import annotations

import pytest

from permalloc.plugins.bpf_jit import sizes as s
from permalloc.plugins.bpf_jit.sizes import ABS, JEQ, JGE, JMP, JSET, LD, RET, CInsn, K, W


def test_prologue_and_epilogue_bytes():
    # nop5 + nop2 + push rbp + mov rbp,rsp + sub rsp,imm32 + push rbx + push r13 (jit 6.1 l.344-372)
    assert s.prologue_bytes((6, 1), classic=False, stack=True) == 5 + 2 + 1 + 3 + 7 + 3 == 21
    # 6.12 emits nop3 / xor rax,rax for the tail-call slot (l.510-513)
    assert s.prologue_bytes((6, 12), classic=False, stack=True) == 22
    # a converted cBPF program has no tail-call slot and, for seccomp, no stack
    assert s.prologue_bytes((6, 1), classic=True, stack=False) == 5 + 1 + 3 + 3 == 12
    # pop rbx/r13 + leave + ret + int3 (CONFIG_SLS=y)
    assert s.EPILOGUE_BYTES == 3 + 1 + 2 == 6


def test_ebpf_image_bytes():
    assert s.EBPF_BYTES_PER_100 == 452  # the class mix: 4.52 B per instruction
    assert s.ebpf_image_bytes(100) == 21 + 452 + 6 == 479
    assert s.ebpf_image_bytes(1) == 21 + 5 + 6 == 32  # ceil(4.52)
    assert s.ebpf_image_bytes(100, (6, 12)) == 480


def test_insns_for_bytes_inverts_the_model():
    for n in range(1, 3000):
        assert s.ebpf_insns_for_bytes(s.ebpf_image_bytes(n)) == n
    for b in range(28, 3000):
        n = s.ebpf_insns_for_bytes(b)
        assert s.ebpf_image_bytes(n) >= b > (s.ebpf_image_bytes(n - 1) if n > 1 else 0)
    assert s.ebpf_insns_for_bytes(10**12) == s.BPF_COMPLEXITY_LIMIT_INSNS


def test_convert_follows_bpf_convert_filter():
    prog = [
        CInsn(LD | W | ABS, k=4),  # -> LDX_MEM: 1
        CInsn(JMP | JEQ | K, jt=0, jf=4, k=s.AUDIT_ARCH_X86_64),  # negative K: MOV32 + JNE: 2
        CInsn(LD | W | ABS, k=0),  # 1
        CInsn(JMP | JEQ | K, jt=1, jf=0, k=60),  # jf == 0: 1
        CInsn(JMP | JGE | K, jt=1, jf=1, k=300),  # both targets: Jxx + JA: 2
        CInsn(JMP | JSET | K, jt=0, jf=1, k=8),  # jt == 0 but JSET cannot be inverted: 2
        CInsn(RET | K, k=s.SECCOMP_RET_ALLOW),  # MOV32 + EXIT: 2
        CInsn(RET | K, k=0),  # 2
    ]
    einsns, addrs = s.convert(prog)
    assert len(einsns) == 3 + 1 + 2 + 1 + 1 + 2 + 2 + 2 + 2  # the converter's 3-insn prologue first
    assert addrs == [3, 4, 6, 7, 8, 10, 12, 14, 16]


def test_docker_sized_filter():
    f = s.seccomp_image(952)
    # 3 prologue + 952 one-to-one + 1 MOV32 for the negative arch constant + a MOV32 before
    # each of the 6 RET K (4 block allow rets, errno, kill)
    assert f.ebpf_insns == 3 + 952 + 1 + 6 == 962
    # libseccomp's real Docker filter (952 insns) JITs to 11132 B by the same rules: within 2%
    assert abs(f.image - 11132) / 11132 < 0.02


def test_seccomp_limits():
    with pytest.raises(ValueError):
        s.seccomp_image(s.BPF_MAXINSNS + 1)
    assert len(s.libseccomp_filter(300)) == 300
    with pytest.raises(ValueError, match="unknown program kind"):
        s.image_size("xdp", 10)


def test_allocation_sizes():
    # bpf_jit_binary_alloc: round_up(proglen + 8 + 128, PAGE_SIZE)
    assert s.binary_alloc_size(317) == 4096
    assert s.binary_alloc_size(3960) == 4096 and s.binary_alloc_size(3961) == 8192  # 4096 - 136
    assert s.binary_alloc_hole(317, 4096) == 3771  # min(4096 - (317 + 8), PAGE_SIZE - 8)
    # bpf_jit_binary_pack_alloc: round_up(roundup(proglen, 4) + 8 + 16, 64)
    assert s.pack_alloc_size(317) == 384
    assert s.pack_alloc_hole(317, 384) == 56  # min(384 - 325 = 59, 64 - 8)
    assert s.pack_alloc_size(40) == 64
