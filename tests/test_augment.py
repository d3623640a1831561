"""The augmentation registry and the ablation statistics (hand-computed cases)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from nsfw_lab.config import CLASSES
from nsfw_lab.course.ablation import BASE, mean_ci95, paired_to_base, run_ablation, summarise, verdict_line
from nsfw_lab.data.augment import AUGMENTATIONS, augmentations
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.metrics import macro_f1
from nsfw_lab.train import make_config
from nsfw_lab.train.config import validate
from nsfw_lab.train.data import train_val_datasets

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (statistical tables: 4.303)


def test_the_article_augmentations_are_all_there() -> None:
    assert set(AUGMENTATIONS) == {"color_jitter", "gaussian_noise", "rotation", "translation", "shear", "hue_contrast"}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_each_augmentation_keeps_uint8_is_seeded_and_changes_images(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = tv_tensors.Image(torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=g))
    (t,) = augmentations([name])
    outs = []
    for seed in range(4):
        torch.manual_seed(seed)
        a = t(x)
        torch.manual_seed(seed)
        assert torch.equal(a, t(x))  # same seed, same draw
        assert a.dtype == torch.uint8 and a.shape == x.shape
        outs.append(a)
    assert sum(not torch.equal(a, x) for a in outs) >= 3  # it does something (a draw near identity may not)
    assert not all(torch.equal(outs[0], a) for a in outs[1:])  # and it is random


def test_unknown_or_repeated_names_are_one_line_errors() -> None:
    with pytest.raises(NsfwLabError, match="unknown augmentation 'blur'; choose from color_jitter, gaussian_noise"):
        augmentations(["rotation", "blur"])
    with pytest.raises(NsfwLabError, match="given twice"):
        augmentations(["shear", "shear"])
    with pytest.raises(NsfwLabError, match="augmentation given twice: rotation, rotation"):
        validate(make_config(data="d", out="o", augment=["rotation", "rotation"]))


def test_training_pipeline_applies_the_named_augmentation(small_curated: Path) -> None:
    plain, _ = train_val_datasets(small_curated, 32, (1.0, 1.0))
    shifted, _ = train_val_datasets(small_curated, 32, (1.0, 1.0), ("translation",))
    a, b, c = plain[(0, 7)][0], shifted[(0, 7)][0], shifted[(0, 7)][0]
    assert torch.equal(b, c) and not torch.equal(a, b) and b.dtype == torch.uint8


def test_mean_ci95_is_the_student_t_interval() -> None:
    r = mean_ci95([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3
    half = T_975_2 / 3**0.5
    assert r["mean"] == 2.0 and r["n"] == 3 and r["ci95"] == pytest.approx([2 - half, 2 + half])
    assert mean_ci95([0.7]) == {"mean": 0.7, "ci95": None, "n": 1}
    with pytest.raises(ValueError):
        mean_ci95([])


def _predictions_run(folder: Path, y: np.ndarray, pred: np.ndarray, split: str = "test") -> str:
    """A run folder holding only a predictions file (what paired_to_base reads)."""
    from nsfw_lab.evaluate.scoring import write_predictions
    from nsfw_lab.rundir import RunDir

    folder.mkdir(parents=True)
    probs = np.eye(5)[pred]
    write_predictions(RunDir(folder), split, [f"img_{i:04d}.png" for i in range(len(y))], list(CLASSES), y, probs)
    return str(folder)


def test_paired_to_base_pools_seeds_and_gives_computed_verdicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 120)  # 600 test images
    base = {s: np.where(rng.random(len(y)) < 0.7, y, (y + 1) % 5) for s in (0, 1)}  # ~70% right per seed
    fixed = {s: np.where(rng.random(len(y)) < 0.6, y, base[s]) for s in (0, 1)}  # fixes ~60% of the mistakes
    rows = []
    for aug, preds in (("base", base), ("rotation", fixed), ("shear", base)):
        for s in (0, 1):
            run = _predictions_run(tmp_path / f"{aug}_{s}", y, preds[s])
            rows.append(
                {"augmentation": aug, "seed": s, "run": run, "test_macro_f1": macro_f1(y, preds[s], list(range(5)))}
            )
    paired = paired_to_base(rows, "test", n_boot=300)
    assert set(paired) == {"rotation", "shear"}
    rot = paired["rotation"]
    pooled = lambda p: macro_f1(np.tile(y, 2), np.concatenate([p[0], p[1]]), list(range(5)))  # noqa: E731
    assert rot["delta"] == pytest.approx(pooled(fixed) - pooled(base)) and rot["seeds"] == 2 and rot["n"] == 600
    assert rot["ci95"][0] > 0 and rot["verdict"] == "helps" and 0 < rot["detectable"] < rot["delta"]
    assert paired["shear"]["verdict"] == "no difference (the same predictions on every image)"
    one = paired_to_base([r for r in rows if r["seed"] == 0], "test", n_boot=300)["rotation"]
    assert one["seeds"] == 1 and one["detectable"] > rot["detectable"]  # two seeds see smaller differences
    out = {r["augmentation"]: r for r in summarise(rows, paired)}
    assert "delta" not in out[BASE] and out[BASE]["mean"] == pytest.approx(
        np.mean([r["test_macro_f1"] for r in rows[:2]])
    )
    assert out["rotation"]["delta"] == rot["delta"] and out["rotation"]["verdict"] == "helps"
    assert verdict_line({"a": "hurts", "b": "no detectable difference (could detect 0.041)", "c": "no detectable "
                         "difference (could detect 0.050)"}) == "hurts: a; no detectable difference: b, c"  # fmt: skip
    with pytest.raises(ValueError, match="no base"):
        summarise([r for r in rows if r["augmentation"] != BASE], paired)
    with pytest.raises(ValueError, match="no base"):
        paired_to_base([r for r in rows if r["augmentation"] != BASE])


def test_run_ablation_trains_each_condition_per_seed_and_reuses_runs(
    small_curated: Path, tmp_path: Path, tiny_config
) -> None:
    base = tiny_config(small_curated, tmp_path / "unused", max_steps=2)
    rows = run_ablation(base, ["rotation"], [0, 1], tmp_path / "runs")
    assert [(r["augmentation"], r["seed"]) for r in rows] == [(BASE, 0), (BASE, 1), ("rotation", 0), ("rotation", 1)]
    cfg = json.loads((tmp_path / "runs" / "rotation_seed1" / "config.json").read_text())["config"]
    assert cfg["augment"] == ["rotation"] and cfg["seed"] == 1
    best = tmp_path / "runs" / "base_seed0" / "best.pt"
    stamp = best.stat().st_mtime_ns
    assert run_ablation(base, ["rotation"], [0, 1], tmp_path / "runs") == rows  # finished runs are read back
    assert best.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="already augments"):
        run_ablation(tiny_config(small_curated, tmp_path / "x", augment=("shear",)), ["rotation"], [0], tmp_path)
