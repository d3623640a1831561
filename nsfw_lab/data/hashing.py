"""Exact and perceptual hashes, near-duplicate search and union-find clustering."""

from __future__ import annotations

import hashlib
from itertools import pairwise

import imagehash
import numpy as np
from PIL import Image

PHASH_BITS = 64
ROWS_PER_SLAB = 2048  # near-duplicate search compares at most this many rows at once (~2048 x bucket)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as hex."""
    return hashlib.sha256(data).hexdigest()


def phash_hex(img: Image.Image) -> str:
    """64-bit DCT perceptual hash (imagehash.phash) as 16 hex digits."""
    return str(imagehash.phash(img, hash_size=8))


def hamming(a: str, b: str) -> int:
    """Hamming distance of two hex pHashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        """Root of ``i``'s set."""
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, a: int, b: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def labels(self) -> list[int]:
        """Component id per element: the smallest member index of its set (stable across runs)."""
        smallest: dict[int, int] = {}
        roots = [self.find(i) for i in range(len(self.parent))]
        for i, r in enumerate(roots):
            smallest.setdefault(r, i)
        return [smallest[r] for r in roots]


def near_duplicate_nodes(hashes: list[str], threshold: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Near-duplicate structure without quadratic blow-up on repeated hashes.

    Items with identical pHashes form one *node*. Returns ``node_of`` (node id per item) and the node
    pairs ``(u, v, distance)``, u < v, whose hashes differ in 1..``threshold`` bits. Distinct hashes are
    compared with the pigeonhole principle (split 64 bits into threshold+1 blocks: a near pair agrees
    exactly on one block), so only hashes sharing a block are compared, vectorised with numpy.
    """
    if not hashes:
        return [], []
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    uniq, inverse = np.unique(values, return_inverse=True)
    close: set[tuple[int, int, int]] = set()
    if threshold > 0 and len(uniq) > 1:
        blocks = min(threshold + 1, PHASH_BITS)
        bounds = np.linspace(0, PHASH_BITS, blocks + 1).astype(int)
        for lo, hi in pairwise(bounds.tolist()):
            key = (uniq >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
            order = np.argsort(key, kind="stable")
            ks = key[order]
            starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
            ends = np.r_[starts[1:], len(ks)]
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                if e - s < 2:
                    continue
                idx = order[s:e]
                sub = uniq[idx]
                for r0 in range(0, len(sub), ROWS_PER_SLAB):  # bounded memory: a slab of rows at a time
                    rows = sub[r0 : r0 + ROWS_PER_SLAB]
                    dist = np.bitwise_count(rows[:, None] ^ sub[None, :])
                    ii, jj = np.nonzero(dist <= threshold)
                    for a, b in zip(ii.tolist(), jj.tolist(), strict=True):
                        u, v = int(idx[r0 + a]), int(idx[b])
                        if u < v:
                            close.add((u, v, int(dist[a, b])))
    return inverse.tolist(), sorted(close)
