"""Many frames, one decision: clips (animated GIF / WebP / APNG, or a folder of frames) judged as a whole.

A clip's frames are sampled with a cap (:func:`nsfw_lab.data.imageio.sample_indices`), each gets the image
policy's decision, and the clip is **blocked when at least k of them are blocked** (``review`` when at least k
are blocked or reviewed, else ``allow``); ``k`` is capped by the clip's frame count. Judging frames one by one
(k = 1) inherits the per-image false-positive rate *per frame*: with rate p and n frames an allowed clip is
blocked with probability about ``1 - (1 - p)^n``. So ``k`` is chosen on **validation clips** (``nsfw-lab
calibrate --clips DIR``, :mod:`nsfw_lab.evaluate.clip_fit`): the smallest k whose clip-level false-positive
rate is at most the policy's ``clip_fpr``, stated on test clips next to k = 1; the run's ``clip_policy`` file
holds it and ``nsfw-lab predict`` applies it.

A clip folder is ``DIR/<split>/<class>/<clip>`` where each clip is an animated file or a folder of frame images
(``nsfw_lab.data.synth.clips`` writes one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
from nsfw_lab.evaluate.policy import Thresholds
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import read_json

if TYPE_CHECKING:
    pass

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
