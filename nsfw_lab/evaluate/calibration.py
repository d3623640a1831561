"""``nsfw-lab calibrate``: are the probabilities honest? ECE, reliability diagram, temperature scaling.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar ``T`` fitted by minimising the
negative log-likelihood on the **val** split; it never changes a prediction, only how sure it claims to be.
The fitted ``T`` is stored with the run (its ``calibration`` file) and applied by ``nsfw-lab predict``;
ECE and NLL are reported on **test** before and after, so the fit is judged on images it never saw.
:func:`calibrate_run` is the whole command: it loads the run once, takes val and test logits from
evaluate's one inference pass (:func:`nsfw_lab.evaluate.scoring.split_outputs`), fits ``T``, then the
moderation policy's thresholds on the *calibrated* val probabilities (:mod:`nsfw_lab.evaluate.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.policy import Policy, fit_policy, load_policy
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import atomic_write_json, read_json

ECE_BINS = 15
T_RANGE = (0.05, 20.0)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature``."""
    return softmax(np.asarray(logits, float) / temperature, axis=1)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under ``softmax(logits / temperature)``."""
    if not len(y):
        return 0.0
    lp = log_softmax(np.asarray(logits, float) / temperature, axis=1)
    return float(-lp[np.arange(len(y)), np.asarray(y, int)].mean())


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Equal-width confidence bins of the top-1 probability: mean confidence, accuracy and count per bin
    (``None`` for empty bins) and the bin edges, for a reliability diagram."""
    conf, correct = probs.max(1), probs.argmax(1) == np.asarray(y, int)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out: dict[str, list] = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        m = which == b
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else None)
        out["accuracy"].append(float(correct[m].mean()) if m.any() else None)
    return out


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over equal-width bins."""
    r, n = reliability(probs, y, bins), len(y)
    if not n:
        return 0.0
    return float(
        sum(c / n * abs(a - f) for c, a, f in zip(r["count"], r["accuracy"], r["confidence"], strict=True) if c)
    )


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in ``T_RANGE`` minimising NLL of ``softmax(logits / T)`` (a bounded 1-D search over log T)."""
    if not len(y):
        raise NsfwLabError("temperature scaling needs labelled images; the val split is empty")
    res = minimize_scalar(
        lambda t: nll(logits, y, float(np.exp(t))),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(res.x))


def summary(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict[str, Any]:
    """NLL and ECE before (T = 1) and after scaling, with the reliability bins of both."""
    before, after = probabilities(logits), probabilities(logits, temperature)
    return {
        "n": len(y),
        "nll_before": nll(logits, y),
        "nll_after": nll(logits, y, temperature),
        "ece_before": ece(before, y),
        "ece_after": ece(after, y),
        "reliability_before": reliability(before, y),
        "reliability_after": reliability(after, y),
    }


@dataclass(frozen=True)
class Calibrated:
    """What ``nsfw-lab calibrate`` wrote: the ``calibration`` and ``policy`` files' content, and whether it removed
    a clip rule fitted at the previous thresholds."""

    calibration: dict[str, Any]
    policy: dict[str, Any]
    removed_clip_policy: bool = False


def calibrate_run(
    run_dir: Path | str,
    policy: Policy | None = None,
    device: str = "auto",
    progress: bool = True,
    n_boot: int = 1000,
) -> Calibrated:
    """``nsfw-lab calibrate``: fit ``T`` on val and report test (the run's ``calibration`` file), then choose the
    policy's thresholds on the calibrated val probabilities and state them on test (its ``policy`` file). A clip
    rule fitted at the previous thresholds is removed (``calibrate --clips``: :mod:`nsfw_lab.evaluate.clip_fit`)."""
    from nsfw_lab.evaluate.loading import load_run  # torch: only the command needs it, not the arithmetic
    from nsfw_lab.evaluate.scoring import split_outputs

    run = load_run(run_dir, device=device)
    val, test = (split_outputs(run, s, progress=progress, logits=True) for s in ("val", "test"))
    t = fit_temperature(val.outputs, val.labels)
    at_bound = not T_RANGE[0] * 1.01 < t < T_RANGE[1] * 0.99  # the search hit a wall: degenerate logits
    calibration = {
        "temperature": t,
        "temperature_at_bound": at_bound,
        "fitted_on": "val",
        "bins": ECE_BINS,
        "checkpoint": run.checkpoint,
        "val": summary(val.outputs, val.labels, t),
        "test": summary(test.outputs, test.labels, t),
    }
    atomic_write_json(run.files.calibration, calibration)
    val_p, test_p = ((probabilities(s.outputs, t), s.labels) for s in (val, test))
    policy = policy or load_policy()
    fitted = fit_policy(run.run_dir, run.classes, val_p, test_p, policy, t, n_boot)
    stale = run.files.clip_policy.is_file()  # fitted at the old thresholds: no longer valid
    if stale:
        run.files.clip_policy.unlink()
    return Calibrated(calibration, fitted, stale)


def load_calibration(run_dir: Path | str) -> dict[str, Any] | None:
    """The run's ``calibration`` file with its temperature checked, or None when it has not been calibrated."""
    path = RunDir(run_dir).calibration
    try:
        cal = read_json(path)
    except NsfwLabError as exc:
        raise NsfwLabError(f"{exc}; rerun `nsfw-lab calibrate --run {run_dir}`") from None
    if cal is None:
        return None
    try:
        t = cal["temperature"] = float(cal["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise NsfwLabError(f"{path}: unreadable ({exc}); rerun `nsfw-lab calibrate --run {run_dir}`") from None
    if not T_RANGE[0] <= t <= T_RANGE[1]:
        raise NsfwLabError(f"{path}: temperature {t} outside {T_RANGE}; rerun `nsfw-lab calibrate`")
    return cal
