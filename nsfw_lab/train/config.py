"""``TrainConfig``: every knob of a run (one flag each on ``nsfw-lab train``), presets and validation.

Learning rate and batch size. ``--lr`` is the rate used at the *effective* batch
(``batch_size x processes x accum``). With ``--lr-scale linear`` it is instead read as the rate for
a batch of 256 and multiplied by ``effective_batch / 256`` (Goyal et al., "Accurate, Large Minibatch
SGD"), so changing the hardware-imposed split of a batch of 512 into ``B x K`` keeps the optimisation
the same. ``--effective-batch 512`` picks ``accum`` for you: ``ceil(512 / (B x processes))``.

Two-stage recipe (``--recipe two-stage``, the article's tip): stage 1 fine-tunes everything for
``--epochs``; stage 2 starts from stage 1's best (val) weights, freezes the first ``--freeze-stages``
stages and trains ``--refine-epochs`` more at ``lr x --refine-lr-factor``. With ``--recipe single``,
``--freeze-stages`` applies to the one stage (0 = full fine-tune).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from nsfw_lab.data import DECODERS as DECODE
from nsfw_lab.data.augment import check_names
from nsfw_lab.errors import NsfwLabError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step")
RECIPES = ("single", "two-stage")
AMP = ("auto", "bf16", "fp16", "off")
SELECT = ("macro_f1", "accuracy")
# Fields that may differ when resuming (they do not change the numbers).
# ``data`` and ``out`` may be spelled differently (relative/absolute); the data is checked by its manifest hash.
# (``compile`` is not among them: compiled kernels round differently and draw dropout masks from another stream.)
RESUMABLE_CHANGES = frozenset({"resume", "workers", "save_every", "progress", "data", "out"})
SAME_PIXELS = frozenset({"torchcodec", "pil"})  # decoders giving identical pixels: switching them keeps a resume exact


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` means "derive it" (see :func:`resolve`)."""

    data: str
    out: str
    model: str = "resnet18"
    weights: str = "none"
    epochs: int = 10
    batch_size: int = 32
    accum: int | None = None
    effective_batch: int | None = None
    image_size: int | None = None
    lr: float = 0.01
    lr_scale: str = "none"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    lr_steps: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    class_weighting: str = "none"
    crop_scale: tuple[float, float] = (0.35, 1.0)
    augment: tuple[str, ...] = ()
    freeze_stages: int = 0
    recipe: str = "single"
    refine_epochs: int | None = None
    refine_lr_factor: float = 0.1
    patience: int = 0
    select_metric: str = "macro_f1"
    max_steps: int | None = None
    cnn_widths: tuple[int, ...] = (32, 64, 128, 256)
    cnn_hidden: int = 256
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool | None = None
    decode: str = "torchcodec"
    compile: bool = False
    sync_bn: bool = False
    workers: int | None = None
    save_every: int = 50
    preset: str | None = None
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain-typed view for JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise NsfwLabError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS: dict[str, dict[str, Any]] = {
    # The original article's recipe, implemented as it describes it (incl. the freeze-and-refine stage
    # its code lacked): ImageNet ResNet-101, SGD 0.01 at batch 512, LR x0.1 at epochs 20/40/80.
    "article": dict(
        model="resnet101",
        weights="imagenet",
        epochs=90,
        effective_batch=512,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        lr_steps=(20, 40, 80),
        lr_gamma=0.1,
        recipe="two-stage",
        freeze_stages=3,
        refine_epochs=10,
        refine_lr_factor=0.1,
    ),
    # A modern short fine-tune (torchvision's newer recipe, scaled down): AdamW, warmup + cosine, smoothing.
    "modern": dict(
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=1.0,
        label_smoothing=0.1,
        recipe="two-stage",
        freeze_stages=2,
        refine_lr_factor=0.1,
    ),
}


def make_config(**given: Any) -> TrainConfig:
    """A config from a preset's values overridden by ``given`` (``preset=None`` = the plain defaults)."""
    preset = given.get("preset")
    if preset is not None and preset not in PRESETS:
        raise NsfwLabError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS.get(preset or "", {}), **given}
    if "accum" in given and "effective_batch" not in given:  # an explicit flag beats the preset's other one
        values["effective_batch"] = None
    if "effective_batch" in given and "accum" not in given:
        values["accum"] = None
    return TrainConfig.from_dict(values)


