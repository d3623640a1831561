"""``train_step_ratio``: images/s of our training loop (``nsfw_lab.train.loop.train_epoch`` with its
accumulation windows, running sums, coverage counts, scheduler and AMP plumbing) against the bare loop
below, on the same in-memory uint8 batches and copies of the same model, measured in turns."""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from nsfw_lab.bench.measure import paired_ratio, side_by_side
from nsfw_lab.models import build_model
from nsfw_lab.train.config import TrainConfig
from nsfw_lab.train.loop import Running, Step, train_epoch
from nsfw_lab.train.optim import make_optimizer, make_scheduler


def bare_loop(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> int:
    """The plainest correct PyTorch training loop (the reference; ``opt`` e.g. SGD momentum 0.9, the engine's
    default); returns the images trained on."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n = 0
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    return n  # fmt: skip


class InMemoryLoader:
    """What :func:`train_epoch` needs of a DataLoader, over batches already in memory."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        b = len(batches[0][1])
        self.items = [(x, y, torch.arange(i * b, (i + 1) * b)) for i, (x, y) in enumerate(batches)]
        self.batch_sampler = SimpleNamespace(batches_per_epoch=len(batches))
        self.images = b * len(batches)

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def make_step(
    model: nn.Module, device: torch.device, amp: torch.dtype | None, channels_last: bool, steps_per_epoch: int
) -> Step:
    """The optimiser, schedule and loss as ``fit`` builds them for the default config."""
    c = TrainConfig(data="", out="")
    opt = make_optimizer(model, c, c.lr)
    sched = make_scheduler(opt, c, steps_per_epoch, 10_000, None)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    return Step(opt, sched, scaler, nn.CrossEntropyLoss(), device, 1, amp, channels_last)


def our_loop(
    model: nn.Module,
    loader: InMemoryLoader,
    device: torch.device,
    amp: torch.dtype | None = None,
    channels_last: bool = False,
) -> Callable[[], int]:
    """One epoch of the engine's loop per call."""
    step = make_step(model, device, amp, channels_last, len(loader))

    def run() -> int:
        running = Running.zeros(loader.images, device)
        _, _, images = train_epoch(model, loader, step, running, 0, lambda k: False, "bench", False)
        return images

    return run  # fmt: skip


def synthetic_batches(n: int, batch: int, size: int, classes: int = 5, seed: int = 0) -> list[tuple[Any, Any]]:
    """``n`` batches of random uint8 images and labels."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g),
         torch.randint(0, classes, (batch,), generator=g))
        for _ in range(n)
    ]  # fmt: skip


def measure(model_name: str, size: int, batch: int, steps: int, repeats: int) -> dict:
    """The ``train_step`` section (``ratio`` is the ``train_step_ratio`` key), on the CPU."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(model_name, 5, image_size=size)
    batches = synthetic_batches(steps, batch, size)
    ours_model, bare_model = copy.deepcopy(model), copy.deepcopy(model)
    ours = our_loop(ours_model, InMemoryLoader(batches), device)
    opt = torch.optim.SGD(bare_model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    bare = lambda: bare_loop(bare_model, opt, batches, device)  # noqa: E731
    bare_loop(bare_model, opt, batches[:1], device)  # warm-up: first-call allocations for both
    ours()
    rates = side_by_side({"ours": ours, "bare": bare}, repeats)
    return {
        "ratio": paired_ratio(rates, "ours", "bare"),
        "ours_images_per_s": rates["ours"],
        "bare_images_per_s": rates["bare"],
        "model": model_name,
        "input_px": size,
        "batch": batch,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "device": "cpu",
    }
