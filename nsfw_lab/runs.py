"""Loading a finished (or running) training run: its config, classes and a ready model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import NsfwModel, model_from_spec
from nsfw_lab.train import checkpoint as ckpt
from nsfw_lab.train.distributed import Dist
from nsfw_lab.train.engine import BEST, CONFIG, LAST, pick_device


@dataclass
class LoadedRun:
    """A run's model (eval mode, on ``device``) with what produced it."""

    run_dir: Path
    model: NsfwModel
    classes: list[str]
    config: dict[str, Any]  # config.json
    checkpoint: str  # "best" or "last"
    device: torch.device

    @property
    def image_size(self) -> int:
        """The model's input size."""
        return self.model.spec.input_size

    @property
    def data_dir(self) -> Path:
        """The curated folder it was trained on."""
        return Path(self.config["data"]["path"])


def load_run(run_dir: Path | str, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """Rebuild the model of ``run_dir`` from its spec and load ``best.pt`` or ``last.pt`` (weights only)."""
    run = Path(run_dir)
    if not (run / CONFIG).is_file():
        raise NsfwLabError(f"{run}: not a training run (no {CONFIG})")
    if checkpoint not in ("best", "last"):
        raise NsfwLabError(f"--checkpoint must be best or last, not {checkpoint!r}")
    ck = ckpt.load(run / (BEST if checkpoint == "best" else LAST))
    cfg = json.loads((run / CONFIG).read_text())
    model = model_from_spec(ck["spec"])
    model.load_state_dict(ck["model"])
    dev = pick_device(device, Dist())
    return LoadedRun(run, model.to(dev).eval(), list(cfg["classes"]), cfg, checkpoint, dev)
