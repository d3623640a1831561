"""Linear probes on cached frozen-backbone features: the cheap half of a transfer-learning study.

A frozen ImageNet backbone is a fixed function of the image, so its pooled features (what the classifier
head reads) are computed once per split and cached; a multinomial logistic regression on them is the
linear probe, and a data-size sweep refits it on nested training subsets in seconds. The probe's test
predictions are written like a run's (``eval_test.json``, ``predictions_test.csv``), so the paired
comparisons of :mod:`nsfw_lab.course.compare` take it like any trained run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsfw_lab.data.dataset import CuratedImageDataset, make_loader
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.evaluate.linear import C_GRID, choose_probe
from nsfw_lab.evaluate.metrics import classification_metrics
from nsfw_lab.evaluate.scoring import write_predictions
from nsfw_lab.models import NsfwModel
from nsfw_lab.models.wrapper import get_submodule
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import atomic_write_json
from nsfw_lab.utils.progress import tqdm


@dataclass(frozen=True)
class Features:
    """Pooled backbone features of one split: ``x (N, D)``, labels ``y (N,)`` and the cached image paths."""

    x: np.ndarray
    y: np.ndarray
    paths: list[str]
    classes: list[str]

    def subset(self, per_class: int | None, seed: int = 0) -> Features:
        """At most ``per_class`` images of each class, drawn in a seeded order (nested for one seed)."""
        if per_class is None:
            return self
        order = np.random.default_rng(seed).permutation(len(self.y))
        keep = np.sort(np.concatenate([order[self.y[order] == k][:per_class] for k in range(len(self.classes))]))
        return Features(self.x[keep], self.y[keep], [self.paths[i] for i in keep], self.classes)


@torch.inference_mode()
def backbone_features(
    model: NsfwModel, data: Path, split: str, batch_size: int = 64, progress: bool = True
) -> Features:
    """What ``model``'s classifier head reads, for every image of ``split`` (eval transform at the model's size)."""
    ds = CuratedImageDataset(data, split, eval_transform(model.spec.input_size, normalize=False))
    head = get_submodule(model.net, model.spec.head[0])
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].flatten(1).float().cpu()))
    model.eval()
    try:
        for x, _ in tqdm(make_loader(ds, batch_size, train=False), desc=f"features {split}", disable=not progress):
            model(x)
    finally:
        hook.remove()
    feats = torch.cat(seen).numpy() if seen else np.zeros((0, 0), np.float32)
    return Features(feats, np.asarray(ds.targets), [r["cached_path"] for r in ds.rows], ds.classes)


def cached_features(model: NsfwModel, data: Path, split: str, cache: Path, progress: bool = True) -> Features:
    """:func:`backbone_features`, read from ``cache`` (an ``.npz``) when a previous call wrote it."""
    cache = Path(cache)
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return Features(z["x"], z["y"], [str(p) for p in z["paths"]], [str(c) for c in z["classes"]])
    f = backbone_features(model, data, split, progress=progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.tmp.npz")
    np.savez(tmp, x=f.x, y=f.y, paths=np.array(f.paths), classes=np.array(f.classes))
    tmp.replace(cache)  # atomic: a killed run leaves no half-written cache
    return f


@dataclass(frozen=True)
class Probe:
    """A fitted linear probe and how it was chosen."""

    model: Any  # sklearn Pipeline (standardise, logistic regression)
    c: float
    val_macro_f1: float
    train_images: int

    def predict_proba(self, f: Features) -> np.ndarray:
        """Class probabilities of the images in ``f``."""
        return self.model.predict_proba(f.x)


def fit_probe(train: Features, val: Features, grid: tuple[float, ...] = C_GRID, seed: int = 0) -> Probe:
    """Standardise the features and fit a multinomial logistic regression for each ``C`` in ``grid``; keep
    the one with the best validation macro-F1 (never test)."""
    pipe, c, score = choose_probe(train.x, train.y, val.x, val.y, len(train.classes), grid, seed)
    return Probe(pipe, c, score, len(train.y))


def score_probe(probe: Probe, test: Features, out: Path, n_boot: int = 1000) -> dict[str, Any]:
    """Score ``probe`` on ``test``, write ``out``'s ``eval_test.json`` and ``predictions_test.csv`` like a run's
    evaluation, and return the evaluation."""
    files = RunDir(out)
    files.path.mkdir(parents=True, exist_ok=True)
    probs = probe.predict_proba(test)
    result = {
        "model": "linear probe",
        "c": probe.c,
        "val_macro_f1": probe.val_macro_f1,
        "train_images": probe.train_images,
        **classification_metrics(test.y, probs, test.classes, n_boot),
    }
    atomic_write_json(files.evaluation("test"), result)
    write_predictions(files, "test", test.paths, test.classes, test.y, probs)
    return result
