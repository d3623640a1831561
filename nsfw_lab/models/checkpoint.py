"""The checkpoint file format: tensors and plain types only (``torch.load(..., weights_only=True)``),
written atomically, with a format number.

A checkpoint holds the model's state dict (torchvision key names) and its spec, so that any stage can
rebuild the model (:func:`nsfw_lab.models.model_from_spec`); the training engine adds the optimiser,
LR scheduler and AMP scaler states, the position, the running sums of the epoch in progress, the epoch
history, the best score so far and every process's RNG states (:mod:`nsfw_lab.train.rng`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_open

FORMAT = 1


def save(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, **state}, f)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` (weights only), or a one-line error."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NsfwLabError(f"{path}: no checkpoint (nothing to resume or evaluate)") from None
    except Exception as exc:
        raise NsfwLabError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise NsfwLabError(f"{path}: not an nsfw-lab checkpoint (format {FORMAT})")
    return ck


def to_cpu(obj: Any) -> Any:
    """A deep copy of nested dicts/lists with every tensor moved to the CPU (for saving)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
