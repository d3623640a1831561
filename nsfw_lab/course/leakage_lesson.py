"""The leakage lesson: how much of a test split shares groups with train, and the gap it makes.

The counter-example split is :func:`nsfw_lab.data.views.random_split_view` (what the original scraper pipeline
does: N random files per class to test). Galleries and near-duplicate reposts then straddle train and test,
and test scores go up for the wrong reason.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from nsfw_lab.data.dataset import read_curated


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


def leakage_gap(leaky_run: Path, clean_run: Path, n_boot: int = 1000) -> dict[str, Any]:
    """Test accuracy of the run on the random split minus the run on the group-aware split: two different test
    sets, so each is resampled on its own (:func:`nsfw_lab.evaluate.metrics.independent_difference`); with the
    interval, the detectable size and the verdict ("inflated" when the interval excludes zero)."""
    import numpy as np
    from sklearn.metrics import accuracy_score

    from nsfw_lab.evaluate.metrics import independent_difference, verdict
    from nsfw_lab.rundir import RunDir
    from nsfw_lab.utils.fsutil import read_csv

    def labelled(run: Path) -> tuple[np.ndarray, np.ndarray]:
        rows = read_csv(RunDir(run).predictions("test"))
        return np.array([r["label"] for r in rows]), np.array([r["prediction"] for r in rows])

    d = independent_difference(labelled(leaky_run), labelled(clean_run), accuracy_score, n_boot)
    return {**d, "verdict": verdict(d, "inflated by the leak", "lower with the leak")}
