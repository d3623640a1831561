"""Grad-CAM for every model of the study, through the ``grad-cam`` package, with its pitfalls handled.

:class:`GradCam` is a context manager around ``pytorch_grad_cam.GradCAM``:

- hooks the model's own target layer (``model.spec.target_layer``: ``layer4[-1]`` for ResNets,
  ``Mixed_7c`` for InceptionV3, the last conv block of the baseline, the last block of ConvNeXt and Swin) or
  another one by name; a transformer's channels-last token maps (Swin: ``spec.map_layout == "NHWC"``) go
  through grad-cam's ``reshape_transform``;
  :func:`cam_layer` picks the deepest layer whose map is still at least 4 x 4 at a reduced input size
  (``Mixed_7c`` is 8 x 8 at 299 px but 1 x 1 at 96 px, where every CAM would be flat);
- explains the class's logit (default) or its softmax probability (``target="probability"``): evidence
  that works by *suppressing the other classes* barely moves the class's own logit and is invisible to a
  logit CAM (the shortcut experiment of notebook 06 shows one), while the probability's gradient sees it;
- one target per image (grad-cam zips targets with the batch: one target for N images leaves N - 1
  CAMs empty);
- turns gradients on for the target layer's parameters even when the backbone is frozen, and runs under
  ``torch.enable_grad()`` (a CAM under ``no_grad``/``inference_mode`` is silently empty);
- on exit releases the hooks, restores ``requires_grad`` (dropping the gradients the CAM left on frozen
  parameters) and the train/eval mode (``GradCAM`` puts the
  model in eval mode as a side effect);
- raises instead of returning an empty CAM: grad-cam's own ``__exit__`` swallows ``IndexError``, and an
  all-zero or non-finite map would otherwise reach a figure unnoticed.

It calls ``model.zero_grad()`` (grad-cam does): do not use it between a backward pass and its step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models import NsfwModel
from nsfw_lab.models.wrapper import get_submodule


def map_sizes(model: NsfwModel, layers: Sequence[str], input_size: int) -> dict[str, tuple[int, int]]:
    """Spatial size of each layer's output for one ``input_size`` image (one forward pass, eval mode)."""
    sizes: dict[str, tuple[int, int]] = {}
    nhwc = model.spec.map_layout == "NHWC"

    def hook(name: str) -> Any:
        def record(_m: Any, _i: Any, out: Tensor) -> None:  # returns None: the output is left alone
            h, w = (out.shape[1], out.shape[2]) if nhwc else (out.shape[-2], out.shape[-1])
            sizes.setdefault(name, (int(h), int(w)))

        return record

    hooks = [get_submodule(model.net, name).register_forward_hook(hook(name)) for name in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sizes


def _to_nchw(t: Tensor) -> Tensor:
    return t.permute(0, 3, 1, 2)


CAM_MIN_SIDE = 7  # a 4x4 map cannot point at a motif: small inputs take an earlier stage


def cam_layer(model: NsfwModel, input_size: int, min_side: int = CAM_MIN_SIDE) -> str:
    """The model's target layer if its map is at least ``min_side`` on each side at ``input_size``, else the
    last module of the deepest stage that is (the first stage's, if none is)."""
    names = [model.spec.target_layer] + [stage[-1] for stage in reversed(model.spec.stages)]
    sizes = map_sizes(model, names, input_size)
    return next((n for n in names if min(sizes[n]) >= min_side), names[-1])


class GradCam:
    """``with GradCam(model) as cam: maps = cam(images, classes)``; see the module docstring."""

    def __init__(self, model: NsfwModel, layer: str | None = None, batch_size: int = 32, target: str = "logit") -> None:
        if target not in ("logit", "probability"):
            raise ValueError(f"target must be logit or probability, not {target!r}")
        self.model, self.batch_size, self.target = model, batch_size, target
        self.layer = layer or model.spec.target_layer
        self._cam: Any = None

    def __enter__(self) -> GradCam:
        from pytorch_grad_cam import GradCAM

        self._was_training = self.model.training
        layer = get_submodule(self.model.net, self.layer)
        self._grad_flags = [(p, p.requires_grad) for p in layer.parameters()]
        for p, _ in self._grad_flags:
            p.requires_grad_(True)
        nhwc = self.model.spec.map_layout == "NHWC"  # a transformer's (B, H, W, C) tokens, as grad-cam documents
        self._cam = GradCAM(model=self.model, target_layers=[layer], reshape_transform=_to_nchw if nhwc else None)
        return self

    def __exit__(self, *exc: object) -> None:  # never swallows an exception
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None
        for p, flag in self._grad_flags:
            p.requires_grad_(flag)
            if not flag:
                p.grad = None  # a frozen parameter must not leave with a gradient an optimiser would apply
        self.model.train(self._was_training)

    def __call__(self, images: Tensor, classes: Sequence[int], allow_flat: bool = False) -> np.ndarray:
        """CAMs ``(N, H, W)`` in [0, 1] at the input size, one per image for the class given with it.

        ``images``: ``(N, 3, H, W)`` uint8 or float in [0, 1] (the model normalises). A flat (all-zero) map
        raises unless ``allow_flat``: it is legitimate for a class the model found *no* evidence for (e.g. the
        true class of a confident mistake), never for the class it predicted.
        """
        if self._cam is None:
            raise RuntimeError("use GradCam inside a with block")
        if len(classes) != len(images):
            raise ValueError(f"one class per image: {len(images)} images, {len(classes)} classes")
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

        make = ClassifierOutputTarget if self.target == "logit" else ClassifierOutputSoftmaxTarget

        device = next(self.model.parameters()).device
        x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        out = []
        with torch.enable_grad():
            for i in range(0, len(x), self.batch_size):
                chunk = x[i : i + self.batch_size].to(device)
                targets = [make(int(c)) for c in classes[i : i + self.batch_size]]
                out.append(self._cam(input_tensor=chunk, targets=targets))
        cams = np.concatenate(out) if out else np.zeros((0, *x.shape[-2:]), dtype=np.float32)
        check(cams, f"{self.model.spec.name} at {self.layer}", allow_flat)
        return cams


def is_flat(cam: np.ndarray) -> bool:
    """True for a constant map (no positive evidence anywhere, or an empty gradient)."""
    return float(cam.max() - cam.min()) <= 1e-8


def check(cams: np.ndarray, name: str, allow_flat: bool = False) -> None:
    """Raise when any CAM is non-finite, or flat unless ``allow_flat`` (an empty gradient, not an explanation)."""
    bad = [i for i, c in enumerate(cams) if not np.isfinite(c).all() or (not allow_flat and is_flat(c))]
    if bad:
        raise NsfwLabError(
            f"{name}: Grad-CAM came back empty or non-finite for {len(bad)} of {len(cams)} images (first: #{bad[0]}); "
            "check that the layer's map is larger than 1 x 1 at this input size (see cam_layer), that no "
            "no_grad/inference_mode context is active and that the class has any evidence"
        )


def overlay(image: np.ndarray | Tensor, cam: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """The CAM as a colour map over ``image`` (``(3, H, W)`` or ``(H, W, 3)``, uint8 or [0, 1]); RGB in [0, 1]."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    img = img.astype(np.float32) / 255 if img.dtype == np.uint8 else img.astype(np.float32)
    return show_cam_on_image(np.clip(img, 0, 1), cam, use_rgb=True, image_weight=weight).astype(np.float32) / 255
