"""Alternatives: one staged write per site of the tables the modelled kernel patches."""

from __future__ import annotations

import math

import pytest

from permalloc.plugins.alternatives import ALT_INSTRLEN_DEFAULT, plan
from permalloc.plugins.module_loader.patching import section_span
from permalloc.plugins.module_loader.workload import MemClass


def _expected(info, kernel="6.1", retpoline=False):
    alts = info.table(".altinstructions")
    span = section_span(info, ".altinstr_replacement")
    instrlen = max(1, math.ceil(span[2] / alts)) if span and alts else ALT_INSTRLEN_DEFAULT
    para = info.table(".parainstructions")
    retp = 0 if retpoline else info.table(".retpoline_sites")
    rets = info.table(".return_sites")
    seals = info.table(".ibt_endbr_seal")
    writes = para + retp + rets + alts + seals
    nbytes = 6 * para + 5 * retp + 5 * rets + instrlen * alts + 4 * seals
    return writes, nbytes


def test_kvm_6_1_writes_every_paravirt_retpoline_return_and_alternative_site(patch_machine, load, reports):
    m = patch_machine()
    (kvm,) = load(m, "kvm")
    info = kvm.info
    assert (info.table(".parainstructions"), info.table(".retpoline_sites"), info.table(".return_sites"),
            info.table(".altinstructions")) == (98, 455, 2157, 180)
    r = reports(kvm, "alternatives", "finalize")
    assert (r["writes"], r["bytes"]) == _expected(info)
    assert (r["paravirt"], r["retpolines"], r["returns"], r["altinstructions"]) == (98, 455, 2157, 180)
    assert r["text_pokes"] == r["sync_ipis"] == r["local_flushes"] == r["shootdowns"] == 0


def test_6_12_has_no_paravirt_step(patch_machine, load, reports):
    m = patch_machine(layout="module-memory", kernel="6.12")  # on the 6.12 workload
    (kvm,) = load(m, "kvm")
    # 6.12 modules have no .parainstructions (pv calls are ALT_FLAG_DIRECT_CALL alternatives)
    # and, built with CONFIG_X86_KERNEL_IBT, an .ibt_endbr_seal
    assert kvm.info.table(".parainstructions") == 0 and kvm.info.table(".ibt_endbr_seal") > 0
    r = reports(kvm, "alternatives", "finalize")
    assert "paravirt" not in r and "paravirt_alternatives" not in r
    assert r["endbr_seal"] == kvm.info.table(".ibt_endbr_seal")
    assert (r["writes"], r["bytes"]) == _expected(kvm.info, "6.12")


def test_6_12_code_on_6_1_modules_patches_paravirt_sites_as_alternatives(patch_machine, load, reports):
    m = patch_machine(layout="module-memory", kernel="6.12", workload="debian-6.1.0-57-amd64")
    (kvm,) = load(m, "kvm")
    r = reports(kvm, "alternatives", "finalize")
    assert "paravirt" not in r and r["paravirt_alternatives"] == kvm.info.table(".parainstructions") == 98


def test_plain_retpolines_are_left_alone(patch_machine, load, reports):
    m = patch_machine(options={"alternatives.retpoline": True})
    (xfs,) = load(m, "xfs")
    r = reports(xfs, "alternatives", "finalize")
    assert "retpolines" not in r
    assert (r["writes"], r["bytes"]) == _expected(xfs.info, retpoline=True)
    assert [kind for kind, n, _ in plan(m, xfs.info) if n] == ["returns", "altinstructions"]


def _site_stores(events, length):
    """Store events of a table's sites (one event per table, ``sites`` writes of ``length``)."""
    return [e for e in events if e.kind == "store" and e.extra and e.n == length * e.extra["sites"]]


def test_without_staging_the_writes_hit_the_final_text(patch_machine, load):
    """6.1 contiguous: text_poke_early is a memcpy into the final mapping, still RW: stores only."""
    m = patch_machine()
    seen = []
    m.trace = seen.append
    (xfs,) = load(m, "xfs")
    text, size = xfs.address(MemClass.TEXT), xfs.class_size(MemClass.TEXT)
    stores = [e for e in _site_stores(seen, 5) if text <= e.addr < text + size]
    assert sum(e.extra["sites"] for e in stores) >= xfs.info.table(".return_sites") + xfs.info.table(".retpoline_sites")


def test_rfc_staging_buffer_takes_the_writes(patch_machine, load, x86):
    """The RFC on x86: module text is staged in a separate buffer; the final text gets none."""
    m = patch_machine(layout="rfc", kernel="6.1", arch_name=x86, text_loading="text_poke")
    seen = []
    m.trace = seen.append
    (xfs,) = load(m, "xfs")
    text, size = xfs.address(MemClass.TEXT), xfs.class_size(MemClass.TEXT)
    small = _site_stores(seen, 5)
    assert sum(e.extra["sites"] for e in small) >= xfs.info.table(".return_sites")
    assert not any(text <= e.addr < text + size for e in small)
    r = [r for r in xfs.reports if r["patcher"] == "alternatives"][0]
    assert (r["writes"], r["bytes"]) == _expected(xfs.info)


@pytest.mark.parametrize("name", ["nf_tables", "crc16"])
def test_counts_follow_the_tables(patch_machine, load, reports, name):
    m = patch_machine()
    lm = load(m, name)[0]
    assert (reports(lm, "alternatives", "finalize")["writes"], reports(lm, "alternatives", "finalize")["bytes"]) == _expected(lm.info)


def test_a_5_10_kernel_patches_no_retpoline_or_return_sites(patch_machine, load, reports):
    m = patch_machine(kernel="5.10")
    (kvm,) = load(m, "kvm")
    r = reports(kvm, "alternatives", "finalize")
    assert (r["writes"], r.get("retpolines"), r.get("returns")) == (98 + 180, None, None)
