"""Notebook 07's tables: every offered model's calibration and its moderation operating points, from what
``nsfw-lab calibrate`` (:func:`nsfw_lab.evaluate.calibration.calibrate_run`) returned for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from nsfw_lab.evaluate.calibration import Calibrated

CALIBRATION_KEYS = ("n", "ece_before", "ece_after", "nll_before", "nll_after")
RATES = ("block_recall", "block_precision", "false_positive_rate", "review_rate", "missed_rate")


def calibration_table(fitted: dict[str, Calibrated]) -> pd.DataFrame:
    """Per model: the temperature (and whether it sits at the search bound), test ECE and NLL before and after."""
    import pandas as pd

    rows = {
        name: {"temperature": f.calibration["temperature"], "at_bound": f.calibration["temperature_at_bound"],
               **{k: f.calibration["test"][k] for k in CALIBRATION_KEYS}}
        for name, f in fitted.items()
    }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def operating_points(fitted: dict[str, Calibrated]) -> pd.DataFrame:
    """Per model and split (val, where the thresholds were chosen, and test): the thresholds, block recall and
    precision, false-positive, review and missed rates, and block recall's 95% CI."""
    import pandas as pd

    rows = [
        {
            "model": name,
            "split": split,
            **f.policy["thresholds"],
            **{k: f.policy[split][k] for k in RATES},
            "block recall 95% CI": [round(v, 3) for v in f.policy[split]["block_recall_ci95"] if v is not None],
        }
        for name, f in fitted.items()
        for split in ("val", "test")
    ]
    return pd.DataFrame(rows).set_index(["model", "split"])


def policy_record(fitted: dict[str, Calibrated]) -> dict[str, Any]:
    """What notebook 07 records of each model's policy: thresholds and the val and test operating points."""
    return {name: {k: f.policy[k] for k in ("thresholds", "val", "test")} for name, f in fitted.items()}
