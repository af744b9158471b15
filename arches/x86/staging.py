"""RFC optimisation 2: load through a writable staging buffer and text_poke.

The cover letter: "2. Load text/special data via per-cpu mappings. The mapping can be mapped
in its "final" permission, and loaded via text_poke(). This will reduce shootdowns during
loads to zero is most cases. Just local flushes. The new interface provides a writable
buffer for usages to stage their changes, and trigger the copying into the RO mapping via
text_poke()".

Assumptions:
* The staging buffer is a plain vmalloc() of the allocation's size in vmalloc space, RW+NX,
  without VM_FLUSH_RESET_PERMS (it is never executable). It exists from ``alloc`` to
  ``finish`` (the RFC's perm_writable_addr / perm_writable_finish).
* ``finish`` copies the whole allocation with text_poke_copy (alternative.c 6.1 l.1514:
  __text_poke over chunks of up to two pages, each a local flush through poking_mm and no
  IPI; text_poke_copy does not call text_poke_sync), then vfree()s the buffer: its area goes
  on the lazy purge list, no flush (mm/vmalloc.c: free_vmap_area_noflush).
"""

from __future__ import annotations

from permalloc import Machine, Perm, PermAllocation
from permalloc.mechanisms.vmalloc import VmArea

STAGING_RANGE = "vmalloc"


def create(machine: Machine, size: int) -> VmArea:
    return machine.vmalloc.vmalloc(size, STAGING_RANGE, Perm.RW, reset_perms=False, source="perm_alloc/staging")


def load(machine: Machine, alloc: PermAllocation, staging: VmArea) -> None:
    """perm_writable_finish: text_poke_copy into the final mapping, then drop the buffer."""
    machine.text.copy(alloc.addr, alloc.size, source="perm_writable_finish/text_poke_copy")
    discard(machine, staging)


def discard(machine: Machine, staging: VmArea) -> None:
    machine.vmalloc.vfree(staging, source="perm_writable_finish/vfree_staging")
