"""Training and validation loaders over a curated folder (uint8 batches; the model normalises).

``decoder`` picks how the cache is decoded (:mod:`nsfw_lab.data.decode`): in the workers with
TorchCodec (default) or Pillow, or ``gpu``: the workers read bytes and the training device decodes
and augments (:mod:`nsfw_lab.train.device_decode`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from nsfw_lab.data.augment import augmentations
from nsfw_lab.data.dataset import CuratedImageDataset, loader_options, make_loader
from nsfw_lab.data.transforms import eval_transform, train_transform
from nsfw_lab.train.config import TrainConfig
from nsfw_lab.train.device_decode import DeviceDecoder, EncodedDataset, collate_encoded
from nsfw_lab.train.distributed import Dist
from nsfw_lab.train.sampler import ResumableBatchSampler, SeededDataset


def train_val_datasets(
    data: Path, size: int, crop_scale: tuple[float, float], augment: tuple[str, ...] = (), decoder: str = "torchcodec"
) -> tuple[SeededDataset | EncodedDataset, CuratedImageDataset]:
    """The train split with seeded augmentation (crop, flip, then ``augment`` by name) and the val split with
    the eval transform (both uint8)."""
    tf = train_transform(size, scale=crop_scale, extra=augmentations(augment), normalize=False)
    base = CuratedImageDataset(data, "train", decoder=decoder)
    train = EncodedDataset(base, tf) if decoder == "gpu" else SeededDataset(base, tf)
    return train, CuratedImageDataset(data, "val", eval_transform(size, normalize=False), decoder=base.decoder)


def loader_over(
    ds: SeededDataset | EncodedDataset,
    sampler: ResumableBatchSampler,
    workers: int | None,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader of ``sampler``'s batches with :func:`loader_options`; encoded batches (``--decode gpu``) are
    collated into one buffer and not pinned (the decoder reads them from host memory)."""
    opts = loader_options(workers, device.type)
    encoded = isinstance(ds, EncodedDataset)
    if encoded:
        opts["pin_memory"] = False
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_encoded if encoded else None,
                      generator=generator, **opts)  # fmt: skip


def batch_preparer(ds: SeededDataset | EncodedDataset, device: torch.device, channels_last: bool) -> Any:
    """For ``--decode gpu``: what turns a loader batch into device tensors (:class:`DeviceDecoder`); else None."""
    if not isinstance(ds, EncodedDataset):
        return None
    return DeviceDecoder(ds.transform, device, channels_last, ds.base.paths)


def make_train_loader(ds: SeededDataset | EncodedDataset, c: TrainConfig, d: Dist, device: torch.device) -> DataLoader:
    """Resumable, distributed batches; see :mod:`nsfw_lab.train.sampler`."""
    g = torch.Generator()
    g.manual_seed(c.seed)
    sampler = ResumableBatchSampler(len(ds), c.batch_size, c.seed, d.rank, d.world_size)
    return loader_over(ds, sampler, c.workers, device, g)


def make_val_loader(ds: CuratedImageDataset, c: TrainConfig, d: Dist, device: torch.device) -> DataLoader:
    """This process's share of the validation split (every image on exactly one process)."""
    part = Subset(ds, range(d.rank, len(ds), d.world_size))
    return make_loader(part, c.batch_size, train=False, seed=c.seed, workers=c.workers, device=device.type)
