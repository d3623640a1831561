"""Linear probes on cached ImageNet features: cached once, nested subsets, chosen on val, scored like a run
(so the paired comparison takes them), and far above chance on the proxy with real pretrained weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nsfw_lab.course import probe as probe_mod
from nsfw_lab.course.compare import paired_difference
from nsfw_lab.course.probe import cached_features, fit_probe, score_probe
from nsfw_lab.models import build_model


@pytest.fixture(scope="module")
def feats(small_curated: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("features")
    model = build_model("efficientnet_lite0", 5, "imagenet", 64)
    splits = ("train", "val", "test")
    return {s: cached_features(model, small_curated, s, cache / f"{s}.npz", progress=False) for s in splits}


def test_features_are_cached_and_reused(feats: dict, small_curated: Path, tmp_path: Path, monkeypatch) -> None:
    train = feats["train"]
    assert train.x.shape == (len(train.y), 1280) and len(train.paths) == len(train.y)
    model = build_model("efficientnet_lite0", 5, "imagenet", 64)
    first = cached_features(model, small_curated, "val", tmp_path / "val.npz", progress=False)
    monkeypatch.setattr(probe_mod, "backbone_features", lambda *a, **k: pytest.fail("recomputed"))
    again = cached_features(model, small_curated, "val", tmp_path / "val.npz", progress=False)
    assert np.array_equal(first.x, again.x) and first.paths == again.paths and again.classes == first.classes
    assert np.allclose(first.x, feats["val"].x, atol=1e-5)


def test_subsets_are_per_class_and_nested(feats: dict) -> None:
    small, big = feats["train"].subset(5, seed=1), feats["train"].subset(12, seed=1)
    assert np.bincount(small.y).tolist() == [5] * 5 and np.bincount(big.y).tolist() == [12] * 5
    assert set(small.paths) < set(big.paths)
    assert feats["train"].subset(None) is feats["train"]


def test_probe_beats_chance_and_writes_a_comparable_evaluation(feats: dict, tmp_path: Path) -> None:
    full = fit_probe(feats["train"], feats["val"])
    assert full.c in probe_mod.C_GRID and full.train_images == len(feats["train"].y)
    ev = score_probe(full, feats["test"], tmp_path / "probe_all", n_boot=100)
    assert ev["accuracy"] > 0.5 and ev["n"] == len(feats["test"].y)  # chance is 0.2: real ImageNet features
    tiny = fit_probe(feats["train"].subset(2), feats["val"])
    score_probe(tiny, feats["test"], tmp_path / "probe_2", n_boot=100)
    d = paired_difference(tmp_path / "probe_all", tmp_path / "probe_2", n_boot=100)
    assert d["n"] == len(feats["test"].y) and d["delta"] == pytest.approx(
        ev["macro_f1"] - __import__("json").loads((tmp_path / "probe_2" / "eval_test.json").read_text())["macro_f1"]
    )
