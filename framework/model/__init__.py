"""The machine model: the state every arch shares (pages, page tables, the direct map, TLB, physical memory, events, metrics)."""
