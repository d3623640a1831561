"""``--decode gpu``: JPEG bytes through the DataLoader, decoded and augmented on the training device.

The loader's workers only read files (:class:`EncodedDataset`); the main process decodes each batch with
one ``torchcodec.decoders.decode_jpeg(..., device=cuda)`` call (nvJPEG) and applies the same seeded transform
per image as the CPU path (:class:`nsfw_lab.train.sampler.SeededDataset`), on the device. Crop and flip
parameters are drawn from the CPU generator under the image's seed, so a GPU-decoded run sees the same
crops as a CPU-decoded one; only augmentations that draw pixels on the device (Gaussian noise) differ.
This pays when the CPU cores cannot decode fast enough for the GPU (``nsfw-lab bench`` on a GPU measures
it); validation keeps decoding in the workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from nsfw_lab.data.dataset import CuratedImageDataset
from nsfw_lab.data.decode import decode_batch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class EncodedDataset(Dataset):
    """Items ``(jpeg bytes, label, index, seed)`` for the resumable sampler's ``(index, seed)`` pairs."""

    def __init__(self, base: CuratedImageDataset, transform: Callable) -> None:
        self.base, self.transform = base, transform  # the transform runs in DeviceDecoder, not here

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        index, seed = item
        return self.base.encoded(index), self.base.targets[index], index, seed


def collate_encoded(items: list[tuple[torch.Tensor, int, int, int]]) -> tuple[list[torch.Tensor], Any, Any, Any]:
    """Byte tensors stay a list (they differ in length); labels, indices and seeds become tensors."""
    data, y, idx, seeds = zip(*items, strict=True)
    return list(data), torch.tensor(y), torch.tensor(idx), torch.tensor(seeds, dtype=torch.int64)


class DeviceDecoder:
    """Turns a batch of :func:`collate_encoded` into ``(x, y, idx)`` on ``device``: decode, then each image's
    seeded transform, then stack (uint8; the model normalises)."""

    def __init__(self, transform: Callable, device: torch.device, channels_last: bool = False) -> None:
        self.transform, self.device, self.channels_last = transform, device, channels_last

    def __call__(self, batch: tuple[list[torch.Tensor], Any, Any, Any]) -> Batch:
        data, y, idx, seeds = batch
        images = decode_batch(data, self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        out = []
        for img, seed in zip(images, seeds.tolist(), strict=True):
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                out.append(self.transform(img))
        x = torch.stack(out)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True), idx
