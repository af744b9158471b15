"""The vmlinux facts of the bundled workloads against the real symbol tables of their builds.

Ingest reads the stripped image; data/vmlinux-reference.json holds what the System.map of the
``linux-image-*-dbg`` packages says, with the tables counted between their real symbols
(data/vmlinux_reference.py makes it, offline CI keeps the result).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from permalloc.arches.x86.elf import X86_64
from permalloc.plugins.module_loader.rules import rules_for, table_entry_sizes
from permalloc.plugins.module_loader.workload import BUNDLED_WORKLOADS, bundled_workload_path, load_workload

REFERENCE = json.loads((Path(__file__).with_name("data") / "vmlinux-reference.json").read_text())


@pytest.fixture(scope="module", params=BUNDLED_WORKLOADS)
def vmlinux(request):
    return load_workload(bundled_workload_path(request.param)).vmlinux


def test_every_bundled_kernel_has_a_reference(vmlinux):
    assert vmlinux.kernel_release in REFERENCE


def test_layout_markers_are_the_linker_symbols(vmlinux):
    symbols = REFERENCE[vmlinux.kernel_release]["symbols"]
    known = {name: value for name, value in vmlinux.layout.items() if value is not None}
    assert len(known) >= 30
    assert {name: symbols[name] for name in known} == known
    # the ones left unknown do exist in the build: the stripped image cannot tell them
    unknown = [name for name, value in vmlinux.layout.items() if value is None]
    assert sorted(unknown) == ["__start_bss_decrypted", "__start_bss_decrypted_unused"]
    assert all(name in symbols for name in unknown)


def test_section_tables_are_counted_between_their_symbols(vmlinux):
    symbols = REFERENCE[vmlinux.kernel_release]["symbols"]
    sizes = table_entry_sizes(rules_for(vmlinux.kernel_release), X86_64)
    for field, section, start, stop in (
        ("altinstructions", ".altinstructions", "__alt_instructions", "__alt_instructions_end"),
        ("parainstructions", ".parainstructions", "__parainstructions", "__parainstructions_end"),
        ("retpoline_sites", ".retpoline_sites", "__retpoline_sites", "__retpoline_sites_end"),
        ("return_sites", ".return_sites", "__return_sites", "__return_sites_end"),
        ("call_sites", ".call_sites", "__call_sites", "__call_sites_end"),
        ("ibt_endbr_seal", ".ibt_endbr_seal", "__ibt_endbr_seal", "__ibt_endbr_seal_end"),
        ("orc_unwind_ip", ".orc_unwind_ip", "__start_orc_unwind_ip", "__stop_orc_unwind_ip"),
    ):
        expected = (symbols[stop] - symbols[start]) // sizes[section] if start in symbols else 0
        assert getattr(vmlinux.tables, field) == expected, field


def test_tables_inside_other_sections_are_found_whole(vmlinux):
    """__mcount_loc, __jump_table and .static_call_sites have no section of their own."""
    reference = REFERENCE[vmlinux.kernel_release]["tables"]
    assert {name: getattr(vmlinux.tables, name) for name in reference} == reference
    assert len(vmlinux.jump_keys) == vmlinux.tables.jump_keys
    assert sum(i for _, i, _ in vmlinux.jump_keys) == vmlinux.tables.jump_entries_init

