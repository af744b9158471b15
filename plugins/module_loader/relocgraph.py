"""The relocation graph: who references whom, and whether the placement keeps it in reach.

Nodes are the kernel image, the per-CPU area and every allocation of every loaded module
(with its address range); an edge carries the relocations aggregated per type from one
node to another. After placement each edge is checked against the arch's reach table
(``ArchInfo.reloc_reach`` for PC-relative types, ``reloc_absolute32`` for sign-extended
32-bit absolute ones). A branch type that the arch extends with a PLT (``reloc_plt``) is
not out of reach when its target is: it goes through a PLT entry of the module's ``.plt``. Distances are the worst case over both ranges, computed modulo
2^64 as the CPU does (which is how top-2-GiB text reaches zero-based per-CPU data).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from permalloc import ArchInfo

_MOD = 1 << 64


def signed_distance(src: int, dst: int) -> int:
    """``dst - src`` as the 64-bit signed value a relocation computes."""
    return (dst - src + (1 << 63)) % _MOD - (1 << 63)


def _signed(addr: int) -> int:
    return addr - _MOD if addr >= 1 << 63 else addr


@dataclass(frozen=True)
class Violation:
    module: str
    source: str  # node of the referencing allocation
    target: str
    rtype: str
    count: int
    distance: int
    plt: bool = False  # a branch the loader sends through a PLT entry (ArchInfo.reloc_plt): in reach after all

    def __str__(self) -> str:
        return (
            f"module {self.module}: {self.count} {self.rtype} relocation(s) from {self.source} to "
            f"{self.target} out of reach (distance {self.distance:+#x})"
        )


class RelocGraph:
    def __init__(self, arch: ArchInfo) -> None:
        self.arch = arch
        self.g = nx.DiGraph()
        for name in ("kernel_image", "percpu"):
            vrange = arch.ranges.get(name)
            if vrange is not None:
                self.g.add_node(name.removesuffix("_image"), start=vrange.start, end=vrange.end, module=None)

    def add_node(self, node: str, module: str, start: int, end: int) -> None:
        self.g.add_node(node, start=start, end=end, module=module)

    def add_relocs(self, source: str, target: str, rtype: str, count: int) -> None:
        if target not in self.g:
            return  # e.g. no per-CPU range on this arch: nothing to check against
        data = self.g.get_edge_data(source, target)
        if data is None:
            self.g.add_edge(source, target, relocs={rtype: count})
        else:
            data["relocs"][rtype] = data["relocs"].get(rtype, 0) + count

    def remove_module(self, module: str) -> None:
        self.g.remove_nodes_from([n for n, m in self.g.nodes(data="module") if m == module])

    def worst_distance(self, source: str, target: str) -> int:
        s, t = self.g.nodes[source], self.g.nodes[target]
        a = signed_distance(s["start"], t["end"] - 1)
        b = signed_distance(s["end"] - 1, t["start"])
        return a if abs(a) >= abs(b) else b

    def check_module(self, module: str) -> list[Violation]:
        """Check every edge out of ``module``'s nodes against the arch's reach table, at both
        extremes of the two ranges (ArchInfo.reloc_in_reach)."""
        found = []
        arch = self.arch
        for node in [n for n, m in self.g.nodes(data="module") if m == module]:
            s = self.g.nodes[node]
            for _, target, data in self.g.out_edges(node, data=True):
                t = self.g.nodes[target]
                pairs = ((s["start"], t["end"] - 1), (s["end"] - 1, t["start"]))
                for rtype, count in data["relocs"].items():
                    bad = [(p, x) for p, x in pairs if not arch.reloc_in_reach(rtype, p, x)]
                    if bad:
                        place, where = bad[0]
                        distance = signed_distance(place, where)
                        if rtype in arch.reloc_absolute32 or rtype in arch.reloc_absolute32_unsigned:
                            distance = _signed(where)
                        found.append(Violation(module, node, target, rtype, count, distance, rtype in arch.reloc_plt))
        return found
