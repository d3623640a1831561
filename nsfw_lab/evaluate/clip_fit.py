"""Fitting the clip rule of :mod:`nsfw_lab.evaluate.clips` (``nsfw-lab calibrate --clips DIR``): every val and
test clip through ``predict``'s inference path, k chosen on the val clips for the policy's ``clip_fpr``, stated
on the test clips next to k = 1, written to the run's ``clip_policy`` file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.clips import ANY_FRAME, MAX_FRAMES, clip_decision
from nsfw_lab.evaluate.policy import Policy, Thresholds, operating_point
from nsfw_lab.evaluate.predict import DecisionRule, iter_predictions
from nsfw_lab.utils.fsutil import atomic_write_json

if TYPE_CHECKING:
    from nsfw_lab.evaluate.loading import LoadedRun


def score_clips(
    run: LoadedRun, root: Path, split: str, temperature: float, policy: Policy, thresholds: Thresholds,
    max_frames: int = MAX_FRAMES, progress: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every clip of ``root/<split>/<class>/``: its class, frame block scores and frame decisions, from the one
    inference path ``nsfw-lab predict`` takes (its frame rows)."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise NsfwLabError(f"{folder}: no {split} clips (expected {root}/{split}/<class>/<clip>)")
    items = [(c, p) for c in run.classes if (folder / c).is_dir() for p in sorted((folder / c).iterdir())]
    if unknown := sorted({d.name for d in folder.iterdir() if d.is_dir()} - set(run.classes)):
        raise NsfwLabError(f"{folder}: class folders {', '.join(unknown)} are not the run's {run.classes}")
    rule = DecisionRule(temperature, policy, thresholds, "", ANY_FRAME)
    frames: dict[str, list[dict[str, Any]]] = {}
    for r in iter_predictions(run, [p for _, p in items], 64, progress, rule, clips=True, max_frames=max_frames):
        if r["frame"] != "clip":
            frames.setdefault(r["path"], []).append(r)
    out = []
    for cls, path in items:
        rows = frames[str(path)]
        if rows[0]["error"]:  # no decodable frame: counted, named, and left out of the rates
            out.append({"clip": str(path), "class": cls, "error": rows[0]["error"]})
        else:
            out.append({"clip": str(path), "class": cls, "scores": [r["block_score"] for r in rows],
                        "decisions": [r["decision"] for r in rows]})  # fmt: skip
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


def calibrate_clips(
    run_dir: Path | str, clips: Path | str, device: str = "auto", max_frames: int = MAX_FRAMES, n_boot: int = 1000,
    progress: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """``calibrate --clips``' last step: the clip rule of a calibrated run, at its stored temperature and thresholds."""
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.evaluate.policy import load_fitted

    check_clip_folder(clips, max_frames)
    fitted = load_fitted(run_dir)
    if fitted is None:
        raise NsfwLabError(f"{run_dir}: not calibrated; run `nsfw-lab calibrate --run {run_dir}` first")
    run = load_run(run_dir, device=device)
    return fit_clip_policy(run, clips, fitted.temperature, fitted.policy, fitted.thresholds, max_frames, n_boot,
                           progress)  # fmt: skip
