"""``NsfwModel``: a network plus everything callers need to use it correctly.

It takes images in [0, 1] (float) or 0..255 (uint8), normalises them itself (so the data path can
stay uint8 until the device), and carries its input size, minimum size, Grad-CAM target layer and
stages for :func:`nsfw_lab.models.freeze`. Its ``state_dict`` has the inner network's keys (the
torchvision names), so checkpoints load into plain torchvision models too.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nsfw_lab.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs from its callers (all plain types, stored in run configs)."""

    name: str
    num_classes: int
    input_size: int  # default training/eval size
    min_size: int  # smallest input the architecture accepts
    target_layer: str  # Grad-CAM layer, a dotted path inside the network ("layer4.-1")
    stages: tuple[tuple[str, ...], ...]  # module names of each freezable stage, input side first
    head: tuple[str, ...]  # modules replaced for num_classes (never frozen)
    weights: str  # "imagenet", "none" or the path it was loaded from
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    arch_kwargs: dict[str, Any] = field(default_factory=dict)  # what rebuilds the network
    map_layout: str = "NCHW"  # layout of the stage outputs ("NHWC": Swin's); Grad-CAM and map sizes follow it

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed view for JSON (tuples become lists)."""
        return asdict(self)


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.layer4[-1]`` from ``"layer4.-1"`` (negative indices allowed)."""
    mod = root
    for part in path.split("."):
        mod = mod[int(part)] if part.lstrip("-").isdigit() else getattr(mod, part)  # type: ignore[index]
    return mod


class NsfwModel(nn.Module):
    """A classifier ``net`` with its :class:`ModelSpec`; see the module docstring."""

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self.frozen_stages = 0
        mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.register_buffer("mean_255", mean * 255, persistent=False)  # for uint8 input: one subtract and
        self.register_buffer("inv_std_255", 1 / (std * 255), persistent=False)  # one multiply, in place

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 or [0, 1] images -> normalised float input of the network."""
        if x.dtype == torch.uint8:
            return x.float().sub_(self.mean_255).mul_(self.inv_std_255)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor) -> Any:
        """Logits ``(N, num_classes)``; InceptionV3 in training mode returns ``(logits, aux_logits)``."""
        return self.net(self.normalize(x))

    @property
    def target_layer(self) -> nn.Module:
        """The layer Grad-CAM should hook."""
        return get_submodule(self.net, self.spec.target_layer)

    def stage_modules(self, k: int) -> list[nn.Module]:
        """Modules of stage ``k`` (0 = stem)."""
        return [get_submodule(self.net, n) for n in self.spec.stages[k]]

    def train(self, mode: bool = True) -> NsfwModel:
        """Like ``nn.Module.train``, but BatchNorm layers in frozen stages stay in eval mode."""
        super().train(mode)
        for k in range(self.frozen_stages):
            for mod in self.stage_modules(k):
                for m in mod.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    # The inner network's names, so files load into torchvision models and back.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The inner network's state dict (torchvision key names)."""
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Load a state dict with the inner network's key names."""
        return self.net.load_state_dict(OrderedDict(state_dict), strict=strict, assign=assign)


def freeze(model: NsfwModel, stages: int) -> list[str]:
    """Freeze the first ``stages`` stages (stem, then the blocks) and unfreeze the rest.

    Frozen parameters get ``requires_grad=False``; BatchNorm layers in frozen stages are held in eval
    mode (running statistics fixed) even after ``model.train()``. The head is never frozen. Returns the
    names of the frozen modules.
    """
    n = len(model.spec.stages)
    if not 0 <= stages <= n:
        raise ValueError(f"{model.spec.name} has {n} stages; freeze-stages must be 0..{n}, not {stages}")
    for p in model.parameters():
        p.requires_grad_(True)
    model.frozen_stages = stages
    names = []
    for k in range(stages):
        for name, mod in zip(model.spec.stages[k], model.stage_modules(k), strict=True):
            for p in mod.parameters():
                p.requires_grad_(False)
            names.append(name)
    model.train(model.training)
    return names
