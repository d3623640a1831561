"""Moderation decisions: five class probabilities -> allow / review / block, at a stated operating point.

A :class:`Policy` (``nsfw_lab/policy.toml`` by default, or any file like it) puts each class in one group.
The score of an image is ``P(block group)``, the sum of its (temperature-scaled) block-class
probabilities. Two thresholds are chosen on **val** (:func:`choose_thresholds`):

- ``t_block``: the highest threshold that blocks at least ``target_recall`` of val's block-group images;
- ``t_review`` <= ``t_block``: the highest one that blocks *or reviews* at least ``review_recall`` of them.

:func:`decide`: ``block`` when the score reaches ``t_block``; ``review`` inside the abstain band
``[t_review, t_block)``; below it, the group of the most probable class (a block class there goes to
``review``: the model is unsure). :func:`operating_point` states what that costs on **test**, with CIs.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.fsutil import atomic_write_json

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")
FITTED = "policy.json"
DECISIONS = ("allow", "review", "block")


@dataclass(frozen=True)
class Policy:
    """Which classes each decision covers, and the recall targets for the block group."""

    block: tuple[str, ...] = ("porn", "hentai")
    review: tuple[str, ...] = ("sexy",)
    allow: tuple[str, ...] = ("neutral", "drawings")
    target_recall: float = 0.95
    review_recall: float = 0.99

    def check(self, classes: list[str], source: str = "policy") -> None:
        """Raise a one-line error unless every class is in exactly one group and the targets are in (0, 1]."""
        named = [*self.block, *self.review, *self.allow]
        unknown = sorted(set(named) - set(classes))
        missing = sorted(set(classes) - set(named))
        twice = sorted({c for c in named if named.count(c) > 1})
        for bad, what in ((unknown, "unknown classes"), (missing, "classes in no group"), (twice, "in two groups")):
            if bad:
                raise NsfwLabError(f"{source}: {what}: {', '.join(bad)} (classes: {', '.join(classes)})")
        if not self.block:
            raise NsfwLabError(f"{source}: the block group is empty")
        if not 0 < self.target_recall <= self.review_recall <= 1:
            raise NsfwLabError(
                f"{source}: need 0 < target_recall <= review_recall <= 1 "
                f"(got {self.target_recall}, {self.review_recall})"
            )

    def group(self, cls: str) -> str:
        """The decision a class maps to on its own."""
        return "block" if cls in self.block else "review" if cls in self.review else "allow"


def load_policy(path: Path | str | None = None) -> Policy:
    """Read a policy TOML file (default: the packaged ``policy.toml``); one-line errors for bad files."""
    path = Path(path) if path else DEFAULT_POLICY
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise NsfwLabError(f"{path}: cannot read the policy ({exc})") from None
    fields = set(Policy.__dataclass_fields__)
    if set(raw) - fields:
        raise NsfwLabError(
            f"{path}: unknown keys {', '.join(sorted(set(raw) - fields))} (allowed: {', '.join(sorted(fields))})"
        )
    for k, v in raw.items():
        is_group = k in ("block", "review", "allow")
        ok = (isinstance(v, list) and all(isinstance(c, str) for c in v)) if is_group else isinstance(v, int | float)
        if not ok or isinstance(v, bool):
            want = "a list of class names" if is_group else "a number"
            raise NsfwLabError(f"{path}: {k} must be {want}, not {v!r}")
    return Policy(**{k: tuple(v) if isinstance(v, list) else float(v) for k, v in raw.items()})


def block_score(probs: np.ndarray, classes: list[str], policy: Policy) -> np.ndarray:
    """``P(block group)`` per image: the sum of the block classes' probabilities."""
    return probs[:, [classes.index(c) for c in policy.block]].sum(1)


def threshold_for_recall(positive_scores: np.ndarray, recall: float) -> float:
    """The highest ``t`` with ``mean(positive_scores >= t) >= recall`` (by construction, ties included)."""
    s = np.sort(np.asarray(positive_scores, float))[::-1]
    if not len(s):
        raise NsfwLabError("no block-group images in the split: thresholds cannot be chosen")
    k = max(1, math.ceil(recall * len(s) - 1e-9))
    return float(s[k - 1])


def choose_thresholds(probs: np.ndarray, y: np.ndarray, classes: list[str], policy: Policy) -> dict[str, float]:
    """``t_block`` and ``t_review`` from labelled (val) probabilities; see the module docstring."""
    policy.check(classes)
    pos = np.isin(np.asarray(y, int), [classes.index(c) for c in policy.block])
    s = block_score(probs, classes, policy)[pos]
    t_block = threshold_for_recall(s, policy.target_recall)
    return {"t_block": t_block, "t_review": min(t_block, threshold_for_recall(s, policy.review_recall))}


