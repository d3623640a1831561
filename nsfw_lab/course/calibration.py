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


def risk_table(fitted: dict[str, Calibrated]) -> pd.DataFrame:
    """Per model, the risk-controlled policy: the promise (miss rate <= alpha with probability 1 - delta), the
    block-group images on val it rests on, the certified review threshold and its val upper bound, the review
    share it costs on test next to the val-chosen policy's, and the miss rate it achieved on test with its CI."""
    import pandas as pd

    rows = {}
    for name, f in fitted.items():
        rc, b = f.policy["risk_controlled"], f.policy["risk_controlled"]["bound"]
        test = rc["test"]
        rows[name] = {
            "promise": f"miss <= {b['alpha']:g} w.p. {1 - b['delta']:g}", "val block images": b["n"],
            "certified": b["certified"], "t_review": rc["thresholds"]["t_review"],
            "val miss upper bound": round(b["upper_bound"], 4), "test review rate": test["review_rate"],
            "test review rate (val-chosen)": f.policy["test"]["review_rate"], "test miss rate": test["missed_rate"],
            "test miss 95% CI": [round(v, 3) for v in test["missed_rate_ci95"] if v is not None],
            "held on test": rc["held_on_test"],
        }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def policy_record(fitted: dict[str, Calibrated]) -> dict[str, Any]:
    """What notebook 07 records of each model's policy: thresholds, the val and test operating points, and the
    risk-controlled policy."""
    keys = ("thresholds", "val", "test", "risk_controlled")
    return {name: {k: f.policy[k] for k in keys} for name, f in fitted.items()}


def clip_table(clips: dict[str, Any]) -> pd.DataFrame:
    """The clip rule chosen on val clips against judging every frame on its own (k = 1), on val and test clips:
    clip false-positive rate and block recall with 95% intervals, review and missed rates."""
    import pandas as pd

    k = clips["k"]
    rows = {}
    for rule, fit in ((f"k = {k} (chosen on val)", clips), ("k = 1 (any blocked frame)", clips["any_frame"])):
        for split in ("val", "test"):
            m = fit[split]
            cell = lambda key, m=m: None if m[key] is None else round(m[key], 3)  # noqa: E731
            ci = lambda key, m=m: "" if m[f"{key}_ci95"][0] is None else "[{:.2f}, {:.2f}]".format(*m[f"{key}_ci95"])  # noqa: E731
            rows[(rule, f"{split} (n = {m['n']})")] = {
                "clip FPR": cell("false_positive_rate"), "FPR 95% CI": ci("false_positive_rate"),
                "block recall": cell("block_recall"), "recall 95% CI": ci("block_recall"),
                "review rate": cell("review_rate"), "missed": cell("missed_rate"),
            }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")
