"""One training epoch (gradient accumulation, AMP, DDP no-sync) and one validation pass."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader

from nsfw_lab.train.distributed import Dist, all_sum, gather_objects
from nsfw_lab.utils.progress import tqdm

AUX_WEIGHT = 0.4  # InceptionV3's auxiliary classifier loss weight (Szegedy et al.)


@dataclass
class Step:
    """What the epoch loop needs besides the model."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    device: torch.device
    accum: int
    amp_dtype: torch.dtype | None
    channels_last: bool
    prepare: Any = None  # batch -> (x, y, idx) on the device; None: :func:`to_device` (see device_decode.py)


@dataclass
class Running:
    """Sums over the epoch in progress (saved in checkpoints so a resumed epoch reports the same numbers)."""

    loss_sum: torch.Tensor
    correct: torch.Tensor
    seen: torch.Tensor
    coverage: torch.Tensor  # times each training image was used this epoch, this process
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def zeros(cls, n: int, device: torch.device) -> Running:
        """Fresh sums for an epoch over ``n`` training images."""
        z = lambda dt: torch.zeros((), dtype=dt, device=device)  # noqa: E731
        return cls(z(torch.float64), z(torch.int64), z(torch.int64), torch.zeros(n, dtype=torch.int32))

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for a checkpoint."""
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen, "coverage": self.coverage}

    @classmethod
    def from_state(cls, s: dict[str, torch.Tensor], device: torch.device) -> Running:
        """Inverse of :meth:`state`."""
        return cls(s["loss_sum"].to(device), s["correct"].to(device), s["seen"].to(device), s["coverage"].clone())


def forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: nn.Module) -> tuple[Any, Any]:
    """Loss and logits; InceptionV3 in training mode adds 0.4 x the auxiliary classifier's loss."""
    out = model(x)
    if isinstance(out, tuple):  # InceptionOutputs(logits, aux_logits)
        return criterion(out[0], y) + AUX_WEIGHT * criterion(out[1], y), out[0]
    return criterion(out, y), out


def to_device(batch: Any, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """A loader's ``(x, y, idx)`` with ``x`` and ``y`` on ``device`` (``x`` in channels_last when asked)."""
    x, y, idx = batch
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True), idx


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on ``device`` when ``dtype`` is set."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    s: Step,
    run: Running,
    start_step: int,
    on_step: Any,
    desc: str,
    show: bool,
) -> tuple[int, float, int]:
    """Train over ``loader`` (already positioned after ``start_step`` optimiser steps).

    Micro-batches are grouped into windows of ``accum``; the last window of an epoch may be shorter
    and is averaged over its own length. ``on_step(step)`` runs after every optimiser step and returns
    True to stop (``--max-steps``). Returns the optimiser steps done in the epoch, the seconds spent and
    the images this process trained on in this call.
    """
    model.train()
    total_micro = loader.batch_sampler.batches_per_epoch  # type: ignore[union-attr]
    micro = start_step * s.accum
    step, t0, images = start_step, time.perf_counter(), 0
    bar = tqdm(loader, desc=desc, total=len(loader), disable=not show, leave=False, unit="batch")
    for batch in bar:
        window_start = (micro // s.accum) * s.accum
        window_len = min(s.accum, total_micro - window_start)
        last_in_window = micro - window_start == window_len - 1
        x, y, idx = s.prepare(batch) if s.prepare else to_device(batch, s.device, s.channels_last)
        sync = contextlib.nullcontext() if last_in_window or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(s.device, s.amp_dtype):
                loss, logits = forward_loss(model, x, y, s.criterion)
            s.scaler.scale(loss / window_len).backward()
        run.loss_sum += loss.detach().double() * len(y)
        run.correct += (logits.detach().argmax(1) == y).sum()
        run.seen += len(y)
        run.coverage.index_add_(0, idx, torch.ones(len(idx), dtype=torch.int32))
        images += len(y)
        micro += 1
        if last_in_window:
            s.scaler.step(s.optimizer)
            s.scaler.update()
            s.optimizer.zero_grad(set_to_none=True)
            s.scheduler.step()
            step += 1
            if show:
                bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{images / (time.perf_counter() - t0):.0f}")
            if on_step(step):
                break
    bar.close()
    return step, time.perf_counter() - t0, images


@torch.inference_mode()
def validate(
    model: nn.Module, loader: DataLoader, d: Dist, device: torch.device, amp_dtype: torch.dtype | None, cl: bool
) -> dict[str, float]:
    """Loss (plain cross-entropy), accuracy and macro-F1 over every process's share of a split."""
    model.eval()
    ys, preds, loss_sum = [], [], 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        ys.append(y.cpu().numpy())
        preds.append(logits.argmax(1).cpu().numpy())
    mine = (np.concatenate(ys or [np.zeros(0, int)]), np.concatenate(preds or [np.zeros(0, int)]), loss_sum)
    parts = gather_objects(mine, d)
    y_all = np.concatenate([p[0] for p in parts])
    p_all = np.concatenate([p[1] for p in parts])
    n = max(1, len(y_all))
    return {
        "val_loss": sum(p[2] for p in parts) / n,
        "val_acc": float((y_all == p_all).mean()) if len(y_all) else 0.0,
        "val_macro_f1": float(f1_score(y_all, p_all, average="macro", zero_division=0)) if len(y_all) else 0.0,
        "val_images": len(y_all),
    }


def epoch_summary(run: Running, d: Dist) -> dict[str, Any]:
    """Training loss/accuracy and sample coverage summed over all processes."""
    import hashlib

    loss = all_sum(run.loss_sum.clone(), d).item()
    correct = all_sum(run.correct.clone(), d).item()
    seen = all_sum(run.seen.clone(), d).item()
    cov = all_sum(run.coverage.to(run.loss_sum.device), d).cpu()
    return {
        "train_loss": loss / max(1, seen),
        "train_acc": correct / max(1, seen),
        "train_images": int(seen),
        "train_unique_images": int((cov > 0).sum()),
        "train_coverage_sha": hashlib.sha256(cov.numpy().tobytes()).hexdigest()[:16],
    }
