"""Classification metrics with bootstrap intervals (scikit-learn, NumPy): the one place the study's numbers
and their 95% intervals are computed, for one model or for two on the same images (paired)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def bootstrap_indices(n_items: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_items)`` indices: each row one resample of the items, with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def percentile_interval(stats: Sequence[float] | np.ndarray, level: float = 0.95) -> list[float | None]:
    """The central ``level`` interval of bootstrap statistics (non-finite values dropped; ``[None, None]``
    when none are left)."""
    vals = np.asarray(stats, dtype=float)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return [None, None]
    alpha = round(1 - level, 12)
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def bootstrap_ci(
    y: np.ndarray, pred: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float], n: int = 1000,
    seed: int = 0, level: float = 0.95,
) -> list[float | None]:  # fmt: skip
    """Percentile bootstrap interval of ``metric(y, pred)`` over ``n`` resamples of the images
    (``[None, None]`` with no resamples or no images). ``pred`` may hold several columns (a paired test)."""
    if n <= 0 or len(y) == 0:
        return [None, None]
    return percentile_interval([metric(y[i], pred[i]) for i in bootstrap_indices(len(y), n, seed)], level)


def macro_f1(y: np.ndarray, p: np.ndarray, labels: list[int]) -> float:
    """Macro-averaged F1 over ``labels`` (a class never predicted nor present counts 0)."""
    return float(f1_score(y, p, labels=labels, average="macro", zero_division=0))


def paired_macro_f1_difference(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, labels: list[int], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Macro-F1 of ``pred_a`` minus ``pred_b`` on the same images, with a *paired* bootstrap 95% interval (each
    resample draws images and scores both on them): overlapping per-model intervals are not a test, this is."""
    both = np.stack([np.asarray(pred_a), np.asarray(pred_b)], axis=1)

    def delta(yy: np.ndarray, pp: np.ndarray) -> float:
        return macro_f1(yy, pp[:, 0], labels) - macro_f1(yy, pp[:, 1], labels)

    return {"delta": delta(np.asarray(y), both), "ci95": bootstrap_ci(np.asarray(y), both, delta, n_boot, seed),
            "n": len(y)}  # fmt: skip


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


def mistakes(predictions: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The wrong rows of a predictions CSV (``nsfw-lab evaluate``), each with ``confidence`` (the predicted
    class's probability), most confident first."""
    wrong = [
        {**r, "confidence": float(r[f"prob_{r['prediction']}"])} for r in predictions if r["label"] != r["prediction"]
    ]
    return sorted(wrong, key=lambda r: -r["confidence"])
