"""Many frames, one decision: clips (animated GIF / WebP / APNG, or a folder of frames) judged as a whole.

A clip's frames are sampled with a cap (:func:`nsfw_lab.data.imageio.sample_indices`), each gets the image
policy's decision, and the clip is **blocked when at least k of them are blocked** (``review`` when at least k
are blocked or reviewed, else ``allow``); ``k`` is capped by the clip's frame count. Judging frames one by one
(k = 1) inherits the per-image false-positive rate *per frame*: with rate p and n frames an allowed clip is
blocked with probability about ``1 - (1 - p)^n``. So ``k`` is chosen on **validation clips** (``nsfw-lab
calibrate --clips DIR``): the smallest k whose clip-level false-positive rate is at most the policy's
``clip_fpr``, stated on test clips next to k = 1; the run's ``clip_policy`` file holds it and ``nsfw-lab
predict`` applies it.

A clip folder is ``DIR/<split>/<class>/<clip>`` where each clip is an animated file or a folder of frame images
(``nsfw_lab.data.synth.clips`` writes one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from nsfw_lab.data.imageio import (
    IMAGE_SUFFIXES,
    ImageLoadError,
    NotAnImage,
    TruncatedImage,
    load_frames,
    load_image,
    sample_indices,
)
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.policy import Policy, Thresholds, block_score, decide, operating_point
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import atomic_write_json, read_json
from nsfw_lab.utils.progress import tqdm

if TYPE_CHECKING:
    from nsfw_lab.evaluate.loading import LoadedRun

MAX_FRAMES = 16  # frames sampled per clip


def clip_frames(path: Path, max_frames: int = MAX_FRAMES) -> tuple[list[Image.Image], list[int], int]:
    """``(frames, their indices, frame count)`` of an animated file, or of a folder's image files in name order
    (unreadable frame files skipped); a clip with no decodable frame raises an :class:`ImageLoadError`."""
    path = Path(path)
    if not path.is_dir():
        return load_frames(path, max_frames)
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise NotAnImage(path, "a folder without frame images")
    frames, kept = [], []
    for k in sample_indices(len(files), max_frames):
        try:
            frames.append(load_image(files[k]))
            kept.append(k)
        except ImageLoadError:
            continue
    if not frames:
        raise TruncatedImage(path, f"none of its {len(files)} frame files decodes")
    return frames, kept, len(files)


def clip_decision(decisions: Sequence[str], k: int) -> str:
    """``block`` when at least ``k`` frames (capped by their number) are blocked, ``review`` when at least ``k``
    are blocked or reviewed, else ``allow``."""
    need = max(1, min(k, len(decisions)))
    blocked = sum(d == "block" for d in decisions)
    if blocked >= need:
        return "block"
    return "review" if blocked + sum(d == "review" for d in decisions) >= need else "allow"


def clip_score(scores: Sequence[float], k: int) -> float:
    """The clip's ``k``-th largest frame block score (capped by the frame count): at or above ``t_block``
    exactly when ``k`` frames are."""
    s = sorted(scores, reverse=True)
    return float(s[max(1, min(k, len(s))) - 1])


@dataclass(frozen=True)
class ClipRule:
    """What ``predict`` applies to a clip: block at ``k`` blocked frames of up to ``max_frames`` sampled."""

    k: int
    max_frames: int
    note: str


ANY_FRAME = ClipRule(1, MAX_FRAMES, "clips: any blocked frame blocks")


def load_clip_rule(run_dir: Path | str, thresholds: Thresholds, temperature: float) -> ClipRule:
    """The run's fitted ``clip_policy`` (``k`` and the frame cap it was chosen with), or k = 1 (any blocked frame
    blocks) with a note saying so; a one-line error when it was fitted at other thresholds or temperature than
    the run's policy now has (``calibrate`` ran again without ``--clips``)."""
    path = RunDir(run_dir).clip_policy
    d = read_json(path)
    if d is None:
        return ClipRule(1, MAX_FRAMES, f"clips: no {path.name}, any blocked frame blocks (`calibrate --clips DIR`)")
    again = f"rerun `nsfw-lab calibrate --run {run_dir} --clips DIR`"
    try:
        k, cap, fpr = int(d["k"]), int(d["max_frames"]), float(d["clip_fpr"])
        fitted_at = Thresholds(**d["thresholds"]), float(d["temperature"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NsfwLabError(f"{path}: unreadable ({exc}); {again}") from None
    if k < 1 or cap < 1:
        raise NsfwLabError(f"{path}: k and max_frames must be >= 1 (got {k}, {cap}); {again}")
    if fitted_at[0] != thresholds or abs(fitted_at[1] - temperature) > 1e-9:
        raise NsfwLabError(f"{path}: fitted at other thresholds than the run's policy now has; {again}")
    per = d.get("frames_per_clip")
    return ClipRule(k, cap, f"clips: blocked at {k} blocked frames of up to {cap}, chosen on val clips of "
                    f"{per:g} frames for clip FPR <= {fpr:g} (clips of other lengths get another rate)")  # fmt: skip


def score_clips(
    run: LoadedRun, root: Path, split: str, temperature: float, policy: Policy, thresholds: Thresholds,
    max_frames: int = MAX_FRAMES, progress: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every clip of ``root/<split>/<class>/``: its class, frame block scores and frame decisions."""
    import torch
    from torchvision.transforms.v2.functional import pil_to_tensor

    from nsfw_lab.data.transforms import eval_transform

    folder = Path(root) / split
    if not folder.is_dir():
        raise NsfwLabError(f"{folder}: no {split} clips (expected {root}/{split}/<class>/<clip>)")
    tf = eval_transform(run.image_size, normalize=False)
    items = [(c, p) for c in run.classes if (folder / c).is_dir() for p in sorted((folder / c).iterdir())]
    if unknown := sorted({d.name for d in folder.iterdir() if d.is_dir()} - set(run.classes)):
        raise NsfwLabError(f"{folder}: class folders {', '.join(unknown)} are not the run's {run.classes}")
    out = []
    for cls, path in tqdm(items, desc=f"{split} clips", disable=not progress, unit="clip"):
        try:
            frames, _, _ = clip_frames(path, max_frames)
        except ImageLoadError as exc:  # counted, named, and left out of the rates
            out.append({"clip": str(path), "class": cls, "error": f"{exc.reason}: {exc}"})
            continue
        with torch.inference_mode():
            x = torch.stack([tf(pil_to_tensor(f)) for f in frames]).to(run.device)
            probs = (run.model(x).float() / temperature).softmax(1).cpu().numpy()
        out.append({
            "clip": str(path), "class": cls,
            "scores": block_score(probs, run.classes, policy).tolist(),
            "decisions": decide(probs, run.classes, policy, thresholds).tolist(),
        })  # fmt: skip
    if not any("error" not in c for c in out):
        raise NsfwLabError(f"{folder}: no readable clips")
    return out


def clip_operating_point(
    clips: list[dict[str, Any]], k: int, classes: list[str], policy: Policy, n_boot: int = 1000
) -> dict[str, Any]:
    """:func:`nsfw_lab.evaluate.policy.operating_point` of the clips decided at ``k``, intervals over clips."""
    dec = np.array([clip_decision(c["decisions"], k) for c in clips], dtype=object)
    y = np.array([classes.index(c["class"]) for c in clips], int)
    return operating_point(dec, y, classes, policy, n_boot)


def choose_k(clips: list[dict[str, Any]], classes: list[str], policy: Policy, max_frames: int) -> tuple[int, bool]:
    """The smallest ``k`` whose clip false-positive rate on ``clips`` is at most ``policy.clip_fpr`` (the most
    recall that promise leaves), and whether any ``k`` meets it (else the most frames a clip has)."""
    allowed = [c for c in clips if c["class"] not in policy.block]
    max_frames = min(max_frames, max((len(c["decisions"]) for c in clips), default=1))  # k beyond that: no change
    for k in range(1, max_frames + 1):
        fp = sum(clip_decision(c["decisions"], k) == "block" for c in allowed)
        if fp <= policy.clip_fpr * len(allowed):
            return k, True
    return max_frames, False


def check_clip_folder(root: Path | str, max_frames: int) -> None:
    """One-line errors before anything is fitted: a ``--max-frames`` below 1, a folder without val and test."""
    if max_frames < 1:
        raise NsfwLabError(f"--max-frames must be >= 1, not {max_frames}")
    for split in ("val", "test"):
        if not (Path(root) / split).is_dir():
            raise NsfwLabError(f"{Path(root) / split}: no {split} clips (expected {root}/{split}/<class>/<clip>)")


def fit_clip_policy(
    run: LoadedRun, root: Path | str, temperature: float, policy: Policy, thresholds: Thresholds,
    max_frames: int = MAX_FRAMES, n_boot: int = 1000, progress: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Choose ``k`` on ``root``'s val clips, state it and k = 1 on its test clips, write the run's
    ``clip_policy`` file (with the thresholds and temperature it was fitted at); returns its content. Clips
    without a decodable frame are listed under ``unreadable`` and left out."""
    check_clip_folder(root, max_frames)
    every = {s: score_clips(run, Path(root), s, temperature, policy, thresholds, max_frames, progress)
             for s in ("val", "test")}  # fmt: skip
    scored = {s: [c for c in v if "error" not in c] for s, v in every.items()}
    k, met = choose_k(scored["val"], run.classes, policy, max_frames)
    point = lambda s, kk: clip_operating_point(scored[s], kk, run.classes, policy, n_boot)  # noqa: E731
    frames_fp = [d == "block" for c in scored["val"] if c["class"] not in policy.block for d in c["decisions"]]
    result = {
        "k": k,
        "max_frames": max_frames,
        "clip_fpr": policy.clip_fpr,
        "met_on_val": met,
        "chosen_on": "val",
        "thresholds": thresholds.to_dict(),
        "temperature": temperature,
        "clips": str(root),
        "unreadable": [{"clip": c["clip"], "error": c["error"]} for v in every.values() for c in v if "error" in c],
        "frames_per_clip": float(np.mean([len(c["decisions"]) for c in scored["val"]])),
        "frame_false_positive_rate_val": float(np.mean(frames_fp)) if frames_fp else None,
        "val": point("val", k),
        "test": point("test", k),
        "any_frame": {"val": point("val", 1), "test": point("test", 1)},
    }
    atomic_write_json(run.files.clip_policy, result)
    return result
