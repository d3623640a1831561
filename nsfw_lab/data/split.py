"""Group-aware stratified train/val/test split.

Every group (a gallery, a near-duplicate cluster, or both merged) goes whole into one split, and
class proportions per split stay close to the whole. sklearn's ``StratifiedGroupKFold`` only makes
k equal folds; this greedy handles arbitrary fractions: groups are taken largest first (ties in a
seeded random order) and each goes to the split that most needs its classes. A split that has no
image of a class yet accepts that class's next group, so small datasets still get every class in
val and test when the groups allow it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from nsfw_lab.config import SPLITS

__all__ = ["SPLITS", "group_stratified_split", "max_proportion_gap", "split_table"]


def group_stratified_split(labels: list[str], groups: list[int], val: float, test: float, seed: int) -> list[str]:
    """Return a split name per item. ``groups[i]`` is item i's group id (items sharing it stay together)."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"need 0 <= val, test and val + test < 1 (got val={val}, test={test})")
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    unit_ids = sorted(members)
    rng = np.random.default_rng(seed)
    shuffled = [unit_ids[k] for k in rng.permutation(len(unit_ids))]
    order = sorted(shuffled, key=lambda g: -len(members[g]))  # stable: ties keep the seeded order
    totals = Counter(labels)
    target = {s: {c: fractions[s] * n for c, n in totals.items()} for s in SPLITS}
    have = {s: Counter() for s in SPLITS}
    out = [""] * len(labels)
    for g in order:
        counts = Counter(labels[i] for i in members[g])
        best, best_score = "train", -np.inf
        for s in SPLITS:
            if fractions[s] == 0:
                continue
            score = 0.0
            for c, n in counts.items():
                need = target[s][c] - have[s][c] - n / 2  # room left after half of this group
                if have[s][c] == 0 and target[s][c] >= 0.5:
                    need = max(need, 1e-6)  # a split that has none of a class welcomes its first group
                score += n * need / totals[c]
            if score > best_score + 1e-12:
                best, best_score = s, score
        have[best].update(counts)
        for i in members[g]:
            out[i] = best
    return out


def split_table(labels: list[str], splits: list[str]) -> dict[str, dict[str, int]]:
    """Counts per class × split, as ``{class: {split: n}}``."""
    table: dict[str, dict[str, int]] = {c: dict.fromkeys(SPLITS, 0) for c in sorted(set(labels))}
    for c, s in zip(labels, splits, strict=True):
        table[c][s] += 1
    return table


def max_proportion_gap(labels: list[str], splits: list[str]) -> float:
    """Largest |share of class c in split s − share of c overall| over classes and non-empty splits."""
    overall = Counter(labels)
    n = len(labels)
    worst = 0.0
    for s in SPLITS:
        in_s = [c for c, sp in zip(labels, splits, strict=True) if sp == s]
        if not in_s:
            continue
        cs = Counter(in_s)
        for c in overall:
            worst = max(worst, abs(cs[c] / len(in_s) - overall[c] / n))
    return worst
