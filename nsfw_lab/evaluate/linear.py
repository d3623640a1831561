"""A linear probe chosen on validation: standardised features, a multinomial logistic regression per ``C``.

The one fit behind the course's probes (:mod:`nsfw_lab.course.probe`) and the bench's cached-features lever
(:mod:`nsfw_lab.bench.levers`), so the bench times the fit the course makes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nsfw_lab.evaluate.metrics import macro_f1

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried; the probe keeps the best on validation


def choose_probe(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    grid: tuple[float, ...] = C_GRID,
    seed: int = 0,
) -> tuple[Any, float, float]:
    """Fit one pipeline (standardise, logistic regression) per ``C`` in ``grid`` on ``x, y``; return the one
    with the best validation macro-F1 (never test) as ``(pipeline, C, val_macro_f1)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not grid:
        raise ValueError("the C grid is empty")
    labels = list(range(n_classes))
    best: tuple[Any, float, float] | None = None
    for c in grid:
        pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        pipe.fit(x, y)
        score = macro_f1(y_val, pipe.predict(x_val), labels)
        if best is None or score > best[2]:
            best = (pipe, c, score)
    assert best is not None
    return best
