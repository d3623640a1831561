"""``nsfw-lab evaluate``: a run's model over one split of its curated data, scored with bootstrap intervals.

Writes the run's ``eval_<split>`` JSON (metrics, :mod:`nsfw_lab.evaluate.metrics`) and ``predictions_<split>``
CSV (path, label, prediction, one probability column per class). :func:`split_outputs` is the one inference
pass over a split; ``nsfw-lab calibrate`` reuses it for its logits. Serving speed is not measured here: that
is ``nsfw-lab bench``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from nsfw_lab.data.dataset import CuratedImageDataset, make_loader
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.loading import LoadedRun, load_run
from nsfw_lab.evaluate.metrics import classification_metrics
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import atomic_write_json, write_csv
from nsfw_lab.utils.progress import tqdm


@dataclass(frozen=True)
class SplitOutputs:
    """The model's outputs on one split: ``(N, classes)`` probabilities (or logits), labels, cached paths."""

    split: str
    data: Path
    outputs: np.ndarray
    labels: np.ndarray
    paths: list[str]


@torch.inference_mode()
def infer(run: LoadedRun, loader: DataLoader, show: bool = True, logits: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (``logits=True``: the raw logits) and labels over ``loader``."""
    outs, ys = [], []
    for x, y in tqdm(loader, desc="evaluate", disable=not show, leave=False, unit="batch"):
        out = run.model(x.to(run.device, non_blocking=True)).float()
        outs.append((out if logits else out.softmax(1)).cpu().numpy())
        ys.append(np.asarray(y))
    if not outs:
        return np.zeros((0, len(run.classes))), np.zeros(0, int)
    return np.concatenate(outs), np.concatenate(ys)


def split_outputs(
    run: LoadedRun,
    split: str,
    data: Path | str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    logits: bool = False,
) -> SplitOutputs:
    """The run's model over ``split`` of its curated data (or ``data``, which must have the same classes)."""
    root = Path(data) if data else run.data_dir
    ds = CuratedImageDataset(root, split, eval_transform(run.image_size, normalize=False))
    if ds.classes != run.classes:
        raise NsfwLabError(f"{root}: classes {ds.classes} differ from the run's {run.classes}")
    out, y = infer(run, make_loader(ds, batch_size, train=False, device=run.device.type), progress, logits)
    return SplitOutputs(split, root, out, y, [r["cached_path"] for r in ds.rows])


def evaluate_run(
    run_dir: Path | str,
    split: str = "test",
    checkpoint: str = "best",
    data: Path | str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    n_boot: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``split`` of its curated data (or ``data``) and write the reports;
    returns what the ``eval_<split>`` JSON holds."""
    if batch_size < 1:
        raise NsfwLabError(f"--batch-size must be >= 1, not {batch_size}")
    if n_boot < 0:
        raise NsfwLabError(f"--bootstrap must be >= 0, not {n_boot}")
    run = load_run(run_dir, checkpoint, device)
    scored = split_outputs(run, split, data, batch_size, progress)
    probs, y = scored.outputs, scored.labels
    result = {
        "run": str(run.run_dir),
        "split": split,
        "checkpoint": checkpoint,
        "data": str(scored.data),
        "model": run.model.spec.name,
        **classification_metrics(y, probs, run.classes, n_boot),
        "batch_size": batch_size,
        "device": str(run.device),
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(run.files.evaluation(split), result)
    write_predictions(run.files, split, scored.paths, run.classes, y, probs)
    return result


def write_predictions(
    files: RunDir, split: str, paths: list[str], classes: list[str], y: np.ndarray, probs: np.ndarray
) -> None:
    """The ``predictions_<split>`` CSV: path, label, prediction and one probability column per class."""
    header = ["path", "label", "prediction", *[f"prob_{c}" for c in classes]]
    rows = (
        [paths[i], classes[y[i]], classes[int(probs[i].argmax())], *[f"{v:.6f}" for v in probs[i]]]
        for i in range(len(y))
    )
    write_csv(files.predictions(split), header, rows)
