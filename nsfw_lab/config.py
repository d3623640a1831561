"""Project paths and run profiles: the one place the CLI and the notebooks take them from.

Layout (cookiecutter-data-science vocabulary):

- ``data/raw/``        immutable inputs: generated proxies, a scraper copy you point at
- ``data/processed/``  curated datasets (split manifest + pre-resized cache) that training reads
- ``reports/``         what runs produce: executed notebooks, figures, metrics

``NSFW_LAB_ROOT`` overrides the project root, ``NSFW_LAB_DATA`` / ``NSFW_LAB_REPORTS`` the two folders.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

CLASSES: tuple[str, ...] = ("drawings", "hentai", "neutral", "porn", "sexy")
"""The five classes of the nsfw_data_scraper taxonomy, in the (sorted) order used for label ids."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The splits a curated dataset holds. Training reads train and val only; test is for the evaluate stage."""


def _project_root() -> Path:
    env = os.environ.get("NSFW_LAB_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


PROJECT_ROOT: Path = _project_root()
DATA_DIR: Path = Path(os.environ.get("NSFW_LAB_DATA", PROJECT_ROOT / "data")).expanduser().resolve()
RAW_DIR: Path = DATA_DIR / "raw"
PROCESSED_DIR: Path = DATA_DIR / "processed"
REPORTS_DIR: Path = Path(os.environ.get("NSFW_LAB_REPORTS", PROJECT_ROOT / "reports")).expanduser().resolve()
METRICS_DIR: Path = REPORTS_DIR / "metrics"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"


@dataclass(frozen=True)
class Course:
    """What each notebook trains on one profile; a notebook's parameters cell may override any of them."""

    leakage_px: int  # 00: input of the leakage lesson's small CNN
    leakage_batch: int  # 00: its batch size
    residual_depths: tuple[int, ...]  # 01: blocks per network (plain and residual)
    residual_epochs: int  # 01: epochs per network
    baseline_epochs: int  # 02: the hand-written CNN
    shortcut_epochs: int  # 06: the same CNN on the badged proxy and on the clean one
    finetune_model: str  # 03: the network of the transfer lesson (pretrained vs scratch, probe, two-stage, batch)
    finetune_px: int  # 03: its input (112 px: a 7x7 Grad-CAM map at stride 16)
    finetune_epochs: int  # 03: epochs of a pretrained fine-tune (stage 1 of the two-stage recipe)
    scratch_epochs: int  # 03: epochs of the same network from random weights (its best chance in the budget)
    sweep_per_class: tuple[int, ...]  # 03: training images per class of the transfer curve's linear probes
    scratch_sweep_per_class: tuple[int, ...]  # 03: ... and of its from-scratch runs (each a full training)
    resnet_px: int  # 03: input of the ResNet-50/101 runs
    resnet_epochs: int  # 03: their stage-1 epochs
    large_per_class: int | None  # 03-04: training images per class of the ResNet and InceptionV3 runs (None: all)
    scratch_large: bool  # 03-04: train them from random weights when their ImageNet weights cannot be had
    inception_px: int  # 04: InceptionV3's input (299 as published; smaller ones drop the auxiliary head)
    inception_epochs: int  # 04
    ladder: tuple[
        str, ...
    ]  # 04: the modern backbones trained beside InceptionV3 (ConvNeXt-T, EfficientNetV2-S, Swin-T)
    ladder_px: int  # 04: their input
    ladder_epochs: int  # 04
    ablation_model: str  # 05: the base model the augmentations are added to (fine-tuned from ImageNet)
    ablation_px: int  # 05: its input
    ablation_epochs: int  # 05: epochs per run
    ablation_seeds: tuple[int, ...]  # 05: seeds per condition (the paired test pools them)
    road_images: int  # 06: images per model for ROAD (noisy linear imputation: seconds per image at 112 px)
    robustness_per_class: int | None  # 06: test images per class under every corruption (None: all)
    robustness_severities: tuple[int, ...]  # 06: the corruption severities measured (of 1..5)
    clip_per_class: int  # 07: animated proxy clips per class in each of val and test (8 frames each)


@dataclass(frozen=True)
class Profile:
    """Sizes of one run tier. ``smoke`` is for CI, ``cpu`` for a laptop, ``gpu`` for a real study."""

    name: str
    per_class: int  # proxy images per class
    proxy_px: int  # short side of generated proxy images
    short_side: int  # short side of the curated cache
    image_size: int  # input of the CNNs trained at the profile's reduced size (the baseline)
    epochs: int  # epochs of a run no notebook sets otherwise (00's leakage runs)
    batch_size: int
    max_steps: int | None  # cap on optimiser steps per run of the large models (None = no cap)
    val_fraction: float  # share of the curated images in the validation split
    test_fraction: float  # ... and in the test split (the cpu profile: >= 1,000 images each)
    device: str  # "auto" picks CUDA when present
    weights: str  # "imagenet" when the weights can be had, else "none"
    course: Course  # the notebooks' own sizes

    def to_dict(self) -> dict:
        """Plain-typed view (for JSON and papermill parameters)."""
        d = asdict(self)
        for k in (
            "residual_depths",
            "sweep_per_class",
            "scratch_sweep_per_class",
            "ablation_seeds",
            "ladder",
            "robustness_severities",
        ):
            d["course"][k] = list(getattr(self.course, k))
        return d


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke",
        per_class=100,
        proxy_px=64,
        short_side=64,
        image_size=56,
        epochs=1,
        batch_size=16,
        max_steps=4,
        val_fraction=0.1,
        test_fraction=0.1,
        device="cpu",
        weights="imagenet",  # EfficientNet-Lite0's ship with a package; the ResNets fall back offline
        course=Course(
            leakage_px=56,
            leakage_batch=16,
            residual_depths=(2, 8),
            residual_epochs=3,
            baseline_epochs=6,  # enough to beat chance in CI
            shortcut_epochs=6,
            finetune_model="efficientnet_lite0",
            finetune_px=56,
            finetune_epochs=1,
            scratch_epochs=1,
            sweep_per_class=(2, 5),
            scratch_sweep_per_class=(5,),
            resnet_px=56,
            resnet_epochs=1,
            large_per_class=None,
            scratch_large=True,  # every path exercised
            inception_px=75,  # InceptionV3's minimum
            inception_epochs=2,  # capped by max_steps
            ladder=("convnext_tiny", "efficientnet_v2_s", "swin_t"),  # a few steps each: every path
            ladder_px=56,
            ladder_epochs=1,
            ablation_model="efficientnet_lite0",
            ablation_px=56,
            ablation_epochs=1,
            ablation_seeds=(0,),
            road_images=4,
            robustness_per_class=4,
            robustness_severities=(5,),
            clip_per_class=4,
        ),
    ),
    "cpu": Profile(
        "cpu",
        per_class=600,
        proxy_px=128,
        short_side=128,
        image_size=64,  # reduced for 2 cores
        epochs=8,
        batch_size=32,
        max_steps=None,
        val_fraction=0.36,  # >= 1,000 validation and test images: a paired test that can see 0.05
        test_fraction=0.36,
        device="auto",
        weights="imagenet",
        course=Course(
            leakage_px=64,
            leakage_batch=32,
            residual_depths=(2, 8, 20, 40),
            residual_epochs=20,
            baseline_epochs=6,
            shortcut_epochs=3,  # the badge is learnt in the first epochs
            finetune_model="efficientnet_lite0",
            finetune_px=112,
            finetune_epochs=2,
            scratch_epochs=2,  # the fine-tune's: the same compute from random weights
            sweep_per_class=(10, 25, 50, 100),
            scratch_sweep_per_class=(),  # a from-scratch run per size does not fit in 30 minutes on 2 cores
            resnet_px=64,
            resnet_epochs=1,
            large_per_class=50,  # with ImageNet weights (online); offline they are not trained
            scratch_large=False,  # from random weights they learn nothing in 30 minutes on 2 cores (measured)
            inception_px=96,
            inception_epochs=2,
            ladder=("convnext_tiny",),  # the cheapest of the three at 112 px; like the ResNets, ImageNet weights only
            ladder_px=112,
            ladder_epochs=2,
            ablation_model="efficientnet_lite0",
            ablation_px=56,  # 14 fine-tunes must fit on 2 cores
            ablation_epochs=1,
            ablation_seeds=(0, 1),
            road_images=8,
            robustness_per_class=40,  # 200 images: a paired drop of about 0.05 is detectable
            robustness_severities=(1, 3, 5),
            clip_per_class=40,  # 120 allowed val clips: a clip FPR of 2% is resolved to about 1 clip in 120
        ),
    ),
    "gpu": Profile(
        "gpu",
        per_class=2000,
        proxy_px=320,
        short_side=256,
        image_size=224,
        epochs=30,
        batch_size=128,
        max_steps=None,
        val_fraction=0.1,
        test_fraction=0.1,
        device="auto",
        weights="imagenet",
        course=Course(
            leakage_px=64,
            leakage_batch=32,
            residual_depths=(2, 8, 20, 40),
            residual_epochs=30,
            baseline_epochs=30,
            shortcut_epochs=30,
            finetune_model="resnet50",
            finetune_px=224,
            finetune_epochs=30,
            scratch_epochs=30,
            sweep_per_class=(10, 25, 50, 100, 400),
            scratch_sweep_per_class=(10, 25, 50, 100, 400),
            resnet_px=224,
            resnet_epochs=30,
            large_per_class=None,
            scratch_large=True,
            inception_px=299,
            inception_epochs=30,
            ladder=("convnext_tiny", "efficientnet_v2_s", "swin_t"),
            ladder_px=224,  # one resolution for the ladder and the ResNets: a like-for-like comparison
            ladder_epochs=30,
            ablation_model="resnet50",
            ablation_px=224,
            ablation_epochs=30,
            ablation_seeds=(0, 1, 2),
            road_images=64,
            robustness_per_class=None,
            robustness_severities=(1, 2, 3, 4, 5),
            clip_per_class=200,
        ),
    ),
}
DEFAULT_PROFILE = "cpu"


def get_profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise a one-line error naming the valid ones."""
    from nsfw_lab.errors import NsfwLabError

    try:
        return PROFILES[name]
    except KeyError:
        raise NsfwLabError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def proxy_raw_dir(profile: Profile | str) -> Path:
    """Where ``nsfw-lab prepare`` writes the generated proxy for a profile."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    return RAW_DIR / f"proxy-{p.name}"


def proxy_curated_dir(profile: Profile | str) -> Path:
    """Where ``nsfw-lab prepare`` writes the curated proxy for a profile."""
    p = get_profile(profile) if isinstance(profile, str) else profile
    return PROCESSED_DIR / f"proxy-{p.name}"
