"""nsfw_lab: a reproducible course and study for five-class NSFW image classifiers.

The package reads as the pipeline: ``data`` → ``models`` → ``train`` | ``evaluate`` → ``explain`` → ``bench`` →
``cards``, with ``course`` (what the notebooks call) on top and ``config``, ``rundir`` (the run folder's
files) and ``utils`` below everything (``docs/architecture.md``). The common entry points are importable
from the top level (loaded on first use, so that ``import nsfw_lab`` stays fast)::

    from nsfw_lab import generate_proxy, curate, load_image, CuratedImageDataset, config
    from nsfw_lab import build_model, freeze, make_config, fit, evaluate_run, predict, load_run
    from nsfw_lab import export_run, run_bench, RunDir
"""

from __future__ import annotations

from nsfw_lab.utils.lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "config": ("nsfw_lab.config", None),
    "SynthConfig": ("nsfw_lab.data.synth", "SynthConfig"),
    "generate_proxy": ("nsfw_lab.data.synth", "generate"),
    "CurateConfig": ("nsfw_lab.data.curate", "CurateConfig"),
    "curate": ("nsfw_lab.data.curate", "curate"),
    "load_image": ("nsfw_lab.data.imageio", "load_image"),
    "ImageLoadError": ("nsfw_lab.data.imageio", "ImageLoadError"),
    "CuratedImageDataset": ("nsfw_lab.data.dataset", "CuratedImageDataset"),
    "make_loader": ("nsfw_lab.data.dataset", "make_loader"),
    "class_weights": ("nsfw_lab.data.dataset", "class_weights"),
    "train_transform": ("nsfw_lab.data.transforms", "train_transform"),
    "eval_transform": ("nsfw_lab.data.transforms", "eval_transform"),
    "prepare": ("nsfw_lab.data.prepare", "prepare"),
    "build_model": ("nsfw_lab.models", "build_model"),
    "freeze": ("nsfw_lab.models", "freeze"),
    "ConvPoolFC": ("nsfw_lab.models", "ConvPoolFC"),
    "layer_table": ("nsfw_lab.models", "layer_table"),
    "count_parameters": ("nsfw_lab.models", "count_parameters"),
    "TrainConfig": ("nsfw_lab.train", "TrainConfig"),
    "make_config": ("nsfw_lab.train", "make_config"),
    "fit": ("nsfw_lab.train", "fit"),
    "load_run": ("nsfw_lab.evaluate.loading", "load_run"),
    "evaluate_run": ("nsfw_lab.evaluate.scoring", "evaluate_run"),
    "classification_metrics": ("nsfw_lab.evaluate.metrics", "classification_metrics"),
    "predict": ("nsfw_lab.evaluate.predict", "predict"),
    "export_run": ("nsfw_lab.evaluate.export", "export_run"),
    "run_bench": ("nsfw_lab.bench.run", "run_bench"),
    "NsfwLabError": ("nsfw_lab.errors", "NsfwLabError"),
    "RunDir": ("nsfw_lab.rundir", "RunDir"),
}
__all__ = ["__version__", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
