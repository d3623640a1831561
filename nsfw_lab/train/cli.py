"""The ``nsfw-lab train`` sub-command: one flag per :class:`TrainConfig` field.

Options left out take the preset's value, else the config default; with ``--resume`` they take the
saved run's value, and an option given with a different value is refused (it would change the run).
"""

from __future__ import annotations

import argparse
from typing import Any

from nsfw_lab.data.augment import AUGMENTATIONS
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.rundir import RunDir
from nsfw_lab.train.config import AMP, DECODE, OPTIMIZERS, PRESETS, RECIPES, SCHEDULES, SELECT, TrainConfig
from nsfw_lab.utils.cli import Subparsers, add_progress_flag

D = TrainConfig(data="", out="")


def add_parser(sub: Subparsers) -> None:
    """Register ``train`` on the CLI's sub-parsers."""
    from nsfw_lab.models import MODELS

    t = sub.add_parser(
        "train",
        help="train a model on a curated folder (torchrun-ready)",
        description=__doc__,
        argument_default=argparse.SUPPRESS,
    )

    def opt(flag: str, help: str, **kw: Any) -> None:
        field = flag.lstrip("-").replace("-", "_")
        default = getattr(D, field, None)
        quiet = kw.get("action") == "store_true" or default in (None, ()) or "(default" in help
        shown = "" if quiet else f" (default: {default})"
        t.add_argument(flag, help=help + shown, **kw)

    t.add_argument("--data", help="curated folder (`nsfw-lab curate` / `prepare` output)")
    files = RunDir("OUT")
    written = ", ".join(p.name for p in (files.config, files.metrics, files.last, files.best))
    t.add_argument("--out", required=True, help=f"run folder ({written})")
    opt("--preset", f"start from a preset: {', '.join(PRESETS)}", choices=sorted(PRESETS))
    opt("--model", "architecture", choices=MODELS)
    opt("--weights", "imagenet, none, or a state-dict / checkpoint file")
    opt("--epochs", "epochs of the (first) stage", type=int)
    opt("--batch-size", "images per process per micro-batch", type=int)
    opt("--accum", "micro-batches per optimiser step (default 1)", type=int)
    opt("--effective-batch", "pick --accum to reach this batch (e.g. 512)", type=int)
    opt("--image-size", "input size in px (default: the model's: 224, InceptionV3 299)", type=int)
    opt("--lr", "learning rate at the effective batch (see --lr-scale)", type=float)
    opt("--lr-scale", "linear: --lr is for a batch of 256, scaled to the effective batch", choices=("none", "linear"))
    opt("--optimizer", "optimiser", choices=OPTIMIZERS)
    opt("--momentum", "SGD momentum", type=float)
    opt("--weight-decay", "weight decay (not on biases and norm weights)", type=float)
    opt("--schedule", "LR schedule after warm-up", choices=SCHEDULES)
    opt("--lr-steps", "epochs where the step schedule multiplies LR by --lr-gamma", type=int, nargs="*")
    opt("--lr-gamma", "step schedule factor", type=float)
    opt("--warmup-epochs", "linear warm-up length (fractions allowed)", type=float)
    opt("--label-smoothing", "label smoothing of the training loss", type=float)
    opt("--class-weighting", "balanced: inverse-frequency loss weights", choices=("none", "balanced"))
    opt("--crop-scale", "RandomResizedCrop area range", type=float, nargs=2, metavar=("MIN", "MAX"))
    opt(
        "--augment",
        "extra augmentations after crop and flip, in order (see nsfw_lab.data.augment)",
        nargs="+",
        choices=list(AUGMENTATIONS),
        metavar="NAME",
    )
    opt("--recipe", "single stage, or the article's full fine-tune then freeze-and-refine", choices=RECIPES)
    opt("--freeze-stages", "stages frozen (stem, layer1..4) in the refine stage, or in the single stage", type=int)
    opt("--refine-epochs", "epochs of the refine stage (default: a third of --epochs)", type=int)
    opt("--refine-lr-factor", "refine-stage LR = stage-1 LR x this", type=float)
    opt("--patience", "stop a stage after this many epochs without a better val score (0 = never)", type=int)
    opt("--select-metric", f"val metric that picks {files.best.name}", choices=SELECT)
    opt("--max-steps", "cap on optimiser steps per stage (smoke runs)", type=int)
    opt("--cnn-widths", "baseline: channels of each conv-pool block", type=int, nargs="+")
    opt("--cnn-hidden", "baseline: hidden FC units", type=int)
    opt("--seed", "seed of weights, data order and augmentation", type=int)
    opt("--device", "auto, cpu, cuda or cuda:N")
    opt("--amp", "mixed precision (auto = bf16 on CUDA, off on CPU; fp16 needs CUDA)", choices=AMP)
    opt("--channels-last", "channels_last memory format (default: on with CUDA)", action=argparse.BooleanOptionalAction)
    opt("--decode", "cache decoding: TorchCodec or Pillow in the workers, or gpu (nvJPEG, CUDA)", choices=DECODE)
    opt("--compile", "torch.compile the model (pays on long GPU runs; first steps compile)", action="store_true")
    opt("--sync-bn", "SyncBatchNorm across GPUs", action="store_true")
    opt(
        "--workers",
        "DataLoader workers (default: this process's share of the cores - 1, max 8; env NSFW_LAB_WORKERS)",
        type=int,
    )
    opt("--save-every", f"also write {files.last.name} every N optimiser steps (0 = epoch ends only)", type=int)
    opt(
        "--resume",
        f"continue the run in --out from {files.last.name} (a folder without one starts the run)",
        action="store_true",
    )
    add_progress_flag(t)
    t.set_defaults(func=run, on_interrupt=f"{files.last.name} holds the latest checkpoint; continue with --resume")


def config_from_args(given: dict[str, Any]) -> TrainConfig:
    """The run's config: preset and defaults, or the saved config under ``--resume``, plus ``given``."""
    from nsfw_lab.train.config import make_config, with_overrides

    given = {k: v for k, v in given.items() if k not in ("func", "command", "on_interrupt")}
    run = RunDir(given["out"])
    if given.get("resume") and run.is_run():
        return with_overrides(TrainConfig.from_dict(run.read_config()["config"]), given)
    if not given.get("data"):
        raise NsfwLabError("--data is required (a curated folder; see `nsfw-lab prepare` or `nsfw-lab curate`)")
    return make_config(**given)


def run(a: argparse.Namespace) -> None:
    """Train and print the best validation epoch."""
    from nsfw_lab.train.distributed import from_env
    from nsfw_lab.train.engine import fit

    r = fit(config_from_args(vars(a)))
    b = r.best
    if b.get("epoch") is not None and from_env().main:
        print(f"best {b['metric']} {b['score']:.4f} at stage {b['stage']} epoch {b['epoch']}; run in {r.run_dir}")
