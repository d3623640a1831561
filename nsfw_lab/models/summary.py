"""Layer tables: output shape and parameter count of each top-level layer, for teaching and sanity checks."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def layer_table(model: nn.Module, input_size: int, depth: int = 2) -> list[dict]:
    """Run one random image through ``model`` and record, for every module ``depth`` levels down,
    its name, type, output shape and own parameter count (rows in forward order)."""
    rows: list[dict] = []
    hooks = []
    for name, mod in model.named_modules():
        if name and name.count(".") < depth and (name.count(".") == depth - 1 or not list(mod.children())):

            def hook(m: nn.Module, _inp: tuple, out: object, name: str = name) -> None:
                t = out[0] if isinstance(out, tuple) else out
                rows.append(
                    {
                        "layer": name,
                        "type": type(m).__name__,
                        "output": tuple(t.shape[1:]) if isinstance(t, torch.Tensor) else None,
                        "params": count_parameters(m),
                    }
                )

            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.rand(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def receptive_field(model: nn.Module) -> list[dict]:
    """Receptive field (px of the input seen by one unit) and stride after each conv/pool layer, in forward
    order; for plain sequential feature extractors such as :class:`~nsfw_lab.models.ConvPoolFC`."""
    rf, jump, rows = 1, 1, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            d = getattr(m, "dilation", 1)
            d = d if isinstance(d, int) else d[0]
            rf += (k - 1) * d * jump
            jump *= s
            rows.append({"layer": name, "type": type(m).__name__, "receptive_field": rf, "stride": jump})
    return rows
