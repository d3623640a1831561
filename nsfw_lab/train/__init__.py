"""The training engine: configs and presets, the loop, checkpoints, resume and DDP (``nsfw-lab train``).

The engine (torch, torchvision, DDP) loads on first use of ``fit``/``RunResult``, so the CLI starts fast.
"""

from nsfw_lab.train.config import PRESETS, TrainConfig, make_config
from nsfw_lab.utils.lazy import lazy_getattr

__all__ = ["PRESETS", "RunResult", "TrainConfig", "fit", "make_config"]
__getattr__ = lazy_getattr(__name__, {n: ("nsfw_lab.train.engine", n) for n in ("RunResult", "fit")})
