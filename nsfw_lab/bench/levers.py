"""What the CPU levers buy (the bench's ``cpu_levers`` section).

- **Precision and memory format**: the engine's training loop in fp32, channels_last, bf16 autocast and bf16 +
  channels_last, on copies of one model and the same batches, measured in turns. bf16 is only worth having
  where it keeps the numbers, so the copies that took the same seeded steps are compared afterwards: the
  share of held-out images on which the fp32 and the bf16 models predict the same class, and the largest
  logit difference. ``default`` is what ``nsfw_lab.train.config.resolve`` picks on this CPU (bf16 +
  channels_last only with AMX-BF16).
- **Cached features**: a linear probe on features computed once (one inference pass over the images plus a
  logistic regression chosen on validation) against the same probe trained as a frozen-backbone run (every
  epoch a forward pass through the backbone); ``speedup`` is for ``epochs`` epochs.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from nsfw_lab.bench.measure import side_by_side
from nsfw_lab.bench.train_step import InMemoryLoader, our_loop, synthetic_batches
from nsfw_lab.evaluate.linear import choose_probe
from nsfw_lab.models import build_model
from nsfw_lab.models.wrapper import get_submodule

VARIANTS: dict[str, tuple[torch.dtype | None, bool]] = {  # name: (autocast dtype, channels_last)
    "fp32": (None, False),
    "channels_last": (None, True),
    "bf16": (torch.bfloat16, False),
    "bf16_channels_last": (torch.bfloat16, True),
}


def precision(model_name: str, size: int, batch: int, steps: int, repeats: int) -> dict[str, Any]:
    """Training images/s of each variant (medians over turns), the speed-up over fp32, and how far the
    bf16 + channels_last copy ended from the fp32 one after the same steps."""
    from nsfw_lab.train.config import TrainConfig, cpu_has_amx_bf16, resolve

    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(model_name, 5, image_size=size)
    batches = synthetic_batches(steps, batch, size)
    copies = {v: copy.deepcopy(model) for v in VARIANTS}
    fns = {}
    for v, (amp, layout) in VARIANTS.items():
        if layout:
            copies[v] = copies[v].to(memory_format=torch.channels_last)
        fns[v] = our_loop(copies[v], InMemoryLoader(batches), device, amp, layout)
    rates = side_by_side(fns, repeats)  # every copy takes the same steps on the same batches
    held = synthetic_batches(1, 64, size, seed=1)[0][0]
    with torch.inference_mode():
        logits = {v: copies[v].eval()(held).float() for v in ("fp32", "bf16_channels_last")}
    agree = (logits["fp32"].argmax(1) == logits["bf16_channels_last"].argmax(1)).float().mean().item()
    amx = cpu_has_amx_bf16()
    picked = resolve(TrainConfig(data="", out="", model=model_name), 1, cuda=False, amx=amx)
    fp32 = rates["fp32"]["median"]
    return {
        "model": model_name,
        "input_px": size,
        "batch": batch,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "amx_bf16": amx,
        "images_per_s": rates,
        "speedup_over_fp32": {v: round(r["median"] / fp32, 3) for v, r in rates.items()},
        "bf16_top1_agreement": agree,
        "bf16_max_logit_diff": float((logits["fp32"] - logits["bf16_channels_last"]).abs().max()),
        "agreement_images": len(held),
        "default": {"amp": picked.amp, "channels_last": picked.channels_last},
    }


def cached_probe(model_name: str, size: int, images: int, epochs: int, batch: int = 32) -> dict[str, Any]:
    """Seconds for a linear probe on cached features (one pass + fit) against one frozen-backbone epoch
    (measured) times ``epochs``, on ``images`` random images split half train, half validation."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(model_name, 5, image_size=size)
    batches = synthetic_batches(max(1, images // batch), batch, size)
    head = get_submodule(model.net, model.spec.head[0])
    seen: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].flatten(1).float()))
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.eval()
        for x, _ in batches:
            model(x)
    extract = time.perf_counter() - t0
    hook.remove()
    x = torch.cat(seen).numpy()
    y = torch.cat([b[1] for b in batches]).numpy()
    half = len(y) // 2
    t0 = time.perf_counter()
    choose_probe(x[:half], y[:half], x[half:], y[half:], 5)  # the course's probe fit (nsfw_lab.course.probe)
    fit = time.perf_counter() - t0
    frozen = copy.deepcopy(model)
    for name, p in frozen.named_parameters():
        p.requires_grad = name.startswith(f"net.{model.spec.head[0]}")
    run = our_loop(frozen, InMemoryLoader(batches), device)
    t0 = time.perf_counter()
    run()
    epoch = time.perf_counter() - t0
    extract, fit, epoch = round(extract, 2), round(fit, 2), round(epoch, 2)
    return {
        "model": model_name,
        "input_px": size,
        "images": len(y),
        "epochs": epochs,
        "extract_s": extract,
        "fit_s": fit,
        "frozen_epoch_s": epoch,
        "speedup": round(epoch * epochs / max(extract + fit, 0.01), 2),
    }
