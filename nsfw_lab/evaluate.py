"""``nsfw-lab evaluate``: metrics of a run on a split, with bootstrap confidence intervals (scikit-learn).

Writes ``RUN_DIR/eval_<split>.json`` and ``RUN_DIR/predictions_<split>.csv`` (path, label, prediction,
one probability column per class).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from torch.utils.data import DataLoader

from nsfw_lab.data.dataset import CuratedImageDataset, make_loader
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.fsutil import atomic_write_json, write_csv
from nsfw_lab.progress import tqdm
from nsfw_lab.runs import LoadedRun, load_run


def bootstrap_ci(
    y: np.ndarray, pred: np.ndarray, metric: Any, n: int = 1000, seed: int = 0, level: float = 0.95
) -> list[float | None]:
    """Percentile bootstrap interval of ``metric(y, pred)`` over ``n`` resamples of the images
    (``[None, None]`` with no resamples or no images)."""
    if n <= 0 or len(y) == 0:
        return [None, None]  # type: ignore[list-item]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n, len(y)))
    stats = np.array([metric(y[i], pred[i]) for i in idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def macro_f1(y: np.ndarray, p: np.ndarray, labels: list[int]) -> float:
    """Macro-averaged F1 over ``labels`` (a class never predicted nor present counts 0)."""
    return float(f1_score(y, p, labels=labels, average="macro", zero_division=0))


def classification_metrics(
    y: np.ndarray, probs: np.ndarray, classes: list[str], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 (with 95% bootstrap CIs), per-class precision/recall/F1,
    the confusion matrix (rows = true class) and one-vs-rest ROC-AUC and PR-AUC (average precision).

    AUCs are ``None`` for a class with no positive or no negative example in ``y``.
    """
    y = np.asarray(y, dtype=int)
    probs = np.asarray(probs, dtype=float)
    labels = list(range(len(classes)))
    pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    roc, pr = {}, {}
    for k, c in enumerate(classes):
        pos = y == k
        ok = 0 < pos.sum() < len(y)
        roc[c] = float(roc_auc_score(pos, probs[:, k])) if ok else None
        pr[c] = float(average_precision_score(pos, probs[:, k])) if ok else None
    valid = [v for v in roc.values() if v is not None]
    valid_pr = [v for v in pr.values() if v is not None]
    f1 = lambda a, b: macro_f1(a, b, labels)  # noqa: E731
    return {
        "n": len(y),
        "classes": classes,
        "accuracy": float(accuracy_score(y, pred)),
        "accuracy_ci95": bootstrap_ci(y, pred, accuracy_score, n_boot, seed),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(y) else 0.0,
        "macro_f1": f1(y, pred),
        "macro_f1_ci95": bootstrap_ci(y, pred, f1, n_boot, seed),
        "per_class": {
            c: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
            for k, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "roc_auc_ovr": roc,
        "roc_auc_macro": float(np.mean(valid)) if valid else None,
        "pr_auc_ovr": pr,
        "pr_auc_macro": float(np.mean(valid_pr)) if valid_pr else None,
    }


@torch.inference_mode()
def infer(
    run: LoadedRun, loader: DataLoader, show: bool = True, logits: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """Softmax probabilities (``logits=True``: the raw logits) and labels over ``loader``, and the seconds
    spent in the model."""
    probs, ys, seconds = [], [], 0.0
    for x, y in tqdm(loader, desc="evaluate", disable=not show, leave=False, unit="batch"):
        x = x.to(run.device, non_blocking=True)
        t0 = time.perf_counter()
        out = run.model(x).float()
        out = out if logits else out.softmax(1)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        seconds += time.perf_counter() - t0
        probs.append(out.cpu().numpy())
        ys.append(np.asarray(y))
    if not probs:
        return np.zeros((0, len(run.classes))), np.zeros(0, int), 0.0
    return np.concatenate(probs), np.concatenate(ys), seconds


def mistakes(predictions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The wrong rows of a ``predictions_<split>.csv``, each with ``confidence`` (the predicted class's
    probability), most confident first."""
    wrong = [
        {**r, "confidence": float(r[f"prob_{r['prediction']}"])} for r in predictions if r["label"] != r["prediction"]
    ]
    return sorted(wrong, key=lambda r: -r["confidence"])


@torch.inference_mode()
def batch1_latency_ms(run: LoadedRun, image: torch.Tensor, repeats: int = 20) -> float:
    """Median milliseconds of one forward pass of ``image`` (``(3, H, W)``) as a batch of one (after a warm-up)."""
    x = image.unsqueeze(0).to(run.device)
    run.model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.model(x)
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def evaluate_run(
    run_dir: Path | str,
    split: str = "test",
    checkpoint: str = "best",
    data: Path | str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    n_boot: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``split`` of its curated data (or ``data``) and write the reports."""
    if batch_size < 1:
        raise NsfwLabError(f"--batch-size must be >= 1, not {batch_size}")
    if n_boot < 0:
        raise NsfwLabError(f"--bootstrap must be >= 0, not {n_boot}")
    run = load_run(run_dir, checkpoint, device)
    root = Path(data) if data else run.data_dir
    ds = CuratedImageDataset(root, split, eval_transform(run.image_size, normalize=False))
    if ds.classes != run.classes:
        raise NsfwLabError(f"{root}: classes {ds.classes} differ from the run's {run.classes}")
    loader = make_loader(ds, batch_size, train=False, device=run.device.type)
    probs, y, seconds = infer(run, loader, progress)
    result = {
        "run": str(run.run_dir),
        "split": split,
        "checkpoint": checkpoint,
        "data": str(root),
        "model": run.model.spec.name,
        **classification_metrics(y, probs, run.classes, n_boot),
        "latency_ms_per_image": seconds * 1000 / max(1, len(y)),
        "latency_ms_batch1": batch1_latency_ms(run, ds[0][0]) if len(ds) else None,
        "batch_size": batch_size,
        "device": str(run.device),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(run.run_dir / f"eval_{split}.json", result)
    header = ["path", "label", "prediction", *[f"prob_{c}" for c in run.classes]]
    rows = (
        [
            ds.rows[i]["cached_path"],
            run.classes[y[i]],
            run.classes[int(probs[i].argmax())],
            *[f"{v:.6f}" for v in probs[i]],
        ]
        for i in range(len(y))
    )
    write_csv(run.run_dir / f"predictions_{split}.csv", header, rows)
    return result
