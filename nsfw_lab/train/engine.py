"""``fit``: run a training config end to end (stages, epochs, validation, checkpoints, resume, DDP).

RUN_DIR holds ``config.json`` (everything needed to rebuild the run), ``metrics.jsonl`` (one line per
epoch), ``last.pt`` (every ``--save-every`` optimiser steps and after every epoch) and ``best.pt``
(best validation score so far; the test split is never looked at). Only rank 0 writes.
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
from nsfw_lab.errors import NsfwLabError, RunConfigChanged
from nsfw_lab.fsutil import atomic_open, atomic_write_json
from nsfw_lab.models import NsfwModel, build_model, freeze, model_from_spec
from nsfw_lab.train import checkpoint as ckpt
from nsfw_lab.train import distributed as dist
from nsfw_lab.train.config import TrainConfig, resolve, resume_diff, stages, validate
from nsfw_lab.train.data import batch_preparer, make_train_loader, make_val_loader, train_val_datasets
from nsfw_lab.train.loop import Running, Step, epoch_summary, train_epoch
from nsfw_lab.train.loop import validate as run_validation
from nsfw_lab.train.optim import make_optimizer, make_scheduler

CONFIG, METRICS, LAST, BEST, SUMMARY = "config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json"


@dataclass
class RunResult:
    """What :func:`fit` returns."""

    run_dir: Path
    best: dict[str, Any]
    history: list[dict[str, Any]]


def pick_device(name: str, d: dist.Dist) -> torch.device:
    """``auto`` = CUDA when available; under torchrun each process takes ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NsfwLabError("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device(f"cuda:{d.local_rank}") if name == "cuda" else torch.device(name)
    return torch.device("cpu")


def _fingerprint(data: Path) -> str:
    return hashlib.sha256((data / "manifest.csv").read_bytes()).hexdigest()


def _seed_all(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _run_info(c: TrainConfig, r: dict, model: NsfwModel, classes: list[str], data: Path) -> dict[str, Any]:
    return {
        "config": {**c.to_dict(), "resume": False},
        "resolved": r,
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


def _check_resume(run: Path, c: TrainConfig, r: dict, data: Path) -> dict[str, Any]:
    saved = json.loads((run / CONFIG).read_text())
    diff = resume_diff(TrainConfig.from_dict(saved["config"]), c)
    if diff:
        raise RunConfigChanged(f"{run}: --resume with a different config ({', '.join(diff)}); use a new --out")
    if saved["resolved"]["world_size"] != r["world_size"]:
        raise NsfwLabError(
            f"{run}: started with {saved['resolved']['world_size']} processes, resumed with "
            f"{r['world_size']}; resume with the same torchrun layout"
        )
    if saved["data"]["manifest_sha256"] != _fingerprint(data):
        raise NsfwLabError(f"{run}: the curated data in {data} changed since the run started")
    return saved


def fit(c: TrainConfig) -> RunResult:
    """Train ``c`` (see :mod:`nsfw_lab.train.config` for the recipe) and return the best validation epoch."""
    validate(c)
    d = dist.from_env()
    device = pick_device(c.device, d)
    if c.sync_bn and device.type != "cuda":
        raise NsfwLabError("--sync-bn needs CUDA devices")
    if c.amp == "fp16" and device.type != "cuda":
        raise NsfwLabError("--amp fp16 needs CUDA (on the CPU use --amp bf16 or off)")
    if c.decode == "gpu" and device.type != "cuda":
        raise NsfwLabError("--decode gpu needs CUDA (on the CPU use --decode torchcodec or pil)")
    if c.compile and device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++", "cc")):
        raise NsfwLabError("--compile on the CPU needs a C++ compiler (none on PATH); install one or drop --compile")
    run, data = Path(c.out).resolve(), Path(c.data).resolve()
    classes, _ = read_curated(data)
    dist.init(d, device)
    try:
        return _fit(c, d, device, run, data, classes)
    finally:
        dist.shutdown()


def _read_run(c: TrainConfig, r: dict, run: Path, data: Path) -> tuple[Any, Any, Any]:
    """The saved run info, ``last.pt`` and ``best.pt`` weights when resuming (None when starting)."""
    saved = ck = best = None
    if c.resume and (run / CONFIG).is_file():
        saved = _check_resume(run, c, r, data)
    elif (run / CONFIG).exists() or (run / LAST).exists():
        raise NsfwLabError(f"{run}: already holds a run; pass --resume to continue it or choose another --out")
    if c.resume and (run / LAST).is_file():
        ck = ckpt.load(run / LAST)
        best = ckpt.load(run / BEST)["model"] if (run / BEST).exists() else None
    return saved, ck, best


def _fit(c: TrainConfig, d: dist.Dist, device: torch.device, run: Path, data: Path, classes: list[str]) -> RunResult:
    r = resolve(c, d.world_size, device.type == "cuda")
    # Rank 0 reads the run folder and sends it to the others (no shared filesystem needed across nodes);
    # an error there becomes the same one-line error on every process instead of a hang.
    reply: tuple[NsfwLabError | None, Any] = (None, None)
    if d.main:
        try:
            reply = (None, _read_run(c, r, run, data))
        except NsfwLabError as exc:
            reply = (exc, None)
    err, found = dist.broadcast_object(reply, d)
    if err:
        raise err
    saved, ck, best_state = found
    resuming = ck is not None
    if resuming:
        model = model_from_spec(saved["model"])
    else:  # also a run killed before its first checkpoint
        if c.resume and d.main:
            print(f"note: no checkpoint in {run}; starting the run", file=sys.stderr)
        _seed_all(c.seed)  # identical initial weights on every process
        model = build_model(c.model, len(classes), c.weights, c.image_size, c.cnn_widths, c.cnn_hidden)
        saved = _run_info(c, r, model, classes, data)
    if c.freeze_stages > len(model.spec.stages):
        n = len(model.spec.stages)
        raise NsfwLabError(f"--freeze-stages {c.freeze_stages}: {model.spec.name} has {n} stages (0..{n})")
    train_ds, val_ds = train_val_datasets(data, model.spec.input_size, c.crop_scale, c.augment, c.decode)
    trainer = Trainer(c, r, d, device, run, model, classes)
    trainer.setup_data(train_ds, val_ds, data)  # every check passed: only now does the run folder appear
    if d.main:
        run.mkdir(parents=True, exist_ok=True)
        for tmp in run.glob(".*.tmp"):  # left by a kill during a write
            tmp.unlink(missing_ok=True)
        if not (run / CONFIG).exists():
            atomic_write_json(run / CONFIG, {**saved, "warnings": trainer.warnings})
        for w in trainer.warnings:
            print(f"warning: {w}", file=sys.stderr)
    trainer.restore(ck, best_state)
    return trainer.fit()


class Trainer:
    """The state of one run and the stage/epoch loops over it (see :func:`fit`)."""

    def __init__(
        self, c: TrainConfig, r: dict, d: dist.Dist, device: torch.device, run: Path, model: NsfwModel, classes: list
    ) -> None:
        self.c, self.r, self.d, self.device, self.run, self.classes = c, r, d, device, run, classes
        self.model = model.to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
        if r["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        # --compile: the training net is compiled per stage after DDP wraps it (so DDP's optimiser can split the
        # graph at its gradient buckets), validation runs a compiled view; checkpoints keep the plain model's names.
        self.eval_net: nn.Module = torch.compile(self.model) if c.compile else self.model
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(r["amp"])
        self.plan = stages(c, r["lr"])
        self.pos = {"stage": 0, "epoch": 0, "step": 0, "global_step": 0, "since_best": 0}
        self.best: dict[str, Any] = {"score": -math.inf}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.ck: dict[str, Any] | None = None  # the checkpoint being resumed, until its stage starts
        self.mine: dict[str, Any] | None = None  # this process's part of it, until its epoch starts

    def setup_data(self, train_ds: Any, val_ds: Any, data: Path) -> None:
        """Loaders, steps per epoch and the loss."""
        c, d = self.c, self.d
        self.n_train = len(train_ds)
        self.train_loader = make_train_loader(train_ds, c, d, self.device)
        self.val_loader = make_val_loader(val_ds, c, d, self.device)
        self.sampler = self.train_loader.batch_sampler
        self.prepare = batch_preparer(train_ds, self.device, self.r["channels_last"])
        if self.sampler.batches_per_epoch == 0:
            raise NsfwLabError(
                f"{data}: {len(train_ds)} training images, fewer than one batch of "
                f"{c.batch_size} x {d.world_size} processes; lower --batch-size"
            )
        self.spe = math.ceil(self.sampler.batches_per_epoch / self.r["accum"])  # optimiser steps per epoch
        self.warnings: list[str] = []
        per_epoch = self.sampler.batches_per_epoch * c.batch_size * d.world_size
        if self.r["accum"] > self.sampler.batches_per_epoch:
            self.warnings.append(
                f"effective batch {self.r['effective_batch']} exceeds the {per_epoch} images used per epoch: "
                f"each optimiser step averages at most {per_epoch} images (one step per epoch)"
            )
        weight = class_weights(train_ds.base).to(self.device) if c.class_weighting == "balanced" else None
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=c.label_smoothing)

    def restore(self, ck: dict[str, Any] | None, best_state: dict[str, torch.Tensor] | None) -> None:
        """Start fresh, or take weights, position, history and RNG states from ``last.pt`` (and the best
        weights so far, which the next stage starts from)."""
        if ck is None:
            _seed_all(self.c.seed + self.d.rank)
        else:
            self.model.load_state_dict(ck["model"])
            self.pos, self.best, self.history = ck["position"], ck["best"], ck["history"]
            self.ck, self.mine = ck, ck["ranks"][self.d.rank]
            ckpt.set_rng_state(self.mine["rng"])
            self.best_state = best_state
        if self.d.main:  # drop lines written after the checkpoint we resume from
            with atomic_open(self.run / METRICS, "w") as f:
                f.writelines(json.dumps(h) + "\n" for h in self.history)

    def save_last(self, stage_state: dict[str, Any] | None, running: Running | None) -> None:
        """Write ``last.pt`` (every process contributes its RNG states and running sums)."""
        mine = ckpt.to_cpu({"rng": ckpt.rng_state(), "running": running.state() if running else None})
        ranks = dist.gather_objects(mine, self.d)
        if self.d.main:
            state = stage_state or {"optimizer": None, "scheduler": None, "scaler": None}
            ckpt.save(
                self.run / LAST,
                {
                    "model": self.model.state_dict(),
                    "spec": self.model.spec.to_dict(),
                    "position": dict(self.pos),
                    "best": dict(self.best),
                    "history": self.history,
                    "ranks": ranks,
                    **state,
                },
            )

    def fit(self) -> RunResult:
        """Run the remaining stages."""
        for si in range(self.pos["stage"], len(self.plan)):
            self.run_stage(si)
            if si + 1 < len(self.plan):  # the next stage starts from the best weights so far
                if self.best_state is not None:
                    self.model.load_state_dict(self.best_state)
                self.pos.update(stage=si + 1, epoch=0, step=0, since_best=0)
                self.save_last(None, None)
        if self.d.main:
            summary = {"best": self.best, "epochs": len(self.history), "steps": self.pos["global_step"]}
            atomic_write_json(self.run / SUMMARY, summary)
        return RunResult(self.run, self.best, self.history)

    def run_stage(self, si: int) -> None:
        """Freeze, wrap for DDP, build the optimiser and schedule, then run the stage's epochs."""
        c, st = self.c, self.plan[si]
        freeze(self.model, st.freeze_stages)
        net: nn.Module = self.model
        if self.d.enabled:
            if c.sync_bn:
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            net = DDP(net, device_ids=[self.device] if self.device.type == "cuda" else None)
        if c.compile:
            net = torch.compile(net)
        opt = make_optimizer(self.model, c, st.lr)
        sched = make_scheduler(opt, c, self.spe, st.epochs, c.max_steps)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.r["amp"] == "fp16")
        if self.ck is not None and self.ck["optimizer"] is not None and self.ck["position"]["stage"] == si:
            opt.load_state_dict(self.ck["optimizer"])
            sched.load_state_dict(self.ck["scheduler"])
            scaler.load_state_dict(self.ck["scaler"])
        self.ck = None
        step = Step(
            opt,
            sched,
            scaler,
            self.criterion,
            self.device,
            self.r["accum"],
            self.amp_dtype,
            self.r["channels_last"],
            self.prepare,
        )
        for ep in range(self.pos["epoch"], st.epochs):
            if c.max_steps is not None and ep * self.spe >= c.max_steps:
                break
            self.run_epoch(si, ep, net, step)
            if c.patience and self.pos["since_best"] >= c.patience:
                break

    @staticmethod
    def lr_at(s: Step, step: int) -> float:
        """The learning rate of the first parameter group at the stage's optimiser step ``step``."""
        sched = s.scheduler
        return float(sched.base_lrs[0] * sched.lr_lambdas[0](step))

    def run_epoch(self, si: int, ep: int, net: nn.Module, s: Step) -> None:
        """Train one epoch (from the resumed position), validate, record, checkpoint."""
        c, st, pos = self.c, self.plan[si], self.pos
        if self.mine is not None and self.mine["running"] is not None:
            running = Running.from_state(self.mine["running"], self.device)
        else:
            running = Running.zeros(self.n_train, self.device)
        self.mine = None
        offset = sum(p.epochs for p in self.plan[:si])
        self.sampler.set_epoch(offset + ep, pos["step"] * self.r["accum"])

        def stage_state() -> dict[str, Any]:
            return {
                "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(),
                "scaler": s.scaler.state_dict(),
            }

        def on_step(k: int) -> bool:
            pos["step"] = k
            pos["global_step"] += 1
            if c.save_every and pos["global_step"] % c.save_every == 0 and k < self.spe:
                self.save_last(stage_state(), running)
            return c.max_steps is not None and ep * self.spe + k >= c.max_steps

        show = self.d.main and c.progress
        _, seconds, images = train_epoch(
            net, self.train_loader, s, running, pos["step"], on_step, f"{st.name} {ep + 1}/{st.epochs}", show
        )
        cl = self.r["channels_last"]
        val = run_validation(self.eval_net, self.val_loader, self.d, self.device, self.amp_dtype, cl)
        rec = {
            "stage": si,
            "stage_name": st.name,
            "epoch": ep + 1,
            "global_epoch": offset + ep + 1,
            "step": pos["global_step"],
            "lr": self.lr_at(s, ep * self.spe),  # at the epoch's first optimiser step
            "lr_end": self.lr_at(s, ep * self.spe + max(0, pos["step"] - 1)),  # at its last
            **epoch_summary(running, self.d),
            **val,
        }
        # throughput of this session only (a resumed epoch counts the images trained since the resume)
        rec["images_per_s"] = images * self.d.world_size / seconds if seconds > 0 else None
        score = rec["val_" + c.select_metric.replace("accuracy", "acc")]
        rec["best"] = score > self.best["score"]
        pos.update(epoch=ep + 1, step=0, since_best=0 if rec["best"] else pos["since_best"] + 1)
        self.history.append(rec)
        if rec["best"]:
            self.best = {
                "score": score,
                "metric": c.select_metric,
                "stage": si,
                "epoch": ep + 1,
                "global_epoch": rec["global_epoch"],
                "step": pos["global_step"],
            }
            self.best_state = ckpt.to_cpu(self.model.state_dict())
            if self.d.main:
                ckpt.save(
                    self.run / BEST,
                    {
                        "model": self.best_state,
                        "spec": self.model.spec.to_dict(),
                        "best": self.best,
                        "record": rec,
                        "classes": self.classes,
                    },
                )
        if self.d.main:
            with open(self.run / METRICS, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.save_last(stage_state(), None)
