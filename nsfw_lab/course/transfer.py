"""Notebook 03's transfer-learning lesson: the verdict table of its paired comparisons, and the classic
transfer curve (test macro-F1 against training images per class, pretrained linear probes against the same
network trained from scratch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from nsfw_lab.course.compare import difference_row, paired_difference
from nsfw_lab.course.experiments import Trained, train_and_test
from nsfw_lab.course.probe import Features, fit_probe, score_probe
from nsfw_lab.data.dataset import read_curated
from nsfw_lab.data.views import subset_view
from nsfw_lab.evaluate.metrics import verdict
from nsfw_lab.train import TrainConfig

ALL = "all"


def verdicts(pairs: dict[str, tuple[Path, Path]], n_boot: int = 1000) -> dict[str, dict[str, Any]]:
    """For each question ``{label: (run a, run b)}``: a's test macro-F1 minus b's on the same images, with its
    paired interval, the smallest difference it could detect and the verdict (helps / hurts / none detectable)."""
    out = {}
    for label, (a, b) in pairs.items():
        d = paired_difference(a, b, n_boot)
        out[label] = {**d, "verdict": verdict(d), "a": a.name, "b": b.name}
    return out


def verdict_rows(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`verdicts` as display rows."""
    return [difference_row(label, d) for label, d in found.items()]


def probe_curve(
    features: dict[str, Features], sizes: Sequence[int], out: Path, seed: int = 0, n_boot: int = 1000
) -> list[dict[str, Any]]:
    """Linear probes on nested training subsets (``sizes`` per class, then all), each tested on the whole test
    split; one row per size with the test macro-F1 and its interval."""
    rows = []
    for n in [*sizes, None]:
        probe = fit_probe(features["train"].subset(n, seed), features["val"], seed=seed)
        ev = score_probe(probe, features["test"], out / f"probe_{n or ALL}", n_boot)
        rows.append(_row("pretrained, linear probe", n, probe.train_images, ev))
    return rows


def scratch_curve(
    base: TrainConfig, full: Trained, sizes: Sequence[int], views: Path, seed: int = 0
) -> list[dict[str, Any]]:
    """The same network from scratch trained on nested subsets (``sizes`` per class, whole val and test) with
    ``base``'s recipe; ``full`` is its run on all training images."""
    rows = []
    for n in sizes:
        view = subset_view(Path(base.data), views / f"train_{n}", train_per_class=n, seed=seed)
        t = train_and_test(replace(base, data=str(view), out=f"{base.out}_{n}"))
        rows.append(_row("from scratch", n, _train_images(view), t.evaluation))
    rows.append(_row("from scratch", None, _train_images(base.data), full.evaluation))
    return rows


def _train_images(data: Path | str) -> int:
    return sum(r["split"] == "train" for r in read_curated(Path(data))[1])


def _row(init: str, per_class: int | None, images: int, ev: dict[str, Any]) -> dict[str, Any]:
    return {"init": init, "per class": per_class or ALL, "train images": images, "test macro-F1": ev["macro_f1"],
            "macro-F1 95% CI": ev["macro_f1_ci95"]}  # fmt: skip
