"""Checkpoints: tensors and plain types only (``torch.load(..., weights_only=True)``), written atomically.

A checkpoint holds the model (torchvision key names), optimiser, LR scheduler and AMP scaler states,
the position (stage, epoch, optimiser steps done in the epoch, global step), the running sums of the
epoch in progress, the epoch history, the best score so far and every process's RNG states.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.fsutil import atomic_open

FORMAT = 1


def rng_state() -> dict[str, Any]:
    """This process's torch (CPU and CUDA), NumPy and Python RNG states as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(s: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    kind, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))


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
