"""Views of a curated folder: the leakage lesson's random per-file split (same images and class sizes, groups
now straddle splits) and the training-subset view (fewer train/val images per class, test untouched)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nsfw_lab.course.leakage_lesson import group_leakage
from nsfw_lab.data.dataset import CuratedImageDataset, read_curated
from nsfw_lab.data.views import random_split_view, subset_view


def test_random_view_keeps_images_and_sizes_but_leaks_groups(default_curated: Path, tmp_path: Path) -> None:
    view = random_split_view(default_curated, tmp_path / "view", seed=1)
    _, rows = read_curated(default_curated)
    _, vrows = read_curated(view)
    assert sorted(r["sha256"] for r in rows) == sorted(r["sha256"] for r in vrows)
    assert Counter((r["class"], r["split"]) for r in rows) == Counter((r["class"], r["split"]) for r in vrows)
    assert group_leakage(default_curated)["test_images_with_group_in_train"] == 0
    leak = group_leakage(view)
    assert leak["groups_across_splits"] > 10 and leak["test_share_with_group_in_train"] > 0.3
    ds = CuratedImageDataset(view, "test")
    x, y = ds[0]
    assert x.shape[0] == 3 and ds.classes[y] == ds.rows[0]["class"]  # reads the curated cache in place
    assert (
        random_split_view(default_curated, tmp_path / "again", seed=1).joinpath("manifest.csv").read_bytes()
        == (view / "manifest.csv").read_bytes()
    )


def test_subset_view_caps_train_and_val_per_class_and_keeps_test(default_curated: Path, tmp_path: Path) -> None:
    _, rows = read_curated(default_curated)
    small = subset_view(default_curated, tmp_path / "s10", train_per_class=10, val_per_class=5, seed=3)
    big = subset_view(default_curated, tmp_path / "s25", train_per_class=25, val_per_class=5, seed=3)
    _, srows = read_curated(small)
    _, brows = read_curated(big)
    per = Counter((r["split"], r["class"]) for r in srows)
    assert {n for (split, _), n in per.items() if split == "train"} == {10}
    assert {n for (split, _), n in per.items() if split == "val"} == {5}
    test = sorted(r["sha256"] for r in rows if r["split"] == "test")
    assert sorted(r["sha256"] for r in srows if r["split"] == "test") == test  # the same test images
    train_small = {r["sha256"] for r in srows if r["split"] == "train"}
    assert train_small < {r["sha256"] for r in brows if r["split"] == "train"}  # nested: a smaller seed-3 subset
    assert group_leakage(small)["test_images_with_group_in_train"] == 0  # splits untouched: nothing leaks
    assert len(CuratedImageDataset(small, "train")) == 50


def test_large_models_train_on_the_profiles_subset(default_curated: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from nsfw_lab.config import get_profile
    from nsfw_lab.course.experiments import large_model_data

    cpu = get_profile("cpu")
    view = large_model_data(cpu, default_curated, tmp_path)
    n = cpu.course.large_per_class
    per = Counter((r["split"], r["class"]) for r in read_curated(view)[1])
    assert {k for (split, _), k in per.items() if split == "train"} == {n}  # the ResNets' and InceptionV3's data
    _, rows = read_curated(default_curated)
    assert sum(v for (split, _), v in per.items() if split == "val") == sum(r["split"] == "val" for r in rows)
    whole = replace(cpu, course=replace(cpu.course, large_per_class=None))
    assert large_model_data(whole, default_curated, tmp_path) == default_curated


def test_course_plots_name_the_data_and_draw_every_class(default_curated: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from nsfw_lab.course.plots import bars_with_ci, image_grid

    classes, rows = read_curated(default_curated)
    fig = image_grid(default_curated, rows, classes, 3, "proxy (cpu profile): train images")
    assert len(fig.axes) == 15 and fig._suptitle.get_text().startswith("proxy (cpu profile)")
    assert sum(len(ax.images) for ax in fig.axes) == 15
    fig = bars_with_ci(["group-aware", "random"], [0.6, 0.7], [[0.5, 0.7], [0.6, 0.8]], "proxy: test accuracy", "acc")
    (ax,) = fig.axes
    assert [round(p.get_height(), 3) for p in ax.patches] == [0.6, 0.7] and ax.get_title() == "proxy: test accuracy"


def test_confusion_and_error_plots(default_curated: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from nsfw_lab.course.plots import confusion, error_grid
    from nsfw_lab.evaluate.metrics import mistakes

    fig = confusion([[3, 1], [0, 4]], ["a", "b"], "proxy (cpu): confusion")
    (ax, *_) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["3", "1", "0", "4"] and ax.get_title() == "proxy (cpu): confusion"
    _, rows = read_curated(default_curated)
    p = rows[0]["cached_path"]
    preds = [
        {"path": p, "label": "a", "prediction": "b", "prob_a": "0.2", "prob_b": "0.8"},
        {"path": p, "label": "a", "prediction": "a", "prob_a": "0.9", "prob_b": "0.1"},
        {"path": p, "label": "b", "prediction": "a", "prob_a": "0.6", "prob_b": "0.4"},
    ]
    errs = mistakes(preds)[:5]
    assert [(e["label"], e["confidence"]) for e in errs] == [("a", 0.8), ("b", 0.6)]
    fig = error_grid(default_curated, errs, "errors", cols=3)
    assert sum(len(a.images) for a in fig.axes) == 2 and fig.axes[0].get_title().startswith("a → b")
