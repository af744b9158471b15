"""Module BTF (kernel/bpf/btf.c, CONFIG_DEBUG_INFO_BTF_MODULES=y on Debian 6.1 and 6.12).

At MODULE_STATE_COMING, btf_module_notify parses the module's .BTF section: btf_parse_module
copies it with kvmalloc(data_size, GFP_KERNEL | __GFP_NOWARN) and keeps the copy until
MODULE_STATE_GOING (btf_put -> kvfree). kvmalloc above a page tries kmalloc first with
__GFP_NORETRY (mm/util.c: kvmalloc_node); above KMALLOC_MAX_CACHE_SIZE (two pages with SLUB)
kmalloc is kmalloc_large, one compound allocation of get_order(size) from the buddy
allocator (mm/slab_common.c). Smaller copies come from the kmalloc slab caches, which are
not modelled. The type arrays built while parsing are not modelled either.
"""

from __future__ import annotations

from typing import Any

from permalloc import Machine, Perm, hookimpl
from permalloc.model.pages import PAGE_SIZE

__version__ = "1.0"

KMALLOC_MAX_CACHE_SIZE = 2 * PAGE_SIZE  # include/linux/slab.h: KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1 (SLUB)


def _order(size: int) -> int:
    """get_order(size)."""
    return max(0, (size - 1).bit_length() - 12)


@hookimpl
def permalloc_module_coming(machine: Machine, module: Any) -> dict[str, Any] | None:
    size = getattr(module.info, "btf_size", 0)
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return None
    order = _order(size)
    pfn = machine.alloc_order(order, source="btf_parse_module/kvmalloc", may_fail=True)
    if pfn is not None:
        machine.state("btf", dict)[module.name] = ("pages", pfn, order)
    else:  # kvmalloc falls back to vmalloc when the __GFP_NORETRY kmalloc fails
        area = machine.vmalloc.vmalloc(size, "vmalloc", Perm.RW, reset_perms=False, source="btf_parse_module/kvmalloc")
        machine.state("btf", dict)[module.name] = ("vmalloc", area, 0)
    return None


@hookimpl
def permalloc_module_going(machine: Machine, module: Any) -> None:
    held = machine.state("btf", dict).pop(module.name, None)
    if held is None:
        return
    kind, what, order = held
    if kind == "pages":
        machine.free_order(what, order, source="btf_put/kvfree")
    else:
        machine.vmalloc.vfree(what, source="btf_put/kvfree")
