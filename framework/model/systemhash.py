"""The large system hash tables that boot allocates from the page allocator.

mm/page_alloc.c: alloc_large_system_hash sizes a table from the kernel's low memory
(nr_kernel_pages: each zone's present pages less its memmap, free_area_init_core), unless
the caller fixes the entry count; tables without HASH_EARLY come from the buddy allocator
once it runs, with alloc_pages_exact (GFP_ATOMIC: unmovable, high order) when
``hashdist`` is 0, as it is on a machine with one node (fixup_hashdist), else with
vmalloc. The dentry and inode hashes are HASH_EARLY (memblock) then and belong to the
arch's boot reservations. The tables and their arguments are the call sites of 6.1
(Debian's config: CONFIG_BASE_SMALL=0, CONFIG_INET_TABLE_PERTURB_ORDER=16, MPTCP built in,
which the package's mptcp_diag.ko needs); bucket sizes are the structs' on 64-bit without
lock debugging (spinlock_t: 4 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from .pages import PAGE_SHIFT, PAGE_SIZE

ADAPT_SCALE_NPAGES = (64 << 30) >> PAGE_SHIFT  # ADAPT_SCALE_BASE (64G) >> PAGE_SHIFT
ADAPT_SCALE_SHIFT = 2
SZ_1M_PAGES = (1 << 20) // PAGE_SIZE


@dataclass(frozen=True)
class SystemHash:
    """One alloc_large_system_hash call: its ``bucketsize``, ``numentries`` (0: sized from
    memory at one bucket per 2^``scale`` bytes), limits, and when boot makes it (``when``:
    in start_kernel, which runs before deferred struct page init frees most of memory, or
    in a core or fs initcall, after it)."""

    name: str
    bucketsize: int
    scale: int
    numentries: int = 0
    low_limit: int = 0
    high_limit: int = 0
    per_cpu: int = 0  # numentries = roundup_pow_of_two(per_cpu * num_possible_cpus()) (futex)
    when: str = "fs_initcall"  # start_kernel (before deferred init), core_initcall or fs_initcall
    entries_from: str = ""  # numentries is that table's entry count

    def entries(self, kernel_pages: int, all_pages: int, cpus: int, given: int = 0) -> int:
        """The entry count the kernel settles on (before any retry at a smaller size);
        ``given``: the entry count of the ``entries_from`` table."""
        numentries = given or (_pow2(self.per_cpu * cpus) if self.per_cpu else self.numentries)
        scale = self.scale
        if not numentries:
            numentries = -(-kernel_pages // SZ_1M_PAGES) * SZ_1M_PAGES  # round_up(.., SZ_1M / PAGE_SIZE)
            if not self.high_limit:
                adapt = ADAPT_SCALE_NPAGES
                while adapt < numentries:
                    scale += 1
                    adapt <<= ADAPT_SCALE_SHIFT
            numentries = numentries >> (scale - PAGE_SHIFT) if scale > PAGE_SHIFT else numentries << (PAGE_SHIFT - scale)
            if numentries * self.bucketsize < PAGE_SIZE:
                numentries = PAGE_SIZE // self.bucketsize
        numentries = _pow2(numentries)
        limit = self.high_limit or min((all_pages << PAGE_SHIFT) >> 4, 0x80000000) // self.bucketsize
        numentries = max(numentries, self.low_limit)
        numentries = min(numentries, limit)
        return 1 << (numentries.bit_length() - 1)  # log2qty = ilog2(numentries)



def sizes(tables: tuple[SystemHash, ...], kernel_pages: int, all_pages: int, cpus: int) -> list[tuple[SystemHash, int]]:
    """Each table with its size in bytes, in the order boot allocates them."""
    entries: dict[str, int] = {}
    out = []
    for table in tables:
        entries[table.name] = table.entries(kernel_pages, all_pages, cpus, entries.get(table.entries_from, 0))
        out.append((table, entries[table.name] * table.bucketsize))
    return out


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


# Call sites of 6.1, in boot order: mnt_init (start_kernel: vfs_caches_init), futex_init
# (core_initcall), then inet_init (fs_initcall): ip_init -> ip_rt_init, tcp_init (which ends
# with mptcp_init -> mptcp_token_init), udp_init, udplite4_register.
SYSTEM_HASHES_6_1 = (
    SystemHash("Mount-cache", 8, 19, when="start_kernel"),  # fs/namespace.c: hlist_head
    SystemHash("Mountpoint-cache", 8, 19, when="start_kernel"),
    SystemHash("futex", 64, 0, per_cpu=256, when="core_initcall"),  # kernel/futex/core.c: ____cacheline_aligned bucket
    SystemHash("IP idents", 8, 16, low_limit=2048, high_limit=256 * 1024),  # net/ipv4/route.c: atomic_t + u32
    SystemHash("tcp_listen_portaddr_hash", 16, 21, high_limit=64 * 1024),  # inet_listen_hashbucket
    SystemHash("Table-perturb", 4, 0, numentries=1 << 16, low_limit=1 << 16, high_limit=1 << 16),  # u32
    SystemHash("TCP established", 8, 17, high_limit=512 * 1024),  # inet_ehash_bucket
    # net/ipv4/tcp.c: 2 * sizeof(inet_bind_hashbucket), as many entries as the established hash
    SystemHash("TCP bind", 32, 17, high_limit=64 * 1024, entries_from="TCP established"),
    SystemHash("MPTCP token", 24, 20, high_limit=64 * 1024),  # net/mptcp/token.c: token_bucket
    SystemHash("UDP", 32, 21, low_limit=256, high_limit=64 * 1024),  # 2 * sizeof(udp_hslot)
    SystemHash("UDP-Lite", 32, 21, low_limit=256, high_limit=64 * 1024),
)


def kernel_pages(zones: list[tuple[int, int]], dma_reserve: int = 0) -> tuple[int, int]:
    """(nr_kernel_pages, nr_all_pages) from each zone's (spanned, present) pages
    (free_area_init_core: present less calc_memmap_size, less dma_reserve in the first zone)."""
    kernel = 0
    for index, (spanned, present) in enumerate(zones):
        pages = present if spanned > present + (present >> 4) else spanned  # calc_memmap_size
        memmap = -(-pages * 64 // PAGE_SIZE)  # PAGE_ALIGN(pages * sizeof(struct page)) >> PAGE_SHIFT
        free = present - memmap if present >= memmap else present
        if index == 0 and free > dma_reserve:
            free -= dma_reserve
        kernel += free
    return kernel, kernel  # no highmem on 64-bit: nr_all_pages == nr_kernel_pages
