"""Figures the notebooks share. Every title names the dataset and the profile."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
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


def confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> Any:
    """Row-normalised confusion matrix (rows = true class) with the counts written in each cell."""
    m = np.asarray(cm, dtype=float)
    share = m / np.maximum(1, m.sum(1, keepdims=True))
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def top_errors(predictions: list[dict[str, str]], classes: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most confident mistakes from a ``predictions_<split>.csv`` (path, label, prediction, prob_*)."""
    wrong = [
        {**r, "confidence": float(r[f"prob_{r['prediction']}"])} for r in predictions if r["label"] != r["prediction"]
    ]
    return sorted(wrong, key=lambda r: -r["confidence"])[:k]


def error_grid(root: Path, errors: list[dict[str, Any]], title: str, cols: int = 6) -> Any:
    """Images of ``errors`` (from :func:`top_errors`) titled ``true → predicted (confidence)``."""
    n = max(1, len(errors))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, e in zip(axes.flat, errors, strict=False):
        with Image.open(Path(root) / e["path"]) as im:
            ax.imshow(im.convert("RGB"))
        ax.set_title(f"{e['label']} → {e['prediction']}\n{e['confidence']:.2f}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves(histories: dict[str, list[dict[str, Any]]], key: str, title: str) -> Any:
    """``key`` (e.g. ``val_macro_f1``) per global epoch for several runs; stage boundaries dotted."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for name, h in histories.items():
        ax.plot([r["global_epoch"] for r in h], [r[key] for r in h], marker="o", label=name)
        for a, b in pairwise(h):
            if b["stage"] != a["stage"]:
                ax.axvline(a["global_epoch"] + 0.5, ls=":", color="grey")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
