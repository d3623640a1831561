"""Decoding the curated cache: TorchCodec on the CPU (the default), Pillow, or nvJPEG on the GPU.

The cache holds clean RGB JPEGs written by curation, so the fast path needs none of :mod:`imageio`'s
defences. TorchCodec (which replaces torchvision.io's image decoders, deprecated since torchvision 0.29;
same libjpeg-turbo, the same pixels as Pillow) goes straight from the file to a uint8 CHW tensor, about
twice as fast as ``PIL.Image.open`` + ``pil_to_tensor`` on 256 px cache files (``nsfw-lab bench``
records both rates). ``gpu`` keeps the bytes encoded through the DataLoader and decodes whole batches
on the training device with nvJPEG (:mod:`nsfw_lab.train.device_decode`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchcodec.decoders import decode_image, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from nsfw_lab.data import DECODERS
from nsfw_lab.errors import NsfwLabError

__all__ = ["DECODERS", "check_decoder", "decode_batch", "decode_file", "read_encoded"]


def read_encoded(path: Path) -> torch.Tensor:
    """The file's bytes as a 1-D uint8 tensor (one-line error naming the file)."""
    try:
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))  # one read, no copy
    except OSError as exc:
        raise NsfwLabError(f"{path}: cannot read the cached image ({exc})") from None


def decode_file(path: Path, decoder: str = "torchcodec") -> torch.Tensor:
    """A cached image as a uint8 ``(3, H, W)`` tensor, decoded with ``torchcodec`` or ``pil``."""
    if decoder == "pil":
        try:
            with Image.open(path) as im:
                return pil_to_tensor(im.convert("RGB"))
        except OSError as exc:
            raise NsfwLabError(f"{path}: cannot decode the cached image ({exc})") from None
    try:
        return decode_image(read_encoded(path), mode="RGB")
    except (RuntimeError, ValueError) as exc:
        raise NsfwLabError(f"{path}: cannot decode the cached image ({exc})") from None


def decode_batch(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG byte tensors on ``device`` in one call (nvJPEG batches them on CUDA); RGB uint8 CHW."""
    return decode_jpeg(encoded, mode="RGB", device=device)  # type: ignore[return-value]


def check_decoder(name: str) -> None:
    """One-line error for an unknown decoder."""
    if name not in DECODERS:
        raise NsfwLabError(f"unknown decoder {name!r}; choose {', '.join(DECODERS)}")
