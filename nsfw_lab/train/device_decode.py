"""``--decode gpu``: JPEG bytes through the DataLoader, decoded and augmented on the training device.

The loader's workers only read files (:class:`EncodedDataset`); a batch travels as one concatenated byte
buffer with the files' lengths (one shared-memory transfer per batch, not one per image; never pinned:
the decoder reads host memory). The main process decodes each batch with one
``torchcodec.decoders.decode_jpeg(..., device=cuda)`` call (nvJPEG) and applies each image's seeded transform
on the device. The crop and flip parameters are those of the CPU path for the same image and epoch (drawn
from the CPU generator under the image's seed); the pixels differ slightly (nvJPEG's IDCT, and uint8
resizing on CUDA goes through float), and noise drawn on the device comes from its own generator. This
pays when the CPU cores cannot decode as fast as the GPU trains (``nsfw-lab bench`` on a GPU measures
both); validation keeps decoding in the workers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from nsfw_lab.data.dataset import CuratedImageDataset
from nsfw_lab.data.decode import decode_batch
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.train.sampler import seeded

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class EncodedDataset(Dataset):
    """Items ``(jpeg bytes, label, index, seed)`` for the resumable sampler's ``(index, seed)`` pairs."""

    def __init__(self, base: CuratedImageDataset, transform: Callable) -> None:
        self.base, self.transform = base, transform  # the transform runs in DeviceDecoder, not here

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        index, seed = item
        return self.base.encoded(index), self.base.targets[index], index, seed


def collate_encoded(items: list[tuple[torch.Tensor, int, int, int]]) -> Encoded:
    """``(all bytes concatenated, lengths, labels, indices, seeds)``."""
    data, y, idx, seeds = zip(*items, strict=True)
    lengths = torch.tensor([len(d) for d in data])
    return torch.cat(data), lengths, torch.tensor(y), torch.tensor(idx), torch.tensor(seeds, dtype=torch.int64)


class DeviceDecoder:
    """Turns a batch of :func:`collate_encoded` into ``(x, y, idx)`` on ``device``: decode, then each image's
    seeded transform, then stack (uint8; the model normalises). ``paths`` (by dataset index) name the file
    in the one-line error when a batch does not decode."""

    def __init__(
        self, transform: Callable, device: torch.device, channels_last: bool = False, paths: list | None = None
    ) -> None:
        self.transform, self.device, self.channels_last, self.paths = transform, device, channels_last, paths

    def _decode(self, data: list[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
        try:
            return decode_batch(data, self.device)
        except (RuntimeError, ValueError) as exc:
            for d, i in zip(data, idx.tolist(), strict=True):  # find the file that fails, for the message
                try:
                    decode_batch([d], self.device)
                except (RuntimeError, ValueError):
                    name = self.paths[i] if self.paths else f"image {i}"
                    raise NsfwLabError(f"{name}: cannot decode on {self.device} ({exc})") from None
            raise NsfwLabError(f"cannot decode a batch on {self.device} ({exc})") from None

    def __call__(self, batch: Encoded) -> Batch:
        data, lengths, y, idx, seeds = batch
        images = self._decode(list(torch.split(data, lengths.tolist())), idx)
        out = []
        for img, seed in zip(images, seeds.tolist(), strict=True):
            with seeded(seed, self.device):
                out.append(self.transform(img))
        x = torch.stack(out)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True), idx
