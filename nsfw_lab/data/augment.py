"""The augmentations the original article tried, by name, for ablations (``nsfw-lab train --augment``).

The article: "colour, Gaussian noise, rotation, translation, shear, hue/contrast ... did not help much".
Each entry is a torchvision v2 transform that takes and returns a uint8 image (the training pipeline
stays uint8 until the model normalises on the device). They run after the base crop and flip, in the
order given, under the per-image seed of :class:`nsfw_lab.train.sampler.SeededDataset`, so an ablation
run is as reproducible and resumable as any other.

Magnitudes follow common practice for 224 px fine-tuning (torchvision's references and the article's
own ``RandomRotation(30)``); colour jitter and hue/contrast are split so that each changes different
channels (brightness + saturation vs hue + contrast).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nsfw_lab.errors import NsfwLabError

# torchvision is imported when a transform is built, so the CLI and the config can list names cheaply.


def _v2() -> Any:
    from torchvision.transforms import v2

    return v2


def _gaussian_noise(sigma: float) -> Any:
    import torch

    v2 = _v2()  # v2.GaussianNoise works on float images; convert around it so the pipeline stays uint8
    to_float, to_uint8 = v2.ToDtype(torch.float32, scale=True), v2.ToDtype(torch.uint8, scale=True)
    return v2.Compose([to_float, v2.GaussianNoise(sigma=sigma, clip=True), to_uint8])


@dataclass(frozen=True)
class Augmentation:
    """One named augmentation: what it does (for tables and help) and how to build it."""

    name: str
    description: str
    build: Callable[[], Any]


AUGMENTATIONS: dict[str, Augmentation] = {
    a.name: a
    for a in (
        Augmentation("color_jitter", "brightness and saturation x U(0.6, 1.4)",
                     lambda: _v2().ColorJitter(brightness=0.4, saturation=0.4)),
        Augmentation("gaussian_noise", "additive Gaussian noise, sigma 0.08 of the range",
                     lambda: _gaussian_noise(0.08)),
        Augmentation("rotation", "rotation by U(-30, 30) degrees (the article's code)",
                     lambda: _v2().RandomRotation(30)),
        Augmentation("translation", "shift by up to 15% of width and height",
                     lambda: _v2().RandomAffine(degrees=0, translate=(0.15, 0.15))),
        Augmentation("shear", "shear by U(-15, 15) degrees on both axes",
                     lambda: _v2().RandomAffine(degrees=0, shear=(-15, 15, -15, 15))),
        Augmentation("hue_contrast", "hue shift U(-0.1, 0.1), contrast x U(0.6, 1.4)",
                     lambda: _v2().ColorJitter(contrast=0.4, hue=0.1)),
    )
}  # fmt: skip


def check_names(names: Sequence[str]) -> None:
    """One-line error for an unknown or repeated name."""
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise NsfwLabError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")
    if len(set(names)) != len(names):
        raise NsfwLabError(f"augmentation given twice: {', '.join(names)}")


def augmentations(names: Sequence[str]) -> list[Any]:
    """Fresh transforms for ``names``, in that order."""
    check_names(names)
    return [AUGMENTATIONS[n].build() for n in names]
