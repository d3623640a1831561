"""The study's summary table: one line per notebook, its question and what the recorded numbers say.

Every finding is computed from the metrics JSON the notebook wrote (nothing is typed in by hand); a notebook
that has not run gives "not run".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nsfw_lab.course.ablation import verdict_line
from nsfw_lab.course.report import Report
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.metrics import verdict


def _ci(ci: list[float] | None) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def _data(m: dict[str, Any]) -> str:
    ll, gl = m["leakage_lesson"], m["group_leakage"]["random per file"]
    return (
        f"a random per-file split puts {gl['test_share_with_group_in_train']:.0%} of test images next to their "
        f"group in train and scores {ll['random per file']['accuracy']:.3f} vs {ll['group-aware']['accuracy']:.3f} "
        f"group-aware ({ll['accuracy_gap']:+.3f})"
    )


def _residual(m: dict[str, Any]) -> str:
    loss = m["final_train_loss"]
    deep = max(loss["plain"], key=int)
    return (
        f"at depth {deep} the final training loss is {loss['plain'][deep]:.3f} plain vs "
        f"{loss['residual v1'][deep]:.3f} residual; the 5.1-vs-5 ratio computes to {m['sensitivity']['ratio']:.0f}"
    )


def _baseline(m: dict[str, Any]) -> str:
    t = m["test"]
    beats = "above" if t["accuracy_ci95"][0] > 0.2 else "not clearly above"
    return f"test accuracy {t['accuracy']:.3f}{_ci(t['accuracy_ci95'])}, {beats} chance (0.2)"


def _finetune(m: dict[str, Any]) -> str:
    parts = []
    for question, d in m["verdicts"].items():
        lo, hi = d["ci95"]
        parts.append(f"{question}: {d['delta']:+.3f} [{lo:+.2f}, {hi:+.2f}] ({d['verdict']})")
    return "; ".join(parts)


def _inception(m: dict[str, Any]) -> str:
    i = m["inception"]
    if i.get("trained") is False:
        return f"not trained: {i['why']}"
    return f"macro-F1 {i['macro_f1']:.3f}{_ci(i['macro_f1_ci95'])} at {i['image_size']} px"


def _ablation(m: dict[str, Any]) -> str:
    line = verdict_line
    could = f", could detect {m['detectable']:.3f}" if m.get("detectable") is not None else ""
    return f"val — {line(m['verdicts_val'])}. test — {line(m['verdicts'])} ({len(m['setup']['seeds'])} seeds{could})"


def _errors(m: dict[str, Any]) -> str:
    pairs = m["pairs"]
    top = max(pairs, key=lambda p: pairs[p]["count"]) if pairs else None
    most = f"; most frequent confusion {top} ({pairs[top]['count']})" if top else "; no test mistakes"
    measured = [f"{name} {e['cam']['pointing']['mean']:.2f} ({e['verdict']})" for name, e in m["explanations"].items()
                if e.get("n")]  # fmt: skip
    pointing = "; pointing game " + ", ".join(measured) if measured else "; explanations not measured"
    sc = m.get("shortcut")
    shortcut = (f"; shortcut detected: {str(sc['shortcut_detected']).lower()} (control flagged: "
                f"{str(sc['control_flagged']).lower()})") if sc else ""  # fmt: skip
    rob = (m.get("robustness") or {}).get(m["best_model"])
    robust = ""
    if rob:
        w = rob["worst"]
        robust = (f"; under corruptions {m['best_model']} is detectably hurt by {len(rob['hurt'])} of {rob['of']} "
                  f"(worst: {w['corruption']} {w['drop']:+.3f}, n = {rob['n']})")  # fmt: skip
    return f"best on val: {m['best_model']}{most}{pointing}{shortcut}{robust}"


def _calibration(m: dict[str, Any]) -> str:
    parts = []
    for name, c in m["calibration"].items():
        p = m["policy"][name]["test"]
        recall = "n/a" if p["block_recall"] is None else f"{p['block_recall']:.2f}"
        bound = " (at bound)" if c.get("at_bound") else ""
        parts.append(
            f"{name}: T {c['temperature']:.2f}{bound}, test ECE {c['ece_before']:.3f} → {c['ece_after']:.3f}, "
            f"block recall {recall}, review rate {p['review_rate']:.2f}"
        )
    return "; ".join(parts)


def _comparison(m: dict[str, Any]) -> str:
    ref, paired = m["reference"], m["paired"]
    parts = []
    for name, p in paired.items():
        lo, hi = p["ci95"]
        parts.append(f"vs {name} {p['delta']:+.3f} [{lo:+.2f}, {hi:+.2f}] ({verdict(p, 'better', 'worse')})")
    return f"best on val: {ref}; paired test macro-F1 difference " + "; ".join(parts)


FINDINGS: tuple[tuple[str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("00_data", "How much does a per-file random split inflate the score?", _data),
    ("01_residual_learning", "Do deep plain nets degrade where residual ones do not?", _residual),
    ("02_baseline_cnn", "Does the hand-written CNN learn the data?", _baseline),
    (
        "03_finetune",
        "Does ImageNet pretraining help; probe, refine, learning rate, big batch; ResNet-50 vs 101?",
        _finetune,
    ),
    ("04_inception_v3", "InceptionV3 with its auxiliary loss", _inception),
    ("05_augmentation_ablation", "Do the article's augmentations help?", _ablation),
    (
        "06_gradcam_error_analysis",
        "Where do mistakes fall, do heat maps point at the evidence, is a shortcut caught, what do corruptions cost?",
        _errors,
    ),
    ("07_calibration_policy", "Are probabilities calibrated; what does the moderation policy cost?", _calibration),
    ("08_comparison", "Which model is best, and is the difference real?", _comparison),
)


def study_findings(report: Report) -> list[dict[str, str]]:
    """``[{notebook, question, finding}]`` in notebook order, from the recorded metrics."""
    out = []
    for nb, question, read in FINDINGS:
        try:
            finding = read(report.read(nb))
        except NsfwLabError:
            finding = "not run"
        except KeyError as e:
            finding = f"not recorded ({e.args[0]} missing: rerun the notebook)"
        out.append({"notebook": nb, "question": question, "finding": finding})
    return out
