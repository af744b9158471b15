"""Static calls: the table is staged; every site costs one text_poke_bp when the module comes."""

from __future__ import annotations

from permalloc.plugins.static_call import _state


def test_table_staged_and_one_text_poke_bp_per_site(patch_machine, load, reports):
    m = patch_machine()
    (nft,) = load(m, "nf_tables")
    n = nft.info.table(".static_call_sites")
    assert n == 20
    fin = reports(nft, "static_call", "finalize")
    assert (fin["writes"], fin["bytes"], fin["text_pokes"]) == (1, 8 * n, 0)
    come = reports(nft, "static_call", "coming")
    # a batch of one per site: int3, tail, first byte, each followed by a sync round
    assert (come["writes"], come["bytes"], come["batches"]) == (n, 5 * n, n)
    assert (come["text_pokes"], come["sync_ipis"], come["local_flushes"], come["shootdowns"]) == (3 * n, 3 * n, 3 * n, 0)


def test_scales_with_sites(patch_machine, load, reports):
    m = patch_machine()
    (xfs,) = load(m, "xfs")
    assert reports(xfs, "static_call", "coming")["sync_ipis"] == 3 * 1308


def test_going_releases(patch_machine, load):
    from permalloc.plugins.module_loader import loader as loader_of

    m = patch_machine()
    load(m, "xfs")
    assert _state(m)["xfs"] == 1308
    loader_of(m).unload("xfs")
    assert "xfs" not in _state(m)
