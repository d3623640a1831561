"""Models: the hand-written baseline, torchvision ResNets and InceptionV3, each wrapped with its spec.

Loaded on first use (torchvision is heavy); :data:`MODELS`, the architecture names, needs no torch.
"""

from nsfw_lab.models.names import MODELS
from nsfw_lab.utils.lazy import lazy_getattr

_WHERE = {
    "ConvPoolFC": "baseline",
    "count_parameters": "summary",
    "layer_table": "summary",
    "ModelSpec": "wrapper",
    "NsfwModel": "wrapper",
    "freeze": "wrapper",
    "build_model": "zoo",
    "imagenet_file": "zoo",
    "model_from_spec": "zoo",
}
__all__ = ["MODELS", *_WHERE]
__getattr__ = lazy_getattr(__name__, {n: (f"nsfw_lab.models.{m}", n) for n, m in _WHERE.items()})
