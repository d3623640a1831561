"""Views of a curated folder: a manifest that points into its cache (no image copied) with other splits or
fewer images, which every nsfw-lab tool reads like a curated folder.

- :func:`random_split_view`: the same images re-split per file at random, as the original scraper pipeline
  does (N random files per class to test); the leakage lesson's counter-example.
- :func:`subset_view`: the same splits with at most N training (or validation) images per class, drawn
  whole groups at a time; test is untouched, so runs on different subsets are scored on the same images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nsfw_lab.data.curate import REPORT_NAME, read_report
from nsfw_lab.data.dataset import read_curated
from nsfw_lab.utils.fsutil import atomic_write_json, write_csv


def _write_view(curated: Path, out: Path, rows: Iterable[dict[str, str]], what: str) -> Path:
    rows = [dict(r, cached_path=str(curated / r["cached_path"])) for r in rows]
    header = list(rows[0].keys())
    write_csv(out / "manifest.csv", header, ([r[k] for k in header] for r in rows))
    report = read_report(curated)
    report["view"] = {"of": str(curated), "split": what}
    atomic_write_json(out / REPORT_NAME, report)
    return out


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
    return _write_view(curated, out, new, "random per file (group-unaware: leaky on purpose)")


def subset_view(
    curated: Path, out: Path, train_per_class: int | None = None, val_per_class: int | None = None, seed: int = 0
) -> Path:
    """Write ``out/manifest.csv``: ``curated`` with at most ``train_per_class`` train and ``val_per_class`` val
    images per class (None: all), taken group by group in a seeded order (the last group cut at the cap; the
    splits are untouched, so nothing leaks); the test split is kept whole. With the same ``val_per_class`` and
    seed, a smaller train subset is contained in a larger one."""
    curated, out = Path(curated).resolve(), Path(out)
    _, rows = read_curated(curated)
    caps = {"train": train_per_class, "val": val_per_class}
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(rows):
        groups[(r["split"], r["class"])][r["group"]].append(i)
    keep: set[int] = set()
    for (split, _cls), members in sorted(groups.items()):
        cap = caps.get(split)
        names = sorted(members)
        taken = 0
        for g in [names[i] for i in rng.permutation(len(names))] if cap is not None else names:
            if cap is not None and taken >= cap:
                break
            chosen = members[g][: cap - taken] if cap is not None else members[g]
            keep.update(chosen)
            taken += len(chosen)
    what = f"subset: train {train_per_class or 'all'} and val {val_per_class or 'all'} per class, test whole"
    return _write_view(curated, out, (r for i, r in enumerate(rows) if i in keep), what)  # manifest order
