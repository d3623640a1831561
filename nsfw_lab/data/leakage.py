"""The leakage check run at the end of every curation, on what training will actually read.

It recomputes pHashes from the cached files (not from the manifest) and counts near-duplicate pairs,
sha256 values and group ids that sit in more than one split. All must be zero.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image

from nsfw_lab.data.hashing import near_duplicate_nodes, phash_hex
from nsfw_lab.utils.parallel import imap_ordered


def _phash_file(path: Path) -> str:
    with Image.open(path) as im:
        im.load()
        return phash_hex(im)


def leakage_check(
    out: Path, rows: list[tuple], threshold: int, workers: int | None = None, progress: bool = True
) -> dict:
    """Recompute pHashes from the cached files and count neighbours that sit in different splits.

    Also counts sha256 values and group ids found in more than one split. All three must be zero.
    """
    paths = [out / r[8] for r in rows]
    hashes = list(
        imap_ordered(
            _phash_file, paths, total=len(paths), workers=workers, desc="leakage check", progress=progress, chunksize=32
        )
    )
    node_of, node_pairs = near_duplicate_nodes(hashes, threshold)
    node_splits: dict[int, Counter] = defaultdict(Counter)
    for u, r in zip(node_of, rows, strict=True):
        node_splits[u][r[0]] += 1
    cross = 0  # item pairs within the threshold whose splits differ
    for cnt in node_splits.values():
        n = sum(cnt.values())
        cross += (n * n - sum(v * v for v in cnt.values())) // 2
    for u, v, _ in node_pairs:
        a, b = node_splits[u], node_splits[v]
        cross += sum(a.values()) * sum(b.values()) - sum(a[s] * b[s] for s in a)
    sha_splits: dict[str, set[str]] = defaultdict(set)
    group_splits: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        sha_splits[r[5]].add(r[0])
        group_splits[r[2]].add(r[0])
        if r[3]:
            group_splits["known:" + r[3]].add(r[0])
    result = {
        "phash_threshold": threshold,
        "cross_split_near_duplicates": cross,
        "cross_split_sha256": sum(1 for v in sha_splits.values() if len(v) > 1),
        "groups_straddling_splits": sum(1 for v in group_splits.values() if len(v) > 1),
        "hashes_matching_manifest": sum(1 for h, r in zip(hashes, rows, strict=True) if h == r[6]),
    }
    result["passed"] = (
        result["cross_split_near_duplicates"] == 0
        and result["cross_split_sha256"] == 0
        and result["groups_straddling_splits"] == 0
        and result["hashes_matching_manifest"] == len(rows)
    )
    return result
