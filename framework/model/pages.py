"""Page and mapping sizes shared by the machine model (x86-64 and most 64-bit arches)."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT  # one 2 MiB leaf / one pageblock
PUD_SHIFT = 30
PUD_SIZE = 1 << PUD_SHIFT  # one 1 GiB leaf
PAGES_PER_PMD = PMD_SIZE // PAGE_SIZE
PMDS_PER_PUD = PUD_SIZE // PMD_SIZE
PAGEBLOCK_ORDER = 9  # include/linux/pageblock-flags.h: pageblock_order = HUGETLB_PAGE_ORDER on x86


def pages_for(size: int) -> int:
    """Number of 4 KiB pages needed to hold ``size`` bytes."""
    return (size + PAGE_SIZE - 1) >> PAGE_SHIFT


def align_up(value: int, align: int) -> int:
    """Round ``value`` up to a multiple of ``align`` (a power of two)."""
    return (value + align - 1) & ~(align - 1)
