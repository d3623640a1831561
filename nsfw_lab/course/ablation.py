"""Augmentation ablations: one fixed base, each augmentation switched on alone, repeated over seeds.

Seeds fix the initial weights, the data order and the augmentation draws, so run ``base`` with seed *s*
and run ``+rotation`` with seed *s* differ only by the augmentation. Each augmentation's verdict is one
paired bootstrap over the split's images with its seeds pooled (:func:`paired_to_base`): it states the
smallest difference it could detect. The per-condition means carry Student-t intervals over seeds (few
seeds: wide; one seed: none, never a made-up one).
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


def verdict_line(verdicts: dict[str, str]) -> str:
    """``{augmentation: verdict}`` as one line grouped by verdict (the detectable size in brackets dropped):
    ``"hurts: a; no detectable difference: b, c"``."""
    groups: dict[str, list[str]] = {}
    for aug, v in verdicts.items():
        groups.setdefault(v.split(" (")[0], []).append(aug)
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
        r = train_and_test(cfg, n_boot=200)  # the verdicts come from paired_to_base
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


def paired_to_base(rows: list[dict[str, Any]], split: str = "test", n_boot: int = 1000) -> dict[str, dict[str, Any]]:
    """Per augmentation: its macro-F1 minus the base's on the same ``split`` images, seeds paired and pooled
    (:func:`nsfw_lab.course.compare.paired_difference`), with the interval, the detectable size and the verdict.
    Validation predictions are written first where a run lacks them."""
    from nsfw_lab.course.compare import paired_difference
    from nsfw_lab.evaluate.metrics import verdict
    from nsfw_lab.evaluate.scoring import evaluate_run
    from nsfw_lab.rundir import RunDir

    runs: dict[str, dict[int, Path]] = {}
    for r in rows:
        runs.setdefault(r["augmentation"], {})[r["seed"]] = Path(r["run"])
    if BASE not in runs:
        raise ValueError("the rows hold no base runs")
    for run in (p for by_seed in runs.values() for p in by_seed.values()):
        if not RunDir(run).predictions(split).is_file():
            evaluate_run(run, split, n_boot=0, progress=False)
    out = {}
    for aug, by_seed in runs.items():
        seeds = sorted(set(by_seed) & set(runs[BASE]))
        if aug == BASE or not seeds:
            continue
        d = paired_difference([by_seed[s] for s in seeds], [runs[BASE][s] for s in seeds], n_boot, split=split)
        out[aug] = {**d, "verdict": verdict(d)}
    return out


def summarise(
    rows: list[dict[str, Any]], paired: dict[str, dict[str, Any]], metric: str = "test_macro_f1"
) -> list[dict[str, Any]]:
    """Per augmentation: mean ± 95% CI of ``metric`` over seeds, and (from :func:`paired_to_base`) the pooled
    paired difference to the base with its interval, detectable size and verdict."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}")
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["augmentation"], []).append(r[metric])
    if BASE not in by:
        raise ValueError("the rows hold no base runs")
    out = []
    for aug, values in by.items():
        row = {"augmentation": aug, "metric": metric, **mean_ci95(values)}
        if aug in paired:
            d = paired[aug]
            row |= {
                "delta": d["delta"],
                "delta_ci95": d["ci95"],
                "detectable": d["detectable"],
                "verdict": d["verdict"],
            }
        out.append(row)
    return out


def summary_table(test: list[dict[str, Any]], val: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Notebook 05's table: mean test macro-F1 over seeds with its 95% CI, the pooled paired difference to the
    base with its CI and the smallest difference it could detect, and the verdicts on test and on validation."""
    import pandas as pd

    def fmt(mean: float, ci: list[float] | None) -> str:
        return f"{mean:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")

    rows = [
        {
            "augmentation": s["augmentation"],
            "test macro-F1 (95% CI over seeds)": fmt(s["mean"], s["ci95"]),
            "difference to base (paired 95% CI)": fmt(s["delta"], s["delta_ci95"]) if "delta" in s else "",
            "detectable": round(s["detectable"], 3) if s.get("detectable") is not None else None,
            "verdict (test)": s.get("verdict", ""),
            "verdict (val)": val.get(s["augmentation"], {}).get("verdict", ""),
        }
        for s in test
    ]
    return pd.DataFrame(rows).set_index("augmentation")
