"""``nsfw-lab predict``: class probabilities for image files and folders, batched and fault-tolerant.

A file that cannot be read gets a row with its error and empty probabilities; the rest of the batch
goes on. Folders are searched recursively for image files. An animated GIF, WebP or APNG (and with ``--clips``,
each folder given, as a clip of frame images) gets a row per sampled frame and one clip decision
(:mod:`nsfw_lab.evaluate.clips`).

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

from nsfw_lab.data.imageio import IMAGE_SUFFIXES, ImageLoadError
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.calibration import load_calibration
from nsfw_lab.evaluate.clips import (
    ANY_FRAME,
    MAX_FRAMES,
    ClipRule,
    clip_decision,
    clip_frames,
    clip_score,
    load_clip_rule,
)
from nsfw_lab.evaluate.loading import LoadedRun, load_run
from nsfw_lab.evaluate.policy import UNFITTED, Policy, Thresholds, block_score, decide, load_fitted, load_policy
from nsfw_lab.utils.progress import tqdm

if TYPE_CHECKING:
    from nsfw_lab.evaluate.export import ExportedRun


def expand_paths(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Files as given; folders as their image files (by suffix), recursively, in sorted order. A folder
    without image files is yielded itself (it becomes an error row, never a silent nothing)."""
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            yield from files or [p]
        else:
            yield p  # missing files become error rows


OPERATING_POINTS = ("val", "risk")


@dataclass(frozen=True)
class DecisionRule:
    """What ``predict`` applies to a run's logits: a temperature, then a policy at its thresholds."""

    temperature: float
    policy: Policy
    thresholds: Thresholds
    note: str  # where each part comes from, in one line
    clip: ClipRule = ANY_FRAME  # animated inputs and --clips folders


def decision_rule(run: LoadedRun | ExportedRun, operating_point: str = "val") -> DecisionRule:
    """Temperature, policy and thresholds ``predict`` applies for ``run``, and a line saying where from. A
    calibration fitted for the other checkpoint is not applied (its logits differ); a policy fitted at another
    temperature than the stored one is an error. ``operating_point="risk"``: the risk-controlled policy's
    thresholds (its certified review threshold) instead of the val-chosen ones."""
    if operating_point not in OPERATING_POINTS:
        raise NsfwLabError(f"--operating-point must be {' or '.join(OPERATING_POINTS)}, not {operating_point!r}")
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
    risk = operating_point == "risk"
    if risk and not (fitted and fitted.risk_thresholds):
        raise NsfwLabError(
            f"{files.path}: no risk-controlled policy fitted; run `nsfw-lab calibrate --run {files.path}`"
        )
    if risk:
        thresholds = fitted.risk_thresholds  # type: ignore[union-attr]
    what = "risk-controlled policy (review threshold certified on val)" if risk else "policy fitted on val"
    if fitted:
        note += f"; {what} (block >= {thresholds.t_block:.3f}, review >= {thresholds.t_review:.3f})"
    else:
        note += "; no fitted policy: block when P(block group) >= 0.5 (run `nsfw-lab calibrate`)"
    if risk:  # the clip rule is fitted at the val policy's thresholds
        clip = ClipRule(1, MAX_FRAMES, "clips: any blocked frame blocks (the clip rule is fitted for the val policy)")
    else:
        clip = load_clip_rule(files.path, thresholds, t or 1.0) if fitted else ANY_FRAME
    return DecisionRule(t or 1.0, policy, thresholds, f"{note}; {clip.note}", clip)


