"""The risk-controlled review threshold (Learn then Test), on score distributions whose true miss rates are
known: it keeps its promise at the stated confidence where the plain val-chosen threshold does not."""

from __future__ import annotations

import numpy as np
import pytest

from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.policy import Policy, Thresholds, decide, fit_policy, risk_controlled, threshold_for_recall
from nsfw_lab.evaluate.risk import GRID, certify_review_threshold, clopper_pearson_upper, misses_at

CLASSES = ["drawings", "hentai", "neutral", "porn", "sexy"]


def test_misses_count_scores_strictly_below_and_only_allowed_ones() -> None:
    s = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    allowed = np.array([True, True, False, True, True])
    assert misses_at(s, allowed, np.array([0.0, 0.1, 0.2, 0.21, 1.0])).tolist() == [0, 0, 1, 2, 4]
    assert clopper_pearson_upper(0, 100, 0.1) == pytest.approx(1 - 0.1 ** (1 / 100))
    assert clopper_pearson_upper(5, 5, 0.1) == 1.0


@pytest.mark.parametrize(("alpha", "delta", "n"), [(0.05, 0.1, 400), (0.02, 0.2, 1000)])
def test_the_miss_rate_stays_under_alpha_with_probability_one_minus_delta(alpha: float, delta: float, n: int) -> None:
    """Block-group scores ~ Beta(2, 1): the true miss rate of a review threshold t is F(t) = t**2 (every image
    under it is allowed). Over many draws of val, the certified t misses more than alpha at most delta of the
    time; the val-quantile threshold (what target recalls do) misses more about half the time."""
    rng = np.random.default_rng(0)
    trials = 400
    certified, naive = [], []
    for _ in range(trials):
        s = rng.beta(2, 1, n)
        b = certify_review_threshold(s, np.ones(n, bool), alpha, delta)
        assert b.certified and b.n == n and b.misses == int((s < b.t_review).sum())
        certified.append(b.t_review**2)
        naive.append(threshold_for_recall(s, 1 - alpha) ** 2)
    certified, naive = np.array(certified), np.array(naive)
    slack = 3 * np.sqrt(delta * (1 - delta) / trials)  # Monte Carlo error of the violation share
    assert (certified > alpha).mean() <= delta + slack
    assert (naive > alpha).mean() > 0.35  # no guarantee: it overshoots as often as not
    assert certified.mean() > 0.5 * alpha  # and the guarantee is not bought by reviewing everything


def test_too_few_block_images_fall_back_to_reviewing_all_that_is_not_blocked() -> None:
    # (1 - 0.02) ** 50 = 0.36 > delta: not even a threshold with zero misses on val can be certified
    b = certify_review_threshold(np.linspace(0.5, 1, 50), np.ones(50, bool), 0.02, 0.1)
    assert (b.t_review, b.certified, b.misses) == (0.0, False, 0)
    assert certify_review_threshold(np.array([]), np.array([], bool), 0.02, 0.1).certified is False
    assert GRID[0] == 0.0 and GRID[-1] == 1.0 and np.all(np.diff(GRID) > 0)


def _probs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    logits = rng.normal(0, 1.0, (n, 5))
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_the_policy_file_states_the_bound_its_cost_and_whether_it_held(tmp_path) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(risk_alpha=0.05, risk_delta=0.1)
    val, test = _probs(3000, 1), _probs(3000, 2)
    out = fit_policy(tmp_path, CLASSES, val, test, policy, n_boot=50)
    rc = out["risk_controlled"]
    bound = risk_controlled(*val, CLASSES, policy)
    assert rc["bound"] == bound.to_dict() and bound.certified
    assert rc["thresholds"] == Thresholds(out["thresholds"]["t_block"], min(out["thresholds"]["t_block"],
                                          bound.t_review)).to_dict()  # fmt: skip
    # the bound's misses are exactly what decide() allows on val at that threshold
    dec = decide(val[0], CLASSES, policy, Thresholds(**rc["thresholds"]))
    pos = np.isin(val[1], [1, 3])
    assert rc["val"]["missed_rate"] == pytest.approx(((dec == "allow") & pos).sum() / pos.sum())
    assert rc["val"]["missed_rate"] <= bound.upper_bound
    assert rc["held_on_test"] == (rc["test"]["missed_rate"] <= 0.05)
    # a looser promise than review_recall's 1% reviews less; a stricter one reviews more
    assert rc["test"]["review_rate"] < out["test"]["review_rate"]
    strict = fit_policy(tmp_path, CLASSES, val, test, Policy(risk_alpha=0.005, risk_delta=0.1), n_boot=50)
    assert strict["risk_controlled"]["bound"]["certified"]
    assert strict["risk_controlled"]["test"]["review_rate"] > out["test"]["review_rate"]
    assert strict["risk_controlled"]["val"]["missed_rate"] < out["val"]["missed_rate"]
    with pytest.raises(NsfwLabError, match="0 < risk_alpha < 1"):
        Policy(risk_alpha=0).check(CLASSES)
