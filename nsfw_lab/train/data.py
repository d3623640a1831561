"""Training and validation loaders over a curated folder (uint8 batches; the model normalises)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from nsfw_lab.data.augment import augmentations
from nsfw_lab.data.dataset import CuratedImageDataset, loader_workers, make_loader
from nsfw_lab.data.transforms import eval_transform, train_transform
from nsfw_lab.train.config import TrainConfig
from nsfw_lab.train.distributed import Dist
from nsfw_lab.train.sampler import ResumableBatchSampler, SeededDataset


def train_val_datasets(
    data: Path, size: int, crop_scale: tuple[float, float], augment: tuple[str, ...] = ()
) -> tuple[SeededDataset, CuratedImageDataset]:
    """The train split with seeded augmentation (crop, flip, then ``augment`` by name) and the val split with
    the eval transform (both uint8)."""
    tf = train_transform(size, scale=crop_scale, extra=augmentations(augment), normalize=False)
    train = SeededDataset(CuratedImageDataset(data, "train"), tf)
    return train, CuratedImageDataset(data, "val", eval_transform(size, normalize=False))


def make_train_loader(ds: SeededDataset, c: TrainConfig, d: Dist, device: torch.device) -> DataLoader:
    """Resumable, distributed batches; see :mod:`nsfw_lab.train.sampler`."""
    workers = loader_workers(c.workers)
    g = torch.Generator()
    g.manual_seed(c.seed)
    return DataLoader(
        ds,
        batch_sampler=ResumableBatchSampler(len(ds), c.batch_size, c.seed, d.rank, d.world_size),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=g,
    )


def make_val_loader(ds: CuratedImageDataset, c: TrainConfig, d: Dist, device: torch.device) -> DataLoader:
    """This process's share of the validation split (every image on exactly one process)."""
    part = Subset(ds, range(d.rank, len(ds), d.world_size))
    return make_loader(part, c.batch_size, train=False, seed=c.seed, workers=c.workers, device=device.type)
