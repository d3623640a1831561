"""Loading a finished (or running) training run: its config, classes and a ready model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nsfw_lab.models import NsfwModel, model_from_spec
from nsfw_lab.models import checkpoint as ckpt
from nsfw_lab.rundir import RunDir, pick_device


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
    def files(self) -> RunDir:
        """The run folder's files."""
        return RunDir(self.run_dir)

    @property
    def data_dir(self) -> Path:
        """The curated folder it was trained on."""
        return Path(self.config["data"]["path"])


def load_run(run_dir: Path | str, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """Rebuild the model of ``run_dir`` from its spec and load its ``best`` or ``last`` checkpoint (weights only)."""
    files = RunDir(run_dir)
    cfg = files.read_config()
    saved = ckpt.load(files.checkpoint(checkpoint))
    model = model_from_spec(saved["spec"])
    model.load_state_dict(saved["model"])
    dev = pick_device(device)
    return LoadedRun(files.path, model.to(dev).eval(), list(cfg["classes"]), cfg, checkpoint, dev)
