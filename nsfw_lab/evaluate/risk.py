"""Thresholds with a guarantee: the block group's miss rate at most ``alpha`` with probability ``1 - delta``.

The val-chosen thresholds of :mod:`nsfw_lab.evaluate.policy` hit their recall *on val*; on new images the
miss rate lands above the target about half the time. Here the review threshold is chosen by **Learn then
Test** (Angelopoulos, Bates, Candès, Jordan and Lei, 2021) with fixed-sequence testing: for each threshold
``t`` of a fixed grid, from 0 upwards, the null hypothesis "the miss rate at ``t`` exceeds ``alpha``" is
rejected when the binomial tail ``P(Binomial(n, alpha) <= misses(t))`` is at most ``delta``, where ``n`` is the
number of block-group images on val and ``misses(t)`` those a review threshold ``t`` would let through. The
miss rate only grows with ``t``, so testing in that order and stopping at the first hypothesis kept controls
the family-wise error at ``delta``: with probability at least ``1 - delta`` over the draw of val, the chosen
``t`` misses at most ``alpha`` of block-group images drawn like val's. ``t = 0`` (everything that is not
blocked goes to review) misses nothing and is the fallback when not even the first grid step is certified
(too few block-group images on val for that ``alpha`` and ``delta``).

A *miss* is what the policy's :func:`~nsfw_lab.evaluate.policy.decide` allows: a block-group image under the
review threshold whose most probable class is an ``allow`` class. The guarantee assumes val and the images
it is applied to are exchangeable (here: the same curated split procedure); a shift in the data voids it,
which is why test reports the achieved rate next to the bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import binom

GRID = np.linspace(0.0, 1.0, 1001)  # fixed before seeing val, as Learn then Test requires


def misses_at(scores: np.ndarray, allowed_below: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """For each ``t`` in ``grid``: how many positives (``scores``, P(block group)) a review threshold ``t``
    would allow, i.e. score below ``t`` and ``allowed_below`` (their fallback decision is ``allow``)."""
    s = np.asarray(scores, float)[np.asarray(allowed_below, bool)]
    return np.searchsorted(np.sort(s), grid, side="left")  # count of s < t


def clopper_pearson_upper(k: int, n: int, delta: float) -> float:
    """One-sided ``1 - delta`` upper confidence bound on a binomial rate with ``k`` events in ``n``."""
    return 1.0 if k >= n else float(beta_dist.ppf(1 - delta, k + 1, n - k))


@dataclass(frozen=True)
class RiskBound:
    """The certified review threshold and what it rests on."""

    t_review: float
    alpha: float
    delta: float
    n: int  # block-group images on val
    misses: int  # of them, allowed at t_review
    upper_bound: float  # Clopper-Pearson (1 - delta) upper bound on the miss rate at t_review, from val
    certified: bool  # False: not even the first grid step passed; t_review = 0 (review all that is not blocked)

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain types for JSON."""
        return asdict(self)


def certify_review_threshold(
    scores: np.ndarray, allowed_below: np.ndarray, alpha: float, delta: float, grid: np.ndarray = GRID
) -> RiskBound:
    """The highest grid threshold that Learn then Test certifies (see the module docstring)."""
    n = len(scores)
    if n == 0:
        return RiskBound(0.0, alpha, delta, 0, 0, 1.0, False)
    k = misses_at(scores, allowed_below, grid)
    p = binom.cdf(k, n, alpha)
    failed = np.flatnonzero(p[1:] > delta) + 1  # grid[0] = 0 misses nothing by construction: no test needed
    last = (failed[0] if len(failed) else len(grid)) - 1  # the last rejected null, in grid order
    if last == 0:
        return RiskBound(0.0, alpha, delta, n, 0, clopper_pearson_upper(0, n, delta), False)
    t = float(grid[last])
    return RiskBound(t, alpha, delta, n, int(k[last]), clopper_pearson_upper(int(k[last]), n, delta), True)
