"""Duplicate logic of curation: placeholders, exact duplicates, label conflicts, split units.

All functions work on plain per-file sequences (class, path, sha256) and on one near-duplicate index
(:func:`nsfw_lab.data.hashing.near_duplicate_nodes`) computed once per curation and reused by every step.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from nsfw_lab.data.hashing import UnionFind


@dataclass(frozen=True)
class NearIndex:
    """Items grouped into nodes (identical pHash) and node pairs ``(u, v, distance)`` within some radius."""

    node_of: list[int]
    pairs: list[tuple[int, int, int]]

    def within(self, radius: int) -> list[tuple[int, int, int]]:
        """The node pairs at most ``radius`` bits apart."""
        return [p for p in self.pairs if p[2] <= radius]


def placeholder_nodes(index: NearIndex, radius: int, copies: int) -> dict[int, int]:
    """Nodes that are a repeated placeholder card, with how many files lie within ``radius`` bits of each.

    A node is flagged when at least ``copies`` files lie within ``radius`` of it; its neighbours within
    ``radius`` are flagged with it, so no re-encoding of the card survives at the cluster's edge.
    """
    size = Counter(index.node_of)
    reach = dict(size)  # files within the radius of each node, itself included
    close = index.within(radius)
    for u, v, _ in close:
        reach[u] += size[v]
        reach[v] += size[u]
    flagged = {u for u, n in reach.items() if n >= copies}
    flagged |= {w for u, v, _ in close if u in flagged or v in flagged for w in (u, v)}
    return {u: reach[u] for u in flagged}


def exact_duplicates(
    classes: Sequence[str], paths: Sequence[str], shas: Sequence[str]
) -> tuple[list[int], list[tuple]]:
    """Byte-identical copies within a class: indices kept (the first path of each), and removed rows
    ``(path, class, duplicate_of, sha256)``."""
    first: dict[tuple[str, str], str] = {}
    kept: list[int] = []
    removed: list[tuple] = []
    for i, (cls, path, sha) in enumerate(zip(classes, paths, shas, strict=True)):
        key = (sha, cls)
        if key in first:
            removed.append((path, cls, first[key], sha))
        else:
            first[key] = path
            kept.append(i)
    return kept, removed


def label_conflicts(
    node_of: Sequence[int], pairs: Sequence[tuple[int, int, int]], classes: Sequence[str], paths: Sequence[str]
) -> dict[int, dict[str, str]]:
    """Items with an exact or near duplicate in another class: ``{item: {other class: a matching path}}``.

    Either every member of a node conflicts or none does (they share one pHash).
    """
    example: dict[int, dict[str, str]] = defaultdict(dict)  # node -> class -> a path in it
    for i, u in enumerate(node_of):
        example[u].setdefault(classes[i], paths[i])
    near = {u: dict(ex) for u, ex in example.items()}  # classes within reach of each node
    for u, v, _ in pairs:
        for a, b in ((u, v), (v, u)):
            for c, path in example[b].items():
                near[a].setdefault(c, path)
    return {i: {c: p for c, p in near[u].items() if c != classes[i]} for i, u in enumerate(node_of) if len(near[u]) > 1}


@dataclass(frozen=True)
class Units:
    """How kept items hang together: near-duplicate clusters, and split units (clusters + known groups)."""

    dup_cluster: list[int]  # smallest member index of each item's near-duplicate cluster
    unit: list[int]  # smallest member index of each item's split unit
    near_pairs: int  # item pairs within the threshold
    known_groups: int  # distinct known group ids that matched an item


def split_units(node_of: Sequence[int], pairs: Sequence[tuple[int, int, int]], known: Sequence[str]) -> Units:
    """Union near-duplicates (same node or a node pair) and items sharing a known group id."""
    members: dict[int, list[int]] = defaultdict(list)
    for k, u in enumerate(node_of):
        members[u].append(k)
    dup_uf = UnionFind(len(node_of))
    n_pairs = 0
    for ks in members.values():
        n_pairs += len(ks) * (len(ks) - 1) // 2
        for k in ks[1:]:
            dup_uf.union(ks[0], k)
    for u, v, _ in pairs:
        n_pairs += len(members[u]) * len(members[v])
        dup_uf.union(members[u][0], members[v][0])
    dup_cluster = dup_uf.labels()
    uf = UnionFind(len(node_of))
    for k, c in enumerate(dup_cluster):
        uf.union(k, c)
    first_of_group: dict[str, int] = {}
    for k, g in enumerate(known):
        if g:
            uf.union(k, first_of_group.setdefault(g, k))
    return Units(dup_cluster, uf.labels(), n_pairs, len(first_of_group))
