"""The training engine: configs and presets, the loop, checkpoints, resume and DDP (``nsfw-lab train``)."""

from nsfw_lab.train.config import PRESETS, TrainConfig, make_config
from nsfw_lab.train.engine import RunResult, fit

__all__ = ["PRESETS", "RunResult", "TrainConfig", "fit", "make_config"]
