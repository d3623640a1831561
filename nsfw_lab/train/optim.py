"""Optimisers and learning-rate schedules (per optimiser step, linear warm-up then cosine or step decay)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nsfw_lab.train.config import TrainConfig


@dataclass
class Schedule:
    """LR multiplier at optimiser step ``t``: linear warm-up over ``warmup`` steps from 1%, then cosine
    to 0 over the remaining steps, or x``gamma`` at each step in ``milestones``.

    A plain callable object, so ``LambdaLR.state_dict()`` stores its fields (plain types) and resume
    restores it exactly.
    """

    kind: str
    total: int
    warmup: int = 0
    milestones: Sequence[int] = ()
    gamma: float = 0.1

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return 0.01 + 0.99 * t / self.warmup
        if self.kind == "cosine":
            span = max(1, self.total - self.warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (t - self.warmup) / span)))
        return self.gamma ** sum(t >= m for m in self.milestones)

    def to_dict(self) -> dict:
        """Plain fields."""
        return asdict(self)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters, with no weight decay on biases and normalisation weights (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, c: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov off) or AdamW over the trainable parameters."""
    groups = param_groups(model, c.weight_decay)
    if c.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=c.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(
    opt: torch.optim.Optimizer, c: TrainConfig, steps_per_epoch: int, epochs: int, max_steps: int | None
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule over ``epochs`` (capped at ``max_steps``) in optimiser steps."""
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    warmup = min(total, round(c.warmup_epochs * steps_per_epoch))
    milestones = [m * steps_per_epoch for m in c.lr_steps]
    return torch.optim.lr_scheduler.LambdaLR(opt, Schedule(c.schedule, total, warmup, milestones, c.lr_gamma))
