"""Layouts against numbers worked out by hand from kernel/module/main.c's rules."""

from __future__ import annotations

import pytest

from permalloc.plugins.module_loader.layouts import ContiguousLayout, SeparateLayout
from permalloc.plugins.module_loader.workload import MemClass, ModuleInfo, Section

C = MemClass


def toy() -> ModuleInfo:
    def sec(name, size, align, flags, cls):
        return Section(name=name, size=size, align=align, flags=flags, mem_class=cls)

    return ModuleInfo(
        name="toy",
        sections=[
            sec(".text", 5000, 16, "AX", C.TEXT),
            sec(".init.text", 300, 1, "AX", C.INIT_TEXT),
            sec(".text.unlikely", 100, 1, "AX", C.TEXT),
            sec(".rodata", 3000, 32, "A", C.RODATA),
            sec("__jump_table", 48, 8, "WA", C.RO_AFTER_INIT),
            sec(".data", 200, 32, "WA", C.DATA),
            sec(".init.data", 40, 8, "WA", C.INIT_DATA),
            sec(".bss", 5000, 32, "WA", C.DATA),
        ],
        kallsyms_core_bytes=1000,
        kallsyms_init_bytes=3000,
        undefined_kernel=0,
    )


def test_contiguous_core_and_init():
    core, init = ContiguousLayout().plan(toy())
    # text: .text [0,5000) + .text.unlikely [5000,5100) -> strict_align: text_size 8192
    # rodata: .rodata at 8192 (32-aligned) to 11192 -> ro_size 12288
    # ro_after_init: __jump_table [12288,12336) -> ro_after_init_size 16384
    # data: .data [16384,16584), .bss at ALIGN(16584,32)=16608 to 21608 -> PAGE_ALIGN 24576,
    # then the core kallsyms [24576,25576) -> strict_align 28672
    assert core.size == 28672 and not core.init
    assert core.classes == {C.TEXT: (0, 8192), C.RODATA: (8192, 12288), C.RO_AFTER_INIT: (12288, 16384), C.DATA: (16384, 28672)}
    assert core.requested == 5000 + 100 + 3000 + 48 + 200 + 5000 + 1000
    # init: text [0,300) -> 4096; no init rodata -> ro_size 4096; .init.data [4096,4136)
    # -> 8192; init kallsyms [8192,11192) -> 12288
    assert init.size == 12288 and init.init
    assert init.classes == {C.INIT_TEXT: (0, 4096), C.INIT_RODATA: (4096, 4096), C.INIT_DATA: (4096, 12288)}


@pytest.mark.parametrize("name", ["rfc", "module-memory"])
def test_separate_regions(name):
    regions = {r.name: r for r in SeparateLayout(name, "").plan(toy())}
    # each class its own PAGE_ALIGNed allocation (module_memory_alloc); empty ones absent
    assert {n: r.size for n, r in regions.items()} == {
        "text": 8192, "rodata": 4096, "ro_after_init": 4096, "data": 8192, "init_text": 4096, "init_data": 4096,
    }
    # data: .data [0,200), .bss [224,5224), kallsyms at ALIGN(5224,8) -> 6224
    assert regions["data"].classes[C.DATA] == (0, 6224)
    assert str(regions["text"].perm) == "RX" and str(regions["rodata"].perm) == "R"
    assert str(regions["ro_after_init"].perm) == "RW" and str(regions["ro_after_init"].after_init) == "R"
    assert regions["init_data"].classes[C.INIT_DATA] == (0, 3040)


def test_separate_layout_is_smaller_than_contiguous_for_the_core():
    contiguous = sum(r.size for r in ContiguousLayout().plan(toy()) if not r.init)
    separate = sum(r.size for r in SeparateLayout("module-memory", "").plan(toy()) if not r.init)
    assert (contiguous, separate) == (28672, 24576)
