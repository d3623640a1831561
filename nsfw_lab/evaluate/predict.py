"""``nsfw-lab predict``: class probabilities for image files and folders, batched and fault-tolerant.

A file that cannot be read gets a row with its error and empty probabilities; the rest of the batch
goes on. Animated images use their first frame. Folders are searched recursively for image files.

Probabilities are temperature-scaled when the run was calibrated (``nsfw-lab calibrate`` wrote its
``calibration`` file), and every row gets ``block_score`` (P(block group)) and a moderation ``decision``
from the run's fitted policy (its ``policy`` file); an uncalibrated run uses the default policy with both
thresholds at 0.5 and says so (:func:`decision_rule`).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch
from torchvision.transforms.v2.functional import pil_to_tensor

from nsfw_lab.data.imageio import ImageLoadError, load_image
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.calibration import load_calibration
from nsfw_lab.evaluate.loading import LoadedRun, load_run
from nsfw_lab.evaluate.policy import UNFITTED, Policy, Thresholds, block_score, decide, load_fitted, load_policy
from nsfw_lab.utils.progress import tqdm

if TYPE_CHECKING:
    from nsfw_lab.evaluate.export import ExportedRun

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif"})


def expand_paths(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Files as given; folders as their image files (by suffix), recursively, in sorted order. A folder
    without image files is yielded itself (it becomes an error row, never a silent nothing)."""
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            yield from files or [p]
        else:
            yield p  # missing files become error rows


def _batches(items: Iterable[Path], n: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class DecisionRule:
    """What ``predict`` applies to a run's logits: a temperature, then a policy at its thresholds."""

    temperature: float
    policy: Policy
    thresholds: Thresholds
    note: str  # where each part comes from, in one line


def decision_rule(run: LoadedRun | ExportedRun) -> DecisionRule:
    """Temperature, policy and thresholds ``predict`` applies for ``run``, and a line saying where from. A
    calibration fitted for the other checkpoint is not applied (its logits differ); a policy fitted at another
    temperature than the stored one is an error."""
    files = run.files
    cal, fitted, note = load_calibration(files.path), load_fitted(files.path), ""
    t = cal["temperature"] if cal else None
    if cal and cal.get("checkpoint", "best") != run.checkpoint:
        t, fitted = None, None
        note = f"calibration was fitted for the {cal.get('checkpoint')} checkpoint, not applied to {run.checkpoint}: "
    if fitted and abs(fitted.temperature - (t or 1.0)) > 1e-9:
        raise NsfwLabError(
            f"{files.path}: {files.policy.name} and {files.calibration.name} disagree; rerun `nsfw-lab calibrate`"
        )
    policy, thresholds = (fitted.policy, fitted.thresholds) if fitted else (load_policy(), UNFITTED)
    policy.check(run.classes, "policy")
    note += f"calibrated (T={t:.3f})" if t else "uncalibrated probabilities"
    if fitted:
        note += f"; policy fitted on val (block >= {thresholds.t_block:.3f}, review >= {thresholds.t_review:.3f})"
    else:
        note += "; no fitted policy: block when P(block group) >= 0.5 (run `nsfw-lab calibrate`)"
    return DecisionRule(t or 1.0, policy, thresholds, note)


@torch.inference_mode()
def iter_predictions(
    run: LoadedRun | ExportedRun,
    paths: Iterable[Path | str],
    batch_size: int = 32,
    progress: bool = False,
    rule: DecisionRule | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per input: ``path``, ``prediction``, ``prob_<class>`` for each class, ``block_score``,
    ``decision``, ``error``. ``run`` is a loaded checkpoint or an export
    (:func:`nsfw_lab.evaluate.export.load_exported_run`: ONNX Runtime or TorchScript); both take the same uint8
    batches."""
    rule = rule or decision_rule(run)
    temperature, policy, thresholds = rule.temperature, rule.policy, rule.thresholds
    tf = eval_transform(run.image_size, normalize=False)
    empty = {f"prob_{c}": None for c in run.classes} | {"block_score": None, "decision": None}
    bar = tqdm(desc="predict", unit="img", disable=not progress, file=sys.stderr)
    for batch in _batches(expand_paths(paths), batch_size):
        bar.update(len(batch))
        rows: list[dict[str, Any]] = []
        xs, ok = [], []
        for p in batch:
            if p.is_dir():
                rows.append({"path": str(p), "prediction": None, **empty, "error": "no_images: no image files"})
                continue
            try:
                xs.append(tf(pil_to_tensor(load_image(p))))
                ok.append(len(rows))
                rows.append({"path": str(p), "prediction": None, **empty, "error": None})
            except ImageLoadError as exc:
                rows.append({"path": str(p), "prediction": None, **empty, "error": f"{exc.reason}: {exc}"})
        if xs:
            probs = (run.model(torch.stack(xs).to(run.device)).float() / temperature).softmax(1).cpu().numpy()
            scores = block_score(probs, run.classes, policy)
            decisions = decide(probs, run.classes, policy, thresholds)
            for j, row, s, d in zip(ok, probs, scores, decisions, strict=True):
                rows[j]["prediction"] = run.classes[int(row.argmax())]
                rows[j].update({f"prob_{c}": round(float(v), 6) for c, v in zip(run.classes, row, strict=True)})
                rows[j].update(block_score=round(float(s), 6), decision=str(d))
        yield from rows
    bar.close()


def predict(
    run_dir: Path | str,
    paths: Sequence[Path | str],
    batch_size: int = 32,
    device: str = "auto",
    checkpoint: str = "best",
) -> list[dict[str, Any]]:
    """Predictions of a run's model for ``paths`` (files or folders) as a list of rows."""
    if batch_size < 1:
        raise NsfwLabError(f"batch_size must be >= 1, not {batch_size}")
    return list(iter_predictions(load_run(run_dir, checkpoint, device), paths, batch_size))


def write_rows(rows: Iterable[dict[str, Any]], fmt: str, out: IO[str] | None = None) -> tuple[int, int]:
    """Stream rows as CSV (header from the first row) or JSON lines to ``out`` (default: standard
    output); returns the number of rows and how many of them are errors."""
    out = out or sys.stdout
    n, bad, writer = 0, 0, None
    for row in rows:
        bad += row.get("error") is not None
        if fmt == "jsonl":
            out.write(json.dumps(row) + "\n")
        else:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        n += 1
        out.flush()
    return n, bad
