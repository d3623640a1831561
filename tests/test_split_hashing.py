"""Unit tests of the group-aware split and the near-duplicate search."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from nsfw_lab.data.hashing import UnionFind, hamming, near_duplicate_nodes
from nsfw_lab.data.split import group_stratified_split, max_proportion_gap, split_table


def _data(seed: int = 0) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    labels, groups, g = [], [], 0
    for cls, n in (("a", 900), ("b", 300), ("c", 120)):  # imbalanced, like the real classes
        k = 0
        while k < n:
            size = min(rng.choice([1, 1, 1, 2, 3, 5, 15]), n - k)
            labels += [cls] * size
            groups += [g] * size
            g += 1
            k += size
    return labels, groups


def test_groups_stay_whole_and_proportions_hold() -> None:
    labels, groups = _data()
    splits = group_stratified_split(labels, groups, val=0.1, test=0.15, seed=0)
    where = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        where[g].add(s)
    assert all(len(v) == 1 for v in where.values())
    assert max_proportion_gap(labels, splits) <= 0.03
    table = split_table(labels, splits)
    n = len(labels)
    assert abs(sum(t["val"] for t in table.values()) / n - 0.10) < 0.02
    assert abs(sum(t["test"] for t in table.values()) / n - 0.15) < 0.02


def test_split_is_deterministic_and_seeded() -> None:
    labels, groups = _data()
    a = group_stratified_split(labels, groups, 0.1, 0.1, seed=1)
    assert a == group_stratified_split(labels, groups, 0.1, 0.1, seed=1)
    assert a != group_stratified_split(labels, groups, 0.1, 0.1, seed=2)


def test_zero_fractions_and_bad_fractions() -> None:
    labels, groups = _data()
    assert set(group_stratified_split(labels, groups, 0.0, 0.2, seed=0)) == {"train", "test"}
    with pytest.raises(ValueError):
        group_stratified_split(labels, groups, 0.6, 0.5, seed=0)


def near_duplicate_pairs(hashes: list[str], threshold: int) -> list[tuple[int, int, int]]:
    """All item pairs (i, j, distance), i < j, within ``threshold`` bits, expanded from the nodes curation works
    with (quadratic in repeats: for small test sets)."""
    node_of, node_pairs = near_duplicate_nodes(hashes, threshold)
    members: dict[int, list[int]] = defaultdict(list)
    for i, u in enumerate(node_of):
        members[u].append(i)
    pairs = [(a, b, 0) for ms in members.values() for k, a in enumerate(ms) for b in ms[k + 1 :]]
    pairs += [(min(i, j), max(i, j), d) for u, v, d in node_pairs for i in members[u] for j in members[v]]
    return sorted(pairs)


@pytest.mark.parametrize("threshold", [0, 3, 8, 12])
def test_near_pairs_match_brute_force(threshold: int) -> None:
    rng = random.Random(threshold)
    base = [rng.getrandbits(64) for _ in range(400)]
    values = base + [b ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for b in base[:60]] + base[:5]
    hashes = [f"{v:016x}" for v in values]
    got = near_duplicate_pairs(hashes, threshold)
    want = [
        (i, j, hamming(hashes[i], hashes[j]))
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming(hashes[i], hashes[j]) <= threshold
    ]
    assert got == want
    assert len(want) >= 5


def test_union_find_labels_are_smallest_members() -> None:
    uf = UnionFind(6)
    uf.union(4, 1)
    uf.union(5, 4)
    uf.union(2, 3)
    assert uf.labels() == [0, 1, 2, 2, 1, 1]


def test_repeated_hashes_collapse_into_one_node() -> None:
    """Thousands of identical placeholder hashes must not produce millions of pairs."""
    hashes = ["8000000000000000"] * 20000 + ["8000000000000001", "7fffffffffffffff"]
    node_of, pairs = near_duplicate_nodes(hashes, 8)
    assert len(set(node_of[:20000])) == 1 and len(set(node_of)) == 3
    assert [(d) for _, _, d in pairs] == [1]


def test_near_pairs_in_slabs_match(monkeypatch) -> None:
    """The bounded-memory path (bucket larger than one slab) gives the same pairs."""
    from nsfw_lab.data import hashing

    rng = random.Random(7)
    hashes = [f"{(rng.getrandbits(60) << 4) | rng.getrandbits(2):016x}" for _ in range(300)]
    full = near_duplicate_pairs(hashes, 30)
    monkeypatch.setattr(hashing, "ROWS_PER_SLAB", 7)
    assert near_duplicate_pairs(hashes, 30) == full and full
