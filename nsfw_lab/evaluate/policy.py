"""The moderation policy: five class probabilities -> allow / review / block, at a stated operating point.

A :class:`Policy` (``nsfw_lab/evaluate/policy.toml`` by default, or any file like it) puts each class in one group.
The score of an image is ``P(block group)``, the sum of its (temperature-scaled) block-class
probabilities. Two thresholds are chosen on **val** (:func:`choose_thresholds`):

- ``t_block``: the highest threshold that blocks at least ``target_recall`` of val's block-group images;
- ``t_review`` <= ``t_block``: the highest one that blocks *or reviews* at least ``review_recall`` of them.

:func:`decide`: ``block`` when the score reaches ``t_block``; ``review`` inside the abstain band
``[t_review, t_block)``; below it, the group of the most probable class (a block class there goes to
``review``: the model is unsure). :func:`operating_point` states what that costs on **test**, with CIs.

Beside them, :func:`fit_policy` writes a **risk-controlled** review threshold (:mod:`nsfw_lab.evaluate.risk`):
the block group's miss rate at most ``risk_alpha`` with probability ``1 - risk_delta``, the review band
widened as far as that takes, and the miss rate it achieved on test next to its bound.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.metrics import bootstrap_indices, percentile_interval
from nsfw_lab.evaluate.risk import RiskBound, certify_review_threshold
from nsfw_lab.rundir import RunDir
from nsfw_lab.utils.fsutil import atomic_write_json, read_json

DEFAULT_POLICY = Path(__file__).with_name("policy.toml")
DECISIONS = ("allow", "review", "block")


@dataclass(frozen=True)
class Policy:
    """Which classes each decision covers, and the recall targets for the block group."""

    block: tuple[str, ...] = ("porn", "hentai")
    review: tuple[str, ...] = ("sexy",)
    allow: tuple[str, ...] = ("neutral", "drawings")
    target_recall: float = 0.95
    review_recall: float = 0.99
    risk_alpha: float = 0.02  # risk-controlled policy: block-group miss rate at most this ...
    risk_delta: float = 0.1  # ... with probability at least 1 - this (over the draw of val)
    clip_fpr: float = 0.02  # clips (animations, frame folders): allowed clips blocked at most this often on val

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
        if not (0 < self.risk_alpha < 1 and 0 < self.risk_delta < 1):
            raise NsfwLabError(f"{source}: need 0 < risk_alpha < 1 and 0 < risk_delta < 1 "
                               f"(got {self.risk_alpha}, {self.risk_delta})")  # fmt: skip
        if not 0 < self.clip_fpr < 1:
            raise NsfwLabError(f"{source}: need 0 < clip_fpr < 1 (got {self.clip_fpr})")

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


@dataclass(frozen=True)
class Thresholds:
    """Cuts on P(block group): ``block`` at or above ``t_block``, ``review`` in ``[t_review, t_block)``."""

    t_block: float
    t_review: float

    def to_dict(self) -> dict[str, float]:
        """The ``thresholds`` of the policy file."""
        return asdict(self)


UNFITTED = Thresholds(0.5, 0.5)  # what an uncalibrated run decides with


def choose_thresholds(probs: np.ndarray, y: np.ndarray, classes: list[str], policy: Policy) -> Thresholds:
    """``t_block`` and ``t_review`` from labelled (val) probabilities; see the module docstring."""
    policy.check(classes)
    pos = np.isin(np.asarray(y, int), [classes.index(c) for c in policy.block])
    s = block_score(probs, classes, policy)[pos]
    t_block = threshold_for_recall(s, policy.target_recall)
    return Thresholds(t_block, min(t_block, threshold_for_recall(s, policy.review_recall)))


def risk_controlled(probs: np.ndarray, y: np.ndarray, classes: list[str], policy: Policy) -> RiskBound:
    """The review threshold certified on labelled (val) probabilities (:mod:`nsfw_lab.evaluate.risk`): a
    block-group image is missed when its score is under it and its most probable class is an allow class."""
    policy.check(classes)
    pos = np.isin(np.asarray(y, int), [classes.index(c) for c in policy.block])
    allowed = np.array([policy.group(classes[k]) == "allow" for k in probs.argmax(1)], bool) if len(probs) else pos
    s = block_score(probs, classes, policy)
    return certify_review_threshold(s[pos], allowed[pos], policy.risk_alpha, policy.risk_delta)


def decide(probs: np.ndarray, classes: list[str], policy: Policy, thresholds: Thresholds) -> np.ndarray:
    """One decision per row of ``probs`` (``allow``, ``review`` or ``block``)."""
    s = block_score(probs, classes, policy)
    fallback = np.array([policy.group(classes[k]) for k in probs.argmax(1)] if len(probs) else [], dtype=object)
    fallback[fallback == "block"] = "review"
    out = np.where(s >= thresholds.t_block, "block", np.where(s >= thresholds.t_review, "review", fallback))
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
    boots = [_rates(decisions[i], pos[i]) for i in bootstrap_indices(len(y), n_boot, seed)] if len(y) else []
    out: dict[str, Any] = {"n": len(y)}
    for k, v in point.items():
        out[k] = None if math.isnan(v) else v
        out[f"{k}_ci95"] = percentile_interval([b[k] for b in boots])
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
    ``test``, and write the run's ``policy`` file (read by ``nsfw-lab predict``); returns its content."""
    t = choose_thresholds(val[0], val[1], classes, policy)
    splits = (("val", val), ("test", test))
    bound = risk_controlled(val[0], val[1], classes, policy)
    risk_t = Thresholds(t.t_block, min(t.t_block, bound.t_review))
    result = {
        "policy": asdict(policy),
        "thresholds": t.to_dict(),
        "temperature": temperature,
        "chosen_on": "val",
        **{name: operating_point(decide(p, classes, policy, t), y, classes, policy, n_boot) for name, (p, y) in splits},
        "risk_controlled": {
            "bound": bound.to_dict(),
            "thresholds": risk_t.to_dict(),
            **{
                name: operating_point(decide(p, classes, policy, risk_t), y, classes, policy, n_boot)
                for name, (p, y) in splits
            },
        },
    }
    missed = result["risk_controlled"]["test"]["missed_rate"]
    result["risk_controlled"]["held_on_test"] = None if missed is None else bool(missed <= policy.risk_alpha)
    atomic_write_json(RunDir(run_dir).policy, result)
    return result


@dataclass(frozen=True)
class FittedPolicy:
    """A run's fitted policy: the groups, the thresholds and the temperature they were chosen at."""

    policy: Policy
    thresholds: Thresholds
    temperature: float
    risk_thresholds: Thresholds | None = None  # the risk-controlled policy's (its certified review threshold)


def load_fitted(run_dir: Path | str) -> FittedPolicy | None:
    """The policy ``nsfw-lab calibrate`` fitted for a run (one read of its ``policy`` file), or None."""
    path = RunDir(run_dir).policy
    try:
        d = read_json(path)
        if d is None:
            return None
        p = Policy(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["policy"].items()})
        t = d["thresholds"]
        r = (d.get("risk_controlled") or {}).get("thresholds")
        risk = Thresholds(float(r["t_block"]), float(r["t_review"])) if r else None
        t_val = Thresholds(float(t["t_block"]), float(t["t_review"]))
        return FittedPolicy(p, t_val, float(d.get("temperature", 1.0)), risk)
    except (ValueError, KeyError, TypeError, NsfwLabError) as exc:
        raise NsfwLabError(f"{path}: unreadable ({exc}); rerun `nsfw-lab calibrate --run {run_dir}`") from None
