"""Decoding the curated cache: TorchCodec on the CPU (the default), Pillow, or nvJPEG on the GPU.

The cache holds clean RGB JPEGs written by curation, so the fast path needs none of :mod:`imageio`'s
defences. TorchCodec (which replaces torchvision.io's image decoders, deprecated since torchvision 0.29;
same libjpeg-turbo, the same pixels as Pillow) goes straight from the file to a uint8 CHW tensor, about
twice as fast as ``PIL.Image.open`` + ``pil_to_tensor`` on 256 px cache files (``nsfw-lab bench``
records both rates). ``gpu`` keeps the bytes encoded through the DataLoader and decodes whole batches
on the training device with nvJPEG (:mod:`nsfw_lab.train.device_decode`).

TorchCodec is optional (the ``decode`` extra; the lock installs it): its native library is built against
one torch release, so in an environment that brought its own PyTorch it may be missing or fail to load.
Then ``torchcodec`` decodes with Pillow, which gives the same pixels, and says so once per process;
``gpu`` needs it and says so in one line.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from nsfw_lab.data import DECODERS
from nsfw_lab.errors import NsfwLabError

__all__ = [
    "DECODERS",
    "check_decoder",
    "decode_batch",
    "decode_file",
    "effective_decoder",
    "read_encoded",
    "torchcodec_problem",
]


@functools.cache
def _torchcodec() -> ModuleType | str:
    """``torchcodec.decoders``, or why it cannot be used here (one line)."""
    try:
        from torchcodec import decoders
    except ModuleNotFoundError:
        return "not installed (pip install torchcodec, or the nsfw-lab[decode] extra)"
    except (ImportError, OSError, RuntimeError) as exc:  # a build for another torch: its native library fails
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"installed but does not load with torch {torch.__version__} ({first[:160]})"
    return decoders


def torchcodec_problem() -> str | None:
    """None when TorchCodec decodes here, else the one-line reason it cannot."""
    tc = _torchcodec()
    return tc if isinstance(tc, str) else None


@functools.cache
def _say_fallback() -> None:
    print(f"note: TorchCodec {torchcodec_problem()}; decoding with Pillow (same pixels)", file=sys.stderr)


def effective_decoder(name: str) -> str:
    """The CPU decoder that will run for ``name``: ``pil`` in place of ``torchcodec`` when TorchCodec is
    unusable here (said once per process); ``gpu`` without TorchCodec is a one-line error."""
    check_decoder(name)
    if name == "pil" or torchcodec_problem() is None:
        return name
    if name == "gpu":
        raise NsfwLabError(f"--decode gpu needs TorchCodec (nvJPEG), which is {torchcodec_problem()}")
    _say_fallback()
    return "pil"


def read_encoded(path: Path) -> torch.Tensor:
    """The file's bytes as a 1-D uint8 tensor (one-line error naming the file)."""
    try:
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))  # one read, no copy
    except OSError as exc:
        raise NsfwLabError(f"{path}: cannot read the cached image ({exc})") from None


def decode_file(path: Path, decoder: str = "torchcodec") -> torch.Tensor:
    """A cached image as a uint8 ``(3, H, W)`` tensor, decoded with ``torchcodec`` or ``pil``."""
    if effective_decoder(decoder) == "pil":
        try:
            with Image.open(path) as im:
                return pil_to_tensor(im.convert("RGB"))
        except OSError as exc:
            raise NsfwLabError(f"{path}: cannot decode the cached image ({exc})") from None
    try:
        return _torchcodec().decode_image(read_encoded(path), mode="RGB")  # type: ignore[union-attr]
    except (RuntimeError, ValueError) as exc:
        raise NsfwLabError(f"{path}: cannot decode the cached image ({exc})") from None


def decode_batch(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG byte tensors on ``device`` in one call (nvJPEG batches them on CUDA); RGB uint8 CHW."""
    effective_decoder("gpu")
    return _torchcodec().decode_jpeg(encoded, mode="RGB", device=device)  # type: ignore[union-attr]


def check_decoder(name: str) -> None:
    """One-line error for an unknown decoder."""
    if name not in DECODERS:
        raise NsfwLabError(f"unknown decoder {name!r}; choose {', '.join(DECODERS)}")
