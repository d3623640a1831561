"""The leakage lesson's counter-example: the same curated images re-split per file at random.

This is what the original scraper pipeline does (N random files per class to test). Galleries and
near-duplicate reposts then straddle train and test, and test scores go up for the wrong reason.
:func:`random_split_view` writes such a split as a *view* (a manifest pointing at the curated cache,
no image copied) that every nsfw-lab tool reads like a curated folder.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from nsfw_lab.data.curate import REPORT_NAME, read_report
from nsfw_lab.data.dataset import read_curated
from nsfw_lab.utils.fsutil import atomic_write_json, write_csv


def random_split_view(curated: Path, out: Path, seed: int = 0) -> Path:
    """Write ``out/manifest.csv``: ``curated``'s images with splits drawn per file at random, per class,
    keeping each split's size per class; ``cached_path`` points into ``curated``."""
    curated, out = Path(curated).resolve(), Path(out)
    _, rows = read_curated(curated)
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_class[r["class"]].append(i)
    new = [dict(r) for r in rows]
    for idx in by_class.values():
        splits = [rows[i]["split"] for i in idx]  # the same counts per split, shuffled over the files
        for i, s in zip(idx, rng.permutation(splits), strict=True):
            new[i]["split"] = str(s)
    for r in new:
        r["cached_path"] = str(curated / r["cached_path"])
    header = list(rows[0].keys())
    write_csv(out / "manifest.csv", header, ([r[k] for k in header] for r in new))
    report = read_report(curated)
    report["view"] = {"of": str(curated), "split": "random per file (group-unaware: leaky on purpose)"}
    atomic_write_json(out / REPORT_NAME, report)
    return out


def group_leakage(root: Path) -> dict[str, float]:
    """How much of the test split shares a group (gallery or near-duplicate cluster) with train."""
    _, rows = read_curated(Path(root))
    train_groups = {r["group"] for r in rows if r["split"] == "train"}
    test = [r for r in rows if r["split"] == "test"]
    shared = sum(r["group"] in train_groups for r in test)
    groups_by_split: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        groups_by_split[r["group"]].add(r["split"])
    return {
        "test_images": len(test),
        "test_images_with_group_in_train": shared,
        "test_share_with_group_in_train": shared / max(1, len(test)),
        "groups_across_splits": sum(len(s) > 1 for s in groups_by_split.values()),
    }
