"""The Dataset over a curated folder, the transforms and the loader helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nsfw_lab.data.dataset import CuratedImageDataset, class_weights, make_loader, read_curated
from nsfw_lab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from nsfw_lab.errors import NsfwLabError


def test_splits_cover_the_manifest_with_shared_labels(default_curated: Path) -> None:
    classes, rows = read_curated(default_curated)
    sets = {s: CuratedImageDataset(default_curated, s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in sets.values()) == len(rows)
    assert all(d.classes == classes == ["drawings", "hentai", "neutral", "porn", "sexy"] for d in sets.values())
    img, label = sets["val"][0]
    row = sets["val"].rows[0]
    assert img.dtype == torch.uint8 and img.shape[0] == 3
    assert min(img.shape[1:]) == min(96, int(row["width"]), int(row["height"]))
    assert classes[label] == sets["val"].rows[0]["class"]


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the eval transform's normalisation (back to [0, 1])."""
    return (x * torch.tensor(IMAGENET_STD).view(-1, 1, 1) + torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)).clamp(0, 1)


def test_transforms_give_model_sized_normalised_tensors(default_curated: Path) -> None:
    ds = CuratedImageDataset(default_curated, "train", train_transform(56))
    x, _ = ds[0]
    assert x.shape == (3, 56, 56) and x.dtype == torch.float32
    ev = CuratedImageDataset(default_curated, "test", eval_transform(56))
    a, _ = ev[3]
    b, _ = ev[3]
    assert torch.equal(a, b)  # eval is deterministic
    assert float(denormalize(a).min()) >= 0.0 and float(denormalize(a).max()) <= 1.0
    assert float(a.mean().abs()) < 3


def test_eval_transform_is_resize_then_centre_crop() -> None:
    img = torch.zeros(3, 100, 200, dtype=torch.uint8)
    img[:, :, 90:110] = 255  # a bright band in the middle column range survives the centre crop
    out = denormalize(eval_transform(64)(img))
    assert out.shape == (3, 64, 64)
    assert out[:, :, 30:34].mean() > 0.9 and out[:, :, :5].mean() < 0.1


def test_class_weights_balance_imbalanced_counts(default_curated: Path) -> None:
    ds = CuratedImageDataset(default_curated, "train")
    ds.targets = [0] * 30 + [1] * 10 + [2] * 60  # pretend imbalance
    w = class_weights(ds)
    counts = torch.tensor([30.0, 10.0, 60.0, 0.0, 0.0])
    assert w[3] == 0 and w[4] == 0
    assert torch.allclose((w[:3] * counts[:3]), torch.full((3,), 100 / 3), rtol=1e-5)


def test_loader_batches_and_is_seeded(default_curated: Path) -> None:
    ds = CuratedImageDataset(default_curated, "train", eval_transform(32))
    first = [next(iter(make_loader(ds, 8, train=True, seed=5, workers=0)))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    idx_a = list(make_loader(ds, 8, train=True, seed=5, workers=0).sampler)
    idx_b = list(make_loader(ds, 8, train=True, seed=6, workers=0).sampler)
    assert idx_a != idx_b
    xb, yb = next(iter(make_loader(ds, 8, train=False, workers=2)))
    assert xb.shape == (8, 3, 32, 32) and yb.shape == (8,)


def test_uncurated_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NsfwLabError, match="not a curated dataset"):
        CuratedImageDataset(tmp_path, "train")
