"""torchvision v2 transforms per model input size; the eval pipeline is defined once, here.

Train: RandomResizedCrop + horizontal flip (the base; ablations add to it later).
Eval: resize the short side to ``size / crop_ratio`` then centre-crop ``size`` — the same function
serves validation, test, prediction and Grad-CAM, so no code path preprocesses differently
(the original project squashed to 256 for training and to 224 for evaluation).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_RATIO = 0.875  # 224 / 256, torchvision's classic ratio


def _finish(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def train_transform(
    size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    scale: tuple[float, float] = (0.35, 1.0),
    extra: list[v2.Transform] | None = None,
    normalize: bool = True,
) -> v2.Compose:
    """Random resized crop to ``size`` + horizontal flip (+ ``extra`` augmentations), then normalise.

    ``normalize=False`` keeps uint8 output: the training engine normalises on the device (inside
    :class:`nsfw_lab.models.NsfwModel`), which keeps the loader's batches four times smaller.
    """
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            *(extra or []),
            *(_finish(mean, std) if normalize else []),
        ]
    )


def eval_transform(
    size: int,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    crop_ratio: float = EVAL_CROP_RATIO,
    normalize: bool = True,
) -> v2.Compose:
    """Resize the short side to ``round(size / crop_ratio)``, centre-crop ``size``, normalise
    (``normalize=False``: uint8 output, normalised later by the model)."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(size / crop_ratio), antialias=True),
            v2.CenterCrop(size),
            *(_finish(mean, std) if normalize else []),
        ]
    )
