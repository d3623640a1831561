"""What several notebooks do: start (profile, report, data, title label), pick the weights a profile asks
for, train (or reuse) a run and test it once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from nsfw_lab.config import Profile
from nsfw_lab.course.report import Report
from nsfw_lab.evaluate.scoring import evaluate_run
from nsfw_lab.rundir import RunDir
from nsfw_lab.train import TrainConfig, fit
from nsfw_lab.utils.fsutil import read_json


def pick_weights(profile: Profile, model: str) -> tuple[str, str]:
    """``("imagenet", note)`` when the profile asks for ImageNet weights and they can be had (the installed
    package, torchvision's cache, or a download when online), else ``("none", note)``; the note says plainly
    where the weights came from, or why the model starts from random weights and what that means."""
    from nsfw_lab.errors import NsfwLabError
    from nsfw_lab.models.names import ARCHITECTURES
    from nsfw_lab.models.zoo import fetch_imagenet, imagenet_source

    if ARCHITECTURES[model].imagenet is None:
        return "none", f"{model}: random initial weights (there are no pretrained ones)."
    if profile.weights != "imagenet":
        return "none", (
            f"{model}: random initial weights (profile {profile.name} does not use ImageNet weights). The "
            "comparison is between architectures trained from scratch, not between fine-tuned models."
        )
    try:
        fetch_imagenet(model)
    except NsfwLabError as e:
        return "none", (
            f"{model}: RANDOM initial weights — the profile asks for ImageNet weights but {e}. Expect much lower "
            "scores and slower learning than a real fine-tune: its numbers measure training from scratch."
        )
    return "imagenet", f"{model}: ImageNet weights from {imagenet_source(model)}."


def weights_table(profile: Profile, models: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """For each model, the weights it gets on this profile and machine and why (:func:`pick_weights`): what a
    notebook prints once, before any comparison."""
    out = {}
    for m in models:
        w, note = pick_weights(profile, m)
        out[m] = {"weights": w, "note": note}
    return out


def optimizer_for(weights: str, model: str) -> dict[str, Any]:
    """The course's optimiser settings: the article's SGD for ImageNet fine-tuning; from scratch, AdamW with a
    short warm-up (the hand-written CNN: light decay, no warm-up; at 3e-3 its large FC layer diverged in the first
    epoch on some seeds of the cpu profile, at 1e-3 it learns on every seed tried)."""
    if weights == "imagenet":
        return dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
    if model == "baseline":
        return dict(optimizer="adamw", lr=1e-3, weight_decay=1e-4)
    return dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_epochs=0.5)


def trains_from_scratch(profile: Profile, weights: str) -> bool:
    """Whether notebooks 03 and 04 train a ResNet or InceptionV3 that got ``weights`` here: always with ImageNet
    weights, from random ones only where the profile's budget lets them learn (``course.scratch_large``)."""
    return weights == "imagenet" or profile.course.scratch_large


SCRATCH_SKIPPED = (
    "no ImageNet weights on this machine, and from random weights it learns nothing in this profile's budget "
    "(measured on the cpu profile: two epochs on 50 images per class ended predicting one class); run the gpu "
    "profile, or give the machine torchvision's weight files once (docs/training.md)"
)


def large_model_data(profile: Profile, data: Path, runs: Path, seed: int = 0) -> Path:
    """The training data of the ResNet and InceptionV3 runs (notebooks 03 and 04): ``data`` itself, or a view with
    ``course.large_per_class`` training images per class (validation and test whole, so their scores compare)."""
    n = profile.course.large_per_class
    if n is None:
        return data
    from nsfw_lab.data.views import subset_view

    return subset_view(data, runs / "views" / f"large_{n}", train_per_class=n, seed=seed)


TEST_KEYS = ("accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "balanced_accuracy", "n")


@dataclass(frozen=True)
class Trained:
    """A finished run and its one look at the test split."""

    run: Path
    history: list[dict[str, Any]]  # the epoch records
    best: dict[str, Any]  # the best validation epoch
    evaluation: dict[str, Any]  # the run's test evaluation, whole

    @property
    def test(self) -> dict[str, Any]:
        """The headline test numbers (accuracy and macro-F1 with their intervals, n)."""
        return {k: self.evaluation[k] for k in TEST_KEYS}


def train_and_test(cfg: TrainConfig, n_boot: int = 1000) -> Trained:
    """Train ``cfg`` (reusing a finished or interrupted run in ``cfg.out``) and evaluate its best epoch on test."""
    from dataclasses import replace

    from nsfw_lab.errors import NsfwLabError, RunConfigChanged

    try:
        result = fit(replace(cfg, resume=True))
    except RunConfigChanged as e:
        raise NsfwLabError(
            f"{e}. The notebook's settings changed since that run was trained: delete {cfg.out} (or everything: "
            "`make clean`) and run the notebook again"
        ) from None
    test = _saved_test(RunDir(cfg.out)) or evaluate_run(cfg.out, "test", n_boot=n_boot, progress=False)
    return Trained(result.run_dir, result.history, result.best, test)


LADDER_NAMES = {"convnext_tiny": "ConvNeXt-T", "efficientnet_v2_s": "EfficientNetV2-S", "swin_t": "Swin-T"}


def train_beside(
    profile: Profile, data: Path, runs: Path, model: str, weights: str, size: int, epochs: int, seed: int,
    device: str, out: Path,
) -> Trained | None:  # fmt: skip
    """Notebook 04's runs (InceptionV3 and the modern ladder): ``model`` on notebook 03's training images
    (:func:`large_model_data`) with the ResNets' optimiser rule, trained and tested once; None where the profile
    does not train it from ``weights`` (:func:`trains_from_scratch`)."""
    if not trains_from_scratch(profile, weights):
        return None
    from nsfw_lab.train import make_config

    cfg = make_config(data=str(large_model_data(profile, data, runs, seed)), out=str(out), model=model, weights=weights,
                      image_size=size, batch_size=profile.batch_size, epochs=epochs, max_steps=profile.max_steps,
                      seed=seed, device=device, save_every=0, **optimizer_for(weights, model))  # fmt: skip
    return train_and_test(cfg)


def _saved_test(run: RunDir) -> dict[str, Any] | None:
    """The run's test evaluation when it was written after its best checkpoint (a rerun skips re-evaluating)."""
    ev, best = run.evaluation("test"), run.best
    if ev.is_file() and run.predictions("test").is_file() and ev.stat().st_mtime_ns >= best.stat().st_mtime_ns:
        return read_json(ev)
    return None


class Session(NamedTuple):
    """What every data notebook starts with."""

    profile: Profile
    report: Report
    data: Path
    label: str  # "<dataset>, profile <name>": goes into every title


def start(notebook: str, profile: str, data_dir: str | None, report_dir: str | None, seed: int = 0) -> Session:
    """The profile, the notebook's :class:`Report`, the curated data (the proxy is generated if missing)
    and the label for titles."""
    from nsfw_lab.config import get_profile
    from nsfw_lab.data.prepare import prepare

    p = get_profile(profile)
    data = prepare(profile, Path(data_dir) if data_dir else None, seed=seed)
    dataset = "synthetic proxy" if data_dir is None else Path(data_dir).name
    return Session(p, Report(notebook, profile, report_dir), data, f"{dataset}, profile {profile}")
