"""Figures the notebooks share. Every title names the dataset and the profile."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from nsfw_lab.config import CLASSES


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
    lo = np.maximum(0, v - np.array([c[0] for c in cis], dtype=float))  # >= 0 even for rounded values
    hi = np.maximum(0, np.array([c[1] for c in cis], dtype=float) - v)
    fig, ax = plt.subplots(figsize=(1.8 + 1.3 * len(labels), 3.4))
    ax.bar(labels, v, yerr=[lo, hi], capsize=6, color="#4c72b0")
    for i, x in enumerate(v):
        ax.text(i, x / 2, f"{x:.3f}", ha="center", color="white", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    fig.tight_layout()
    return fig


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


def error_grid(root: Path, errors: list[dict[str, Any]], title: str, cols: int = 6) -> Any:
    """Images of ``errors`` (from :func:`nsfw_lab.evaluate.metrics.mistakes`), each titled
    ``true → predicted (confidence)``."""
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


def ablation(rows: list[dict[str, Any]], summary: list[dict[str, Any]], title: str) -> Any:
    """Left: each augmentation's score per seed (dots) and mean ± 95% CI; right: the paired difference to the
    base, seeds pooled, with its bootstrap interval (the zero line = no effect)."""
    metric = summary[0]["metric"]
    names = [s["augmentation"] for s in summary]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 1.8), sharey=True)
    for i, s in enumerate(summary):
        dots = [r[metric] for r in rows if r["augmentation"] == s["augmentation"]]
        a.scatter(dots, [i] * len(dots), color="#999999", s=14, zorder=2)
        if s["ci95"] is not None:
            a.errorbar(s["mean"], i, xerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]], fmt="none",
                       color="#4c72b0", capsize=4)  # fmt: skip
        a.plot(s["mean"], i, "o", color="#4c72b0", zorder=3)
        if "delta" in s:
            ci = s["delta_ci95"]
            color = {"helps": "#55a868", "hurts": "#c44e52"}.get(s["verdict"], "#4c72b0")
            if ci is not None:
                b.errorbar(s["delta"], i, xerr=[[s["delta"] - ci[0]], [ci[1] - s["delta"]]], fmt="none", color=color,
                           capsize=4)  # fmt: skip
            b.plot(s["delta"], i, "o", color=color)
    a.set_yticks(range(len(names)), names)
    a.invert_yaxis()
    a.set_xlabel(f"{metric} (dots: seeds; bar: 95% CI of the mean)")
    b.axvline(0, color="black", lw=0.8)
    b.set_xlabel(f"{metric} minus base, seeds paired and pooled (95% CI)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def cam_gallery(found: dict[str, Any], title: str) -> Any:
    """One column per mistake: the image, the CAM for the predicted class, the CAM for the true class."""
    from nsfw_lab.explain.cam import overlay

    rows = found["rows"]
    fig, axes = plt.subplots(3, len(rows), figsize=(2.1 * len(rows) + 1.2, 6.6), squeeze=False)
    for j, r in enumerate(rows):
        img = found["images"][j]
        axes[0, j].imshow(img.permute(1, 2, 0).numpy())
        axes[0, j].set_title(f"{r['label']} → {r['prediction']}\n{r['confidence']:.2f}", fontsize=8)
        axes[1, j].imshow(overlay(img, found["cam_predicted"][j]))
        axes[2, j].imshow(overlay(img, found["cam_true"][j]))
        if found["true_flat"][j]:
            axes[2, j].set_title("no evidence found", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i, text in enumerate(("image", "CAM: predicted", "CAM: true class")):
        axes[i, 0].set_ylabel(text, fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def augmentation_examples(data: Path, names: Sequence[str], size: int, seed: int, title: str, draws: int = 3) -> Any:
    """One training image (the first of the class with the motif fully visible) after the base crop and flip
    (top row), then after each augmentation in ``names`` (a row each, ``draws`` random draws)."""
    import torch

    from nsfw_lab.data.augment import augmentations
    from nsfw_lab.data.dataset import CuratedImageDataset
    from nsfw_lab.data.transforms import train_transform

    ds = CuratedImageDataset(data, "train")
    i = next((k for k, t in enumerate(ds.targets) if ds.classes[t] == "porn"), 0)
    img = ds[i][0]
    rows = ["base (crop + flip)", *names]
    fig, axes = plt.subplots(len(rows), draws, figsize=(1.7 * draws + 1.6, 1.7 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        tf = train_transform(size, extra=augmentations([name]) if r else None, normalize=False)
        for d in range(draws):
            torch.manual_seed(seed * 1000 + d)  # the same crop in every row: only the augmentation differs
            axes[r, d].imshow(tf(img).permute(1, 2, 0).numpy())
            axes[r, d].set_xticks([])
            axes[r, d].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff(rows: list[dict[str, Any]], x: str, y: str, title: str) -> Any:
    """One labelled point per row: ``x`` (e.g. latency) against ``y`` (e.g. macro-F1)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in rows:
        ax.scatter(r[x], r[y], s=40)
        ax.annotate(r["model"], (r[x], r[y]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def mean_cams(where: dict[str, dict[str, Any]], title: str) -> Any:
    """One panel per predicted class: its mean Grad-CAM over the test images predicted as it."""
    classes = list(where)
    fig, axes = plt.subplots(1, len(classes), figsize=(2.2 * len(classes), 2.6), squeeze=False)
    for ax, c in zip(axes[0], classes, strict=True):
        ax.imshow(where[c]["mean_cam"], cmap="jet", vmin=0, vmax=max(1e-6, float(where[c]["mean_cam"].max())))
        ax.set_title(f"{c} (n={where[c]['n']})\ncentre {where[c]['centre']:.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def reliability(before: dict[str, list], after: dict[str, list], title: str) -> Any:
    """Reliability diagram: accuracy against mean confidence per bin, before and after temperature scaling,
    with the diagonal of perfect calibration; marker area follows the bin's count."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for r, name, colour in ((before, "before (T = 1)", "#c44e52"), (after, "after scaling", "#4c72b0")):
        pts = [(c, a, n) for c, a, n in zip(r["confidence"], r["accuracy"], r["count"], strict=True) if n]
        if pts:
            c, a, n = map(np.array, zip(*pts, strict=True))
            ax.plot(c, a, marker="o", color=colour, label=name)
            ax.scatter(c, a, s=8 + 120 * n / n.max(), color=colour, alpha=0.4)
    ax.set_xlabel("mean confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def pointing_game(measured: dict[str, dict[str, Any]], target: float, title: str) -> Any:
    """Pointing-game hit rate with its 95% CI per model, for Grad-CAM, a random map and the centre prior, and
    the target as a dashed line (``measured``: notebook 06's :func:`~nsfw_lab.course.explanations
    .measure_explanations` per model; models without evidence boxes left out)."""
    labels, vals, cis = [], [], []
    for name, m in measured.items():
        if not m.get("n"):
            continue
        for key, short in (("cam", "CAM"), ("random", "random"), ("centre", "centre")):
            labels.append(f"{name}\n{short}")
            vals.append(m[key]["pointing"]["mean"])
            cis.append(m[key]["pointing"]["ci95"])
    fig = bars_with_ci(labels, vals, cis, title, "hit rate")
    fig.axes[0].axhline(target, color="grey", linestyle="--", linewidth=1)
    fig.axes[0].tick_params(axis="x", labelsize=6)
    return fig


def transfer_curve(rows: list[dict[str, Any]], title: str) -> Any:
    """Test macro-F1 (with 95% intervals) against training images per class, one line per initialisation."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for init in dict.fromkeys(r["init"] for r in rows):
        mine = sorted((r for r in rows if r["init"] == init), key=lambda r: r["train images"])
        x = np.array([r["train images"] / len(CLASSES) for r in mine])
        y = np.array([r["test macro-F1"] for r in mine])
        err = [np.maximum(0, y - [r["macro-F1 95% CI"][0] for r in mine]),
               np.maximum(0, np.array([r["macro-F1 95% CI"][1] for r in mine]) - y)]  # fmt: skip
        ax.errorbar(x, y, yerr=err, marker="o", capsize=4, label=init)
    ax.set_xscale("log")
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_ylim(0, 1)
    ax.axhline(0.2, color="grey", lw=0.8, ls=":", label="chance (5 classes)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def robustness_heatmap(table: Any, title: str) -> Any:
    """Models (rows) by corruptions (columns): the paired macro-F1 drop at each corruption's most severe level
    measured, a star where the drop is detectable (its 95% interval below zero), from ``robustness_table``."""
    drop = table.pivot(index="model", columns="corruption", values="drop")
    hurt = table.pivot(index="model", columns="corruption", values="verdict").eq("hurts")
    cols = list(dict.fromkeys(table["corruption"]))
    drop, hurt = drop[cols], hurt[cols]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(cols), 0.9 + 0.45 * len(drop)))
    ax.imshow(drop.to_numpy(dtype=float), cmap="RdBu", vmin=-0.5, vmax=0.5, aspect="auto")
    for i in range(len(drop)):
        for j in range(len(cols)):
            v = float(drop.iat[i, j])
            ax.text(j, i, f"{v:+.2f}" + ("*" if hurt.iat[i, j] else ""), ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.3 else "black")  # fmt: skip
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(drop)), list(drop.index), fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