@torch.inference_mode()
def iter_predictions(
    run: LoadedRun | ExportedRun,
    paths: Iterable[Path | str],
    batch_size: int = 32,
    progress: bool = False,
    rule: DecisionRule | None = None,
    clips: bool = False,
    max_frames: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per input: ``path``, ``frame``, ``prediction``, ``prob_<class>`` for each class, ``block_score``,
    ``decision``, ``error``. ``run`` is a loaded checkpoint or an export
    (:func:`nsfw_lab.evaluate.export.load_exported_run`: ONNX Runtime or TorchScript); both take the same uint8
    batches.

    An animated file (and with ``clips``, each folder given: its images are the frames) gives one row per sampled
    frame (``frame`` = its index) and then its clip row (``frame`` = ``clip``): the frames' mean probabilities,
    ``block_score`` the k-th largest frame score and the decision of :mod:`nsfw_lab.evaluate.clips`; at most
    ``max_frames`` frames are sampled (default: the cap the run's clip rule was chosen with, else 16)."""
    rule = rule or decision_rule(run)
    max_frames = rule.clip.max_frames if max_frames is None else max_frames
    if max_frames < 1:
        raise NsfwLabError(f"--max-frames must be >= 1, not {max_frames}")
    tf = eval_transform(run.image_size, normalize=False)
    bar = tqdm(desc="predict", unit="input", disable=not progress, file=sys.stderr)
    pending: list[tuple[dict[str, Any], torch.Tensor | None]] = []
    for p in _inputs(paths, clips):
        bar.update(1)
        if p.is_dir() and not clips:
            pending.append((_empty_row(run, p, "no_images: no image files"), None))
            continue
        try:
            frames, index, n = clip_frames(p, max_frames)
        except ImageLoadError as exc:
            pending.append((_empty_row(run, p, f"{exc.reason}: {exc}"), None))
            continue
        if n == 1 and not p.is_dir():
            pending.append((_empty_row(run, p), tf(pil_to_tensor(frames[0]))))
            if len(pending) >= batch_size:
                yield from _scored(run, rule, pending)
                pending = []
            continue
        yield from _scored(run, rule, pending)
        pending = []
        rows = list(
            _scored(
                run,
                rule,
                [(_empty_row(run, p, frame=i), tf(pil_to_tensor(f))) for f, i in zip(frames, index, strict=True)],
            )
        )
        yield from rows
        yield _clip_row(run, p, rows, rule.clip.k)
    yield from _scored(run, rule, pending)
    bar.close()


def _inputs(paths: Iterable[Path | str], clips: bool) -> Iterator[Path]:
    """Files and folders' image files (:func:`expand_paths`); with ``clips`` each folder given is one input."""
    if not clips:
        yield from expand_paths(paths)
        return
    yield from map(Path, paths)


def _empty_row(run: LoadedRun | ExportedRun, path: Path, error: str | None = None, frame: int | str | None = None
               ) -> dict[str, Any]:  # fmt: skip
    probs = {f"prob_{c}": None for c in run.classes}
    return {"path": str(path), "frame": frame, "prediction": None, **probs, "block_score": None, "decision": None,
            "error": error}  # fmt: skip


def _scored(
    run: LoadedRun | ExportedRun, rule: DecisionRule, items: list[tuple[dict[str, Any], torch.Tensor | None]]
) -> Iterator[dict[str, Any]]:
    """The rows of ``items``, those with an input filled in from one batched forward pass."""
    ok = [(row, x) for row, x in items if x is not None]
    if ok:
        logits = run.model(torch.stack([x for _, x in ok]).to(run.device)).float()
        probs = (logits / rule.temperature).softmax(1).cpu().numpy()
        scores = block_score(probs, run.classes, rule.policy)
        decisions = decide(probs, run.classes, rule.policy, rule.thresholds)
        for (row, _), pr, sc, d in zip(ok, probs, scores, decisions, strict=True):
            row["prediction"] = run.classes[int(pr.argmax())]
            row.update({f"prob_{c}": round(float(v), 6) for c, v in zip(run.classes, pr, strict=True)})
            row.update(block_score=round(float(sc), 6), decision=str(d))
    for row, _ in items:
        yield row


def _clip_row(run: LoadedRun | ExportedRun, path: Path, frames: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The clip's row from its frame rows: mean probabilities, the k-th largest block score, the k-of-n decision."""
    row = _empty_row(run, path, frame="clip")
    mean = {c: sum(f[f"prob_{c}"] for f in frames) / len(frames) for c in run.classes}
    row["prediction"] = max(mean, key=mean.get)
    row.update({f"prob_{c}": round(v, 6) for c, v in mean.items()})
    row["block_score"] = round(clip_score([f["block_score"] for f in frames], k), 6)
    row["decision"] = clip_decision([f["decision"] for f in frames], k)
    return row


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