def decide(probs: np.ndarray, classes: list[str], policy: Policy, thresholds: dict[str, float]) -> np.ndarray:
    """One decision per row of ``probs`` (``allow``, ``review`` or ``block``)."""
    s = block_score(probs, classes, policy)
    fallback = np.array([policy.group(classes[k]) for k in probs.argmax(1)] if len(probs) else [], dtype=object)
    fallback[fallback == "block"] = "review"
    out = np.where(s >= thresholds["t_block"], "block", np.where(s >= thresholds["t_review"], "review", fallback))
    return out.astype(object)


def _rates(dec: np.ndarray, pos: np.ndarray) -> dict[str, float]:
    blocked = dec == "block"
    div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    return {
        "block_recall": div((blocked & pos).sum(), pos.sum()),
        "block_precision": div((blocked & pos).sum(), blocked.sum()),
        "false_positive_rate": div((blocked & ~pos).sum(), (~pos).sum()),
        "review_rate": div((dec == "review").sum(), len(dec)),
        "missed_rate": div(((dec == "allow") & pos).sum(), pos.sum()),
    }


def operating_point(
    decisions: np.ndarray, y: np.ndarray, classes: list[str], policy: Policy, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Block recall and precision, false-positive rate (non-block images blocked), review rate and missed rate
    (block-group images allowed), each with a percentile-bootstrap 95% CI over images; and the decision counts
    per true class. ``missed_rate`` counts what neither blocks nor reaches a reviewer."""
    y = np.asarray(y, int)
    pos = np.isin(y, [classes.index(c) for c in policy.block])
    point = _rates(decisions, pos)
    rng = np.random.default_rng(seed)
    boots = [_rates(decisions[i], pos[i]) for i in rng.integers(0, len(y), (n_boot, len(y)))] if len(y) else []
    out: dict[str, Any] = {"n": len(y)}
    for k, v in point.items():
        vals = np.array([b[k] for b in boots], float)
        vals = vals[np.isfinite(vals)]
        ci = np.quantile(vals, [0.025, 0.975]).tolist() if len(vals) else [None, None]
        out[k] = None if math.isnan(v) else v
        out[f"{k}_ci95"] = ci
    out["by_class"] = {
        c: {d: int(((y == k) & (decisions == d)).sum()) for d in DECISIONS} for k, c in enumerate(classes)
    }
    return out


def fit_policy(
    run_dir: Path | str,
    classes: list[str],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    policy: Policy,
    temperature: float = 1.0,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Choose the thresholds on ``val`` = (probabilities, labels), state the operating point on ``val`` and
    ``test``, and write ``RUN_DIR/policy.json`` (read by ``nsfw-lab predict``)."""
    t = choose_thresholds(val[0], val[1], classes, policy)
    result = {
        "policy": asdict(policy),
        "thresholds": t,
        "temperature": temperature,
        "chosen_on": "val",
        **{
            name: operating_point(decide(p, classes, policy, t), y, classes, policy, n_boot)
            for name, (p, y) in (("val", val), ("test", test))
        },
    }
    atomic_write_json(Path(run_dir) / FITTED, result)
    return result


def load_fitted(run_dir: Path | str) -> tuple[Policy, dict[str, float]] | None:
    """The policy and thresholds ``nsfw-lab calibrate`` fitted for a run, or None."""
    fitted = load_fitted_with_temperature(run_dir)
    return fitted[:2] if fitted else None


def load_fitted_with_temperature(run_dir: Path | str) -> tuple[Policy, dict[str, float], float] | None:
    """:func:`load_fitted` plus the temperature the thresholds were chosen at (one read of ``policy.json``)."""
    path = Path(run_dir) / FITTED
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        p = Policy(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["policy"].items()})
        return p, {k: float(v) for k, v in d["thresholds"].items()}, float(d.get("temperature", 1.0))
    except (ValueError, KeyError, TypeError) as exc:
        raise NsfwLabError(f"{path}: unreadable ({exc}); rerun `nsfw-lab calibrate --run {run_dir}`") from None


def calibrate_and_fit(
    run_dir: Path | str, policy: Policy | None = None, device: str = "auto", progress: bool = True, n_boot: int = 1000
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``nsfw-lab calibrate``: fit the temperature on val, then the policy's thresholds on the *calibrated* val
    probabilities; writes ``calibration.json`` and ``policy.json`` into the run; returns both results."""
    from nsfw_lab.calibration import calibrate_run, probabilities

    cal, data = calibrate_run(run_dir, device, progress)
    classes = json.loads((Path(run_dir) / "config.json").read_text())["classes"]
    t = cal["temperature"]
    val, test = ((probabilities(lg, t), y) for lg, y in (data["val"], data["test"]))
    return cal, fit_policy(run_dir, classes, val, test, policy or load_policy(), t, n_boot)