def validate(c: TrainConfig) -> None:
    """One-line errors for values no run could use (checks needing the data or model come later)."""
    checks = [
        (c.epochs >= 1, f"--epochs must be >= 1, not {c.epochs}"),
        (c.batch_size >= 1, f"--batch-size must be >= 1, not {c.batch_size}"),
        (c.accum is None or c.accum >= 1, f"--accum must be >= 1, not {c.accum}"),
        (c.accum is None or c.effective_batch is None, "give --accum or --effective-batch, not both"),
        (c.effective_batch is None or c.effective_batch >= 1, "--effective-batch must be >= 1"),
        (c.lr > 0, f"--lr must be > 0, not {c.lr}"),
        (c.momentum >= 0, f"--momentum must be >= 0, not {c.momentum}"),
        (c.weight_decay >= 0, f"--weight-decay must be >= 0, not {c.weight_decay}"),
        (c.lr_gamma > 0, f"--lr-gamma must be > 0, not {c.lr_gamma}"),
        (all(m >= 0 for m in c.lr_steps), f"--lr-steps must be epochs >= 0: {list(c.lr_steps)}"),
        (c.workers is None or c.workers >= 0, f"--workers must be >= 0, not {c.workers}"),
        (c.cnn_hidden >= 1, f"--cnn-hidden must be >= 1, not {c.cnn_hidden}"),
        (c.lr_scale in ("none", "linear"), f"--lr-scale must be none or linear, not {c.lr_scale!r}"),
        (c.optimizer in OPTIMIZERS, f"unknown optimizer {c.optimizer!r}; choose {' or '.join(OPTIMIZERS)}"),
        (c.schedule in SCHEDULES, f"unknown schedule {c.schedule!r}; choose {' or '.join(SCHEDULES)}"),
        (c.recipe in RECIPES, f"unknown recipe {c.recipe!r}; choose {' or '.join(RECIPES)}"),
        (c.amp in AMP, f"--amp must be one of {', '.join(AMP)}, not {c.amp!r}"),
        (c.decode in DECODE, f"--decode must be one of {', '.join(DECODE)}, not {c.decode!r}"),
        (c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"), f"unknown device {c.device!r}"),
        (c.select_metric in SELECT, f"--select-metric must be one of {', '.join(SELECT)}"),
        (c.class_weighting in ("none", "balanced"), "--class-weighting must be none or balanced"),
        (0 <= c.label_smoothing < 1, f"--label-smoothing must be in [0, 1), not {c.label_smoothing}"),
        (c.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
        (0 < c.crop_scale[0] <= c.crop_scale[1] <= 1, f"--crop-scale must be 0 < MIN <= MAX <= 1: {c.crop_scale}"),
        (c.freeze_stages >= 0, "--freeze-stages must be >= 0"),
        (c.refine_epochs is None or c.refine_epochs >= 1, "--refine-epochs must be >= 1"),
        (c.refine_lr_factor > 0, "--refine-lr-factor must be > 0"),
        (c.max_steps is None or c.max_steps >= 1, "--max-steps must be >= 1"),
        (c.patience >= 0, "--patience must be >= 0"),
        (c.save_every >= 0, "--save-every must be >= 0"),
        (c.image_size is None or c.image_size >= 8, f"--image-size {c.image_size} is too small"),
        (all(w >= 1 for w in c.cnn_widths) and len(c.cnn_widths) >= 1, "--cnn-widths must be positive"),
        (c.weights.strip() != "", "--weights must be imagenet, none or a file"),
    ]
    for ok, msg in checks:
        if not ok:
            raise NsfwLabError(msg)
    check_names(c.augment)


@dataclass(frozen=True)
class Stage:
    """One stage of a recipe."""

    name: str
    epochs: int
    lr: float
    freeze_stages: int


def stages(c: TrainConfig, lr: float) -> list[Stage]:
    """The recipe's stages with their learning rates (``lr`` = the resolved stage-1 rate)."""
    if c.recipe == "single":
        return [Stage("train", c.epochs, lr, c.freeze_stages)]
    refine = c.refine_epochs or max(1, math.ceil(c.epochs / 3))
    return [Stage("full", c.epochs, lr, 0), Stage("refine", refine, lr * c.refine_lr_factor, c.freeze_stages)]


@dataclass(frozen=True)
class Resolved:
    """The values a run derives from its config and the job (recorded as ``resolved`` in ``config.json``)."""

    accum: int  # micro-batches per optimiser step
    effective_batch: int  # images per optimiser step, over every process
    world_size: int  # processes
    lr: float  # stage-1 learning rate at the effective batch
    amp: str  # "bf16", "fp16" or "off"
    channels_last: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain view for JSON."""
        return asdict(self)


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16; Linux ``/proc/cpuinfo`` flag).
    Without it bf16 autocast is emulated and several times *slower* than fp32."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def resolve(c: TrainConfig, world_size: int, cuda: bool, amx: bool | None = None) -> Resolved:
    """Derived values: accumulation, effective batch, LR, AMP, memory format.

    ``--amp auto`` and an unset ``--channels-last`` mean bf16 autocast + channels_last on CUDA and on CPUs
    with AMX-BF16 (``amx``; detected when None), fp32 elsewhere; channels_last also for architectures that
    gain from it on any CPU (``Architecture.cpu_channels_last``)."""
    from nsfw_lab.models.names import ARCHITECTURES

    fast = cuda or (cpu_has_amx_bf16() if amx is None else amx)
    arch = ARCHITECTURES.get(c.model)
    layout = fast or (arch is not None and arch.cpu_channels_last)
    accum = c.accum or (math.ceil(c.effective_batch / (c.batch_size * world_size)) if c.effective_batch else 1)
    effective = c.batch_size * world_size * accum
    return Resolved(
        accum=accum,
        effective_batch=effective,
        world_size=world_size,
        lr=c.lr * effective / 256 if c.lr_scale == "linear" else c.lr,
        amp=("bf16" if fast else "off") if c.amp == "auto" else c.amp,
        channels_last=layout if c.channels_last is None else c.channels_last,
    )


def resume_diff(saved: TrainConfig, now: TrainConfig) -> list[str]:
    """Names of fields that differ in a way that would change the run."""
    a, b = saved.to_dict(), now.to_dict()
    same = lambda k: a[k] == b[k] or (k == "decode" and {a[k], b[k]} <= SAME_PIXELS)  # noqa: E731
    return [k for k in a if k not in RESUMABLE_CHANGES and not same(k)]


def with_overrides(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """``saved`` with the explicitly given options applied (used by ``--resume``)."""
    return replace(saved, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
