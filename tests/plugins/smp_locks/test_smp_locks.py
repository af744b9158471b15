"""SMP locks: nothing on SMP; one 1-byte text_poke (or staged store) per lock when UP-patched."""

from __future__ import annotations


def test_smp_kernel_writes_nothing(patch_machine, load, reports):
    m = patch_machine(cpus=4)
    (xfs,) = load(m, "xfs")
    r = reports(xfs, "smp_locks", "finalize")
    assert (r["entries"], r["writes"], r["bytes"], r["text_pokes"]) == (169, 0, 0, 0)


def test_uniprocessor_kernel_text_pokes_each_lock_prefix(patch_machine, load, reports):
    m = patch_machine(cpus=1)
    (xfs,) = load(m, "xfs")
    r = reports(xfs, "smp_locks", "finalize")
    # alternatives_smp_unlock: text_poke(ptr, 0x3e, 1) each, local flush only, no IPI
    assert (r["writes"], r["bytes"]) == (169, 169)
    assert (r["text_pokes"], r["poke_bytes"], r["local_flushes"], r["sync_ipis"], r["shootdowns"]) == (169, 169, 169, 0, 0)


def test_uniprocessor_rfc_stages_the_writes(patch_machine, load, reports, x86):
    m = patch_machine(layout="rfc", cpus=1, arch_name=x86, text_loading="text_poke")
    (xfs,) = load(m, "xfs")
    r = reports(xfs, "smp_locks", "finalize")
    assert (r["writes"], r["text_pokes"], r["local_flushes"]) == (169, 0, 0)
