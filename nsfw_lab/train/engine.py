"""``fit``: run a training config end to end (stages, epochs, validation, checkpoints, resume, DDP).

The run folder (:class:`nsfw_lab.rundir.RunDir`) gets its config, one metrics line per epoch, ``last``
(every ``--save-every`` optimiser steps and after every epoch) and ``best`` (best validation score so far;
the test split is never looked at) checkpoints, and a summary at the end. Only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from nsfw_lab import __version__
from nsfw_lab.data.dataset import class_weights, read_curated
from nsfw_lab.data.decode import effective_decoder
from nsfw_lab.errors import NsfwLabError, RunConfigChanged
from nsfw_lab.models import NsfwModel, build_model, freeze, model_from_spec
from nsfw_lab.models import checkpoint as ckpt
from nsfw_lab.rundir import RunDir, pick_device
from nsfw_lab.train import distributed as dist
from nsfw_lab.train import rng
from nsfw_lab.train.config import Resolved, TrainConfig, resolve, resume_diff, stages, validate
from nsfw_lab.train.data import batch_preparer, make_train_loader, make_val_loader, train_val_datasets
from nsfw_lab.train.loop import Running, Step, epoch_summary, train_epoch
from nsfw_lab.train.loop import validate as run_validation
from nsfw_lab.train.optim import make_optimizer, make_scheduler
from nsfw_lab.utils.fsutil import atomic_open, atomic_write_json


@dataclass
class RunResult:
    """What :func:`fit` returns."""

    run_dir: Path
    best: dict[str, Any]
    history: list[dict[str, Any]]


def _fingerprint(data: Path) -> str:
    return hashlib.sha256((data / "manifest.csv").read_bytes()).hexdigest()


def _seed_all(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _run_info(
    config: TrainConfig, resolved: Resolved, model: NsfwModel, classes: list[str], data: Path
) -> dict[str, Any]:
    return {
        "config": {**config.to_dict(), "resume": False},
        "resolved": resolved.to_dict(),
        "model": model.spec.to_dict(),
        "classes": classes,
        "data": {"path": str(data), "manifest_sha256": _fingerprint(data)},
        "versions": {
            "nsfw_lab": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _check_resume(run: RunDir, config: TrainConfig, resolved: Resolved, data: Path) -> dict[str, Any]:
    saved = run.read_config()
    diff = resume_diff(TrainConfig.from_dict(saved["config"]), config)
    if diff:
        raise RunConfigChanged(f"{run.path}: --resume with a different config ({', '.join(diff)}); use a new --out")
    if saved["resolved"]["world_size"] != resolved.world_size:
        raise NsfwLabError(
            f"{run.path}: started with {saved['resolved']['world_size']} processes, resumed with "
            f"{resolved.world_size}; resume with the same torchrun layout"
        )
    if saved["data"]["manifest_sha256"] != _fingerprint(data):
        raise NsfwLabError(f"{run.path}: the curated data in {data} changed since the run started")
    return saved


def fit(config: TrainConfig) -> RunResult:
    """Train ``config`` (see :mod:`nsfw_lab.train.config` for the recipe) and return the best validation epoch."""
    validate(config)
    job = dist.from_env()
    device = pick_device(config.device, job.local_rank)
    if config.sync_bn and device.type != "cuda":
        raise NsfwLabError("--sync-bn needs CUDA devices")
    if config.amp == "fp16" and device.type != "cuda":
        raise NsfwLabError("--amp fp16 needs CUDA (on the CPU use --amp bf16 or off)")
    if config.decode == "gpu" and device.type != "cuda":
        raise NsfwLabError("--decode gpu needs CUDA (on the CPU use --decode torchcodec or pil)")
    effective_decoder(config.decode)  # --decode gpu without TorchCodec: one line, before any work
    compilers = ("c++", "g++", "clang++", "cc")
    if config.compile and device.type == "cpu" and not any(shutil.which(cc) for cc in compilers):
        raise NsfwLabError("--compile on the CPU needs a C++ compiler (none on PATH); install one or drop --compile")
    run, data = RunDir(Path(config.out).resolve()), Path(config.data).resolve()
    classes, _ = read_curated(data)
    dist.init(job, device)
    try:
        return _fit(config, job, device, run, data, classes)
    finally:
        dist.shutdown()


def _read_run(config: TrainConfig, resolved: Resolved, run: RunDir, data: Path) -> tuple[Any, Any, Any]:
    """The saved run info, ``last`` checkpoint and ``best`` weights when resuming (None when starting)."""
    saved = last = best = None
    if config.resume and run.config.is_file():
        saved = _check_resume(run, config, resolved, data)
    elif run.config.exists() or run.last.exists():
        raise NsfwLabError(f"{run.path}: already holds a run; pass --resume to continue it or choose another --out")
    if config.resume and run.last.is_file():
        last = ckpt.load(run.last)
        best = ckpt.load(run.best)["model"] if run.best.exists() else None
    return saved, last, best


def _fit(
    config: TrainConfig, job: dist.Dist, device: torch.device, run: RunDir, data: Path, classes: list[str]
) -> RunResult:
    resolved = resolve(config, job.world_size, device.type == "cuda")
    # Rank 0 reads the run folder and sends it to the others (no shared filesystem needed across nodes);
    # an error there becomes the same one-line error on every process instead of a hang.
    reply: tuple[NsfwLabError | None, Any] = (None, None)
    if job.main:
        try:
            reply = (None, _read_run(config, resolved, run, data))
        except NsfwLabError as exc:
            reply = (exc, None)
    err, found = dist.broadcast_object(reply, job)
    if err:
        raise err
    saved, last, best_state = found
    if last is not None:
        model = model_from_spec(saved["model"])
    else:  # also a run killed before its first checkpoint
        if config.resume and job.main:
            print(f"note: no checkpoint in {run.path}; starting the run", file=sys.stderr)
        _seed_all(config.seed)  # identical initial weights on every process
        model = build_model(
            config.model, len(classes), config.weights, config.image_size, config.cnn_widths, config.cnn_hidden
        )
        saved = _run_info(config, resolved, model, classes, data)
    if config.freeze_stages > len(model.spec.stages):
        n = len(model.spec.stages)
        raise NsfwLabError(f"--freeze-stages {config.freeze_stages}: {model.spec.name} has {n} stages (0..{n})")
    train_ds, val_ds = train_val_datasets(data, model.spec.input_size, config.crop_scale, config.augment, config.decode)
    trainer = Trainer(config, resolved, job, device, run, model, classes)
    trainer.setup_data(train_ds, val_ds, data)  # every check passed: only now does the run folder appear
    if job.main:
        run.path.mkdir(parents=True, exist_ok=True)
        for tmp in run.path.glob(".*.tmp"):  # left by a kill during a write
            tmp.unlink(missing_ok=True)
        if not run.config.exists():
            atomic_write_json(run.config, {**saved, "warnings": trainer.warnings})
        for w in trainer.warnings:
            print(f"warning: {w}", file=sys.stderr)
    trainer.restore(last, best_state)
    return trainer.fit()


class Trainer:
    """The state of one run and the stage/epoch loops over it (see :func:`fit`)."""

    def __init__(
        self,
        config: TrainConfig,
        resolved: Resolved,
        job: dist.Dist,
        device: torch.device,
        run: RunDir,
        model: NsfwModel,
        classes: list[str],
    ) -> None:
        self.config, self.resolved, self.job, self.device, self.run, self.classes = (
            config, resolved, job, device, run, classes
        )  # fmt: skip
        self.model = model.to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        if resolved.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # --compile: the training net is compiled per stage after DDP wraps it (so DDP's optimiser can split the
        # graph at its gradient buckets), validation runs a compiled view; checkpoints keep the plain model's names.
        self.eval_net: nn.Module = torch.compile(self.model) if config.compile else self.model
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved.amp)
        self.plan = stages(config, resolved.lr)
        self.position = {"stage": 0, "epoch": 0, "step": 0, "global_step": 0, "since_best": 0}
        self.best: dict[str, Any] = {"score": -math.inf}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.resuming: dict[str, Any] | None = None  # the checkpoint being resumed, until its stage starts
        self.rank_state: dict[str, Any] | None = None  # this process's part of it, until its epoch starts

    def setup_data(self, train_ds: Any, val_ds: Any, data: Path) -> None:
        """Loaders, steps per epoch and the loss."""
        config, job, accum = self.config, self.job, self.resolved.accum
        self.n_train = len(train_ds)
        self.train_loader = make_train_loader(train_ds, config, job, self.device)
        self.val_loader = make_val_loader(val_ds, config, job, self.device)
        self.sampler = self.train_loader.batch_sampler
        self.prepare = batch_preparer(train_ds, self.device, self.resolved.channels_last)
        batches = self.sampler.batches_per_epoch
        if batches == 0:
            raise NsfwLabError(
                f"{data}: {len(train_ds)} training images, fewer than one batch of "
                f"{config.batch_size} x {job.world_size} processes; lower --batch-size"
            )
        self.steps_per_epoch = math.ceil(batches / accum)  # optimiser steps
        self.warnings: list[str] = []
        per_epoch = batches * config.batch_size * job.world_size
        if accum > batches:
            self.warnings.append(
                f"effective batch {self.resolved.effective_batch} exceeds the {per_epoch} images used per epoch: "
                f"each optimiser step averages at most {per_epoch} images (one step per epoch)"
            )
        weight = class_weights(train_ds.base).to(self.device) if config.class_weighting == "balanced" else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    def restore(self, last: dict[str, Any] | None, best_state: dict[str, torch.Tensor] | None) -> None:
        """Start fresh, or take weights, position, history and RNG states from the ``last`` checkpoint (and the
        best weights so far, which the next stage starts from)."""
        if last is None:
            _seed_all(self.config.seed + self.job.rank)
        else:
            self.model.load_state_dict(last["model"])
            self.position, self.best, self.history = last["position"], last["best"], last["history"]
            self.resuming, self.rank_state = last, last["ranks"][self.job.rank]
            rng.set_rng_state(self.rank_state["rng"])
            self.best_state = best_state
        if self.job.main:  # drop lines written after the checkpoint we resume from
            with atomic_open(self.run.metrics, "w") as f:
                f.writelines(json.dumps(h) + "\n" for h in self.history)

    def save_last(self, stage_state: dict[str, Any] | None, running: Running | None) -> None:
        """Write the ``last`` checkpoint (every process contributes its RNG states and running sums)."""
        mine = ckpt.to_cpu({"rng": rng.rng_state(), "running": running.state() if running else None})
        ranks = dist.gather_objects(mine, self.job)
        if self.job.main:
            state = stage_state or {"optimizer": None, "scheduler": None, "scaler": None}
            ckpt.save(
                self.run.last,
                {
                    "model": self.model.state_dict(),
                    "spec": self.model.spec.to_dict(),
                    "position": dict(self.position),
                    "best": dict(self.best),
                    "history": self.history,
                    "ranks": ranks,
                    **state,
                },
            )

    def fit(self) -> RunResult:
        """Run the remaining stages."""
        for stage_index in range(self.position["stage"], len(self.plan)):
            self.run_stage(stage_index)
            if stage_index + 1 < len(self.plan):  # the next stage starts from the best weights so far
                if self.best_state is not None:
                    self.model.load_state_dict(self.best_state)
                self.position.update(stage=stage_index + 1, epoch=0, step=0, since_best=0)
                self.save_last(None, None)
        if self.job.main:
            summary = {"best": self.best, "epochs": len(self.history), "steps": self.position["global_step"]}
            atomic_write_json(self.run.summary, summary)
        return RunResult(self.run.path, self.best, self.history)

    def run_stage(self, stage_index: int) -> None:
        """Freeze, wrap for DDP, build the optimiser and schedule, then run the stage's epochs."""
        config, stage = self.config, self.plan[stage_index]
        freeze(self.model, stage.freeze_stages)
        net: nn.Module = self.model
        if self.job.enabled:
            if config.sync_bn:
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = DDP(net, device_ids=[self.device] if self.device.type == "cuda" else None)
        if config.compile:
            net = torch.compile(net)
        opt = make_optimizer(self.model, config, stage.lr)
        sched = make_scheduler(opt, config, self.steps_per_epoch, stage.epochs, config.max_steps)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.resolved.amp == "fp16")
        resuming = self.resuming
        if resuming is not None and resuming["optimizer"] is not None and resuming["position"]["stage"] == stage_index:
            opt.load_state_dict(resuming["optimizer"])
            sched.load_state_dict(resuming["scheduler"])
            scaler.load_state_dict(resuming["scaler"])
        self.resuming = None
        step = Step(opt, sched, scaler, self.criterion, self.device, self.resolved.accum, self.amp_dtype,
                    self.resolved.channels_last, self.prepare)  # fmt: skip
        for epoch in range(self.position["epoch"], stage.epochs):
            if config.max_steps is not None and epoch * self.steps_per_epoch >= config.max_steps:
                break
            self.run_epoch(stage_index, epoch, net, step)
            if config.patience and self.position["since_best"] >= config.patience:
                break

    @staticmethod
    def lr_at(step: Step, at: int) -> float:
        """The learning rate of the first parameter group at the stage's optimiser step ``step``."""
        sched = step.scheduler
        return float(sched.base_lrs[0] * sched.lr_lambdas[0](at))

    def run_epoch(self, stage_index: int, epoch: int, net: nn.Module, step: Step) -> None:
        """Train one epoch (from the resumed position), validate, record, checkpoint."""
        config, stage, position, per_epoch = self.config, self.plan[stage_index], self.position, self.steps_per_epoch
        if self.rank_state is not None and self.rank_state["running"] is not None:
            running = Running.from_state(self.rank_state["running"], self.device)
        else:
            running = Running.zeros(self.n_train, self.device)
        self.rank_state = None
        offset = sum(p.epochs for p in self.plan[:stage_index])
        self.sampler.set_epoch(offset + epoch, position["step"] * self.resolved.accum)

        def stage_state() -> dict[str, Any]:
            return {
                "optimizer": step.optimizer.state_dict(),
                "scheduler": step.scheduler.state_dict(),
                "scaler": step.scaler.state_dict(),
            }

        def on_step(k: int) -> bool:
            position["step"] = k
            position["global_step"] += 1
            if config.save_every and position["global_step"] % config.save_every == 0 and k < per_epoch:
                self.save_last(stage_state(), running)
            return config.max_steps is not None and epoch * per_epoch + k >= config.max_steps

        show = self.job.main and config.progress
        label = f"{stage.name} {epoch + 1}/{stage.epochs}"
        _, seconds, images = train_epoch(net, self.train_loader, step, running, position["step"], on_step, label, show)
        channels_last = self.resolved.channels_last
        val = run_validation(self.eval_net, self.val_loader, self.job, self.device, self.amp_dtype, channels_last)
        rec = {
            "stage": stage_index,
            "stage_name": stage.name,
            "epoch": epoch + 1,
            "global_epoch": offset + epoch + 1,
            "step": position["global_step"],
            "lr": self.lr_at(step, epoch * per_epoch),  # at the epoch's first optimiser step
            "lr_end": self.lr_at(step, epoch * per_epoch + max(0, position["step"] - 1)),  # at its last
            **epoch_summary(running, self.job),
            **val,
        }
        # throughput of this session only (a resumed epoch counts the images trained since the resume)
        rec["images_per_s"] = images * self.job.world_size / seconds if seconds > 0 else None
        score = rec["val_" + config.select_metric.replace("accuracy", "acc")]
        rec["best"] = score > self.best["score"]
        position.update(epoch=epoch + 1, step=0, since_best=0 if rec["best"] else position["since_best"] + 1)
        self.history.append(rec)
        if rec["best"]:
            self.best = {
                "score": score,
                "metric": config.select_metric,
                "stage": stage_index,
                "epoch": epoch + 1,
                "global_epoch": rec["global_epoch"],
                "step": position["global_step"],
            }
            self.best_state = ckpt.to_cpu(self.model.state_dict())
            if self.job.main:
                ckpt.save(
                    self.run.best,
                    {
                        "model": self.best_state,
                        "spec": self.model.spec.to_dict(),
                        "best": self.best,
                        "record": rec,
                        "classes": self.classes,
                    },
                )
        if self.job.main:
            with open(self.run.metrics, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.save_last(stage_state(), None)
