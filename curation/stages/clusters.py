"""Union-find over duplicate edges and the deterministic choice of one representative per cluster
(shared by the two dedup stages)."""
from __future__ import annotations

from typing import Iterable


class UnionFind:
    """Disjoint sets over hashable items, with path halving and union by size."""

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def find(self, x):
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list]:
        out: dict = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return list(out.values())


def resolve_clusters(edges: Iterable[tuple[str, str]], rank: dict[str, tuple]) -> dict[str, tuple[str, int]]:
    """Map every key of a duplicate cluster to ``(representative, cluster size)``.

    The representative is the member with the smallest ``rank[key]`` tuple (callers pass
    ``(-pixels, -bytes, key)``: highest resolution, then largest file, then key), so the choice is
    the same whatever order the edges come in.
    """
    uf = UnionFind()
    for a, b in edges:
        uf.union(a, b)
    out: dict[str, tuple[str, int]] = {}
    for members in uf.groups():
        rep = min(members, key=lambda k: rank[k])
        for k in members:
            out[k] = (rep, len(members))
    return out


def rank_of(attr: tuple[int, int, str]) -> tuple:
    """The ``rank`` of an image from ``(pixels, bytes, key)``: highest resolution first, then largest file."""
    pixels, nbytes, key = attr
    return (-pixels, -nbytes, key)
