"""Augmentation ablations: one fixed base, each augmentation switched on alone, repeated over seeds.

Seeds fix the initial weights, the data order and the augmentation draws, so run ``base`` with seed *s*
and run ``+rotation`` with seed *s* differ only by the augmentation: the per-seed difference (paired) is
a sharper test than comparing two means. Intervals over seeds use Student's t (few seeds); one seed gives
no interval at all, never a made-up one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsfw_lab.data.augment import check_names
from nsfw_lab.train import TrainConfig
from nsfw_lab.utils.progress import tqdm

if TYPE_CHECKING:
    import pandas as pd

BASE = "base"
METRICS = ("test_accuracy", "test_macro_f1", "val_macro_f1")


def mean_ci95(values: Sequence[float]) -> dict[str, Any]:
    """Mean and the two-sided 95% Student-t interval of the mean (``ci95`` is None below two values)."""
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": n}


def verdict(delta: dict[str, Any]) -> str:
    """``helps`` / ``hurts`` when the paired difference's interval excludes 0, else ``no clear effect``."""
    ci = delta["ci95"]
    if ci is None:
        return "one seed: no interval"
    return "helps" if ci[0] > 0 else "hurts" if ci[1] < 0 else "no clear effect"


def verdict_line(verdicts: dict[str, str]) -> str:
    """``{augmentation: verdict}`` as one line grouped by verdict: ``"hurts: a; no clear effect: b, c"``."""
    groups: dict[str, list[str]] = {}
    for aug, v in verdicts.items():
        groups.setdefault(v, []).append(aug)
    return "; ".join(f"{v}: {', '.join(a)}" for v, a in sorted(groups.items()))


def run_ablation(base: TrainConfig, names: Sequence[str], seeds: Sequence[int], runs: Path) -> list[dict[str, Any]]:
    """Train and test ``base`` and ``base + name`` for every name and seed (finished runs are reused).

    One row per run: augmentation, seed, run folder, test accuracy and macro-F1, the best val macro-F1.
    """
    from nsfw_lab.course.experiments import train_and_test

    check_names(names)
    if base.augment:
        raise ValueError(f"the base already augments with {base.augment}; give the base without them")
    rows = []
    jobs = [(a, s) for a in (BASE, *names) for s in seeds]
    for aug, seed in tqdm(jobs, desc="ablation runs", unit="run"):
        out = runs / f"{aug}_seed{seed}"
        cfg = replace(base, augment=() if aug == BASE else (aug,), seed=seed, out=str(out), progress=False)
        r = train_and_test(cfg, n_boot=200)
        rows.append(
            {
                "augmentation": aug,
                "seed": seed,
                "run": str(out),
                "test_accuracy": r.test["accuracy"],
                "test_macro_f1": r.test["macro_f1"],
                "val_macro_f1": r.best["score"],
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], metric: str = "test_macro_f1") -> list[dict[str, Any]]:
    """Per augmentation: mean ± 95% CI of ``metric`` over seeds, and the paired difference to the base."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    by: dict[str, dict[int, float]] = {}
    for r in rows:
        by.setdefault(r["augmentation"], {})[r["seed"]] = r[metric]
    if BASE not in by:
        raise ValueError("the rows hold no base runs")
    out = []
    for aug, values in by.items():
        common = sorted(set(values) & set(by[BASE]))
        row = {"augmentation": aug, "metric": metric, **mean_ci95(list(values.values()))}
        if aug != BASE:
            delta = mean_ci95([values[s] - by[BASE][s] for s in common])
            row |= {"delta": delta["mean"], "delta_ci95": delta["ci95"], "verdict": verdict(delta)}
        out.append(row)
    return out


def summary_table(test: list[dict[str, Any]], val: list[dict[str, Any]]) -> pd.DataFrame:
    """Notebook 05's table from :func:`summarise` on test and on val: mean test macro-F1 with its 95% CI, the
    paired difference to the base with its CI, and the verdict on each split."""
    import pandas as pd

    def fmt(mean: float, ci: list[float] | None) -> str:
        return f"{mean:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    rows = [
        {
            "augmentation": s["augmentation"],
            "test macro-F1 (95% CI)": fmt(s["mean"], s["ci95"]),
            "difference to base (95% CI)": fmt(s["delta"], s["delta_ci95"]) if "delta" in s else "",
            "verdict (test)": s.get("verdict", ""),
            "verdict (val)": v.get("verdict", ""),
        }
        for s, v in zip(test, val, strict=True)
    ]
    return pd.DataFrame(rows).set_index("augmentation")
