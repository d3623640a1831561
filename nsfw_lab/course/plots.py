"""Figures the notebooks share. Every title names the dataset and the profile."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image


def image_grid(root: Path, rows: list[dict[str, str]], classes: Sequence[str], per_class: int, title: str) -> Any:
    """``per_class`` images of each class (one row per class) from manifest ``rows`` of a curated folder."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.6 * per_class, 1.7 * len(classes)), squeeze=False)
    for i, c in enumerate(classes):
        picks = [r for r in rows if r["class"] == c][:per_class]
        for j in range(per_class):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(picks):
                with Image.open(Path(root) / picks[j]["cached_path"]) as im:
                    ax.imshow(im.convert("RGB"))
            if j == 0:
                ax.set_title(c, loc="left", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def bars_with_ci(labels: Sequence[str], values: Sequence[float], cis: Sequence[Sequence[float]], title: str,
                 ylabel: str) -> Any:  # fmt: skip
    """A bar per label with its 95% interval as an error bar."""
    v = np.asarray(values, dtype=float)
    lo = v - np.array([c[0] for c in cis], dtype=float)
    hi = np.array([c[1] for c in cis], dtype=float) - v
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(labels), 3.4))
    ax.bar(labels, v, yerr=[lo, hi], capsize=6, color="#4c72b0")
    for i, x in enumerate(v):
        ax.text(i, x / 2, f"{x:.3f}", ha="center", color="white", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def counts_table(report: dict) -> tuple[list[str], list[list[int]]]:
    """Classes and their train/val/test counts from a curation report."""
    classes = list(report["counts"])
    return classes, [[report["counts"][c][s] for s in ("train", "val", "test")] for c in classes]
