"""The study's summary table: one row per question of the study, with its answer, number, interval and
verdict, computed from the metrics JSON the notebooks wrote (nothing is typed in by hand).

Notebook 08 shows it, and the site's front page links each row to the cell that recorded its numbers (the
metrics JSON's ``recorded_cells``). A notebook that has not run gives one "not run" row, and one whose
metrics lack what a reader needs one "not recorded" row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsfw_lab.course.ablation import verdict_line
from nsfw_lab.course.report import Report, read_metrics
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.metrics import verdict

Row = dict[str, Any]


def _row(question: str, answer: str, key: str, number: float | str | None = None,
         ci: list[float] | None = None, verdict: str | None = None, signed: bool = False) -> Row:  # fmt: skip
    """One row; ``key`` names the recorded value it reads (its cell is linked); ``signed`` for a difference."""
    sign = "+" if signed else ""
    num = f"{number:{sign}.3f}" if isinstance(number, float) else number
    interval = f"[{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]" if ci and None not in ci[:2] else None
    return {"question": question, "answer": answer, "number": num, "interval": interval, "verdict": verdict,
            "key": key}  # fmt: skip


def _data(m: dict[str, Any]) -> list[Row]:
    ll, gl, check = m["leakage_lesson"], m["group_leakage"]["random per file"], m["leakage_check"]
    gap = ll.get("gap") or {"delta": ll["accuracy_gap"], "ci95": None}
    answer = (f"a random per-file split puts {gl['test_share_with_group_in_train']:.0%} of test images next to their "
              f"group in train and scores {ll['random per file']['accuracy']:.3f} vs "
              f"{ll['group-aware']['accuracy']:.3f} group-aware")  # fmt: skip
    leaks = check["cross_split_sha256"] + check["cross_split_near_duplicates"] + check["groups_straddling_splits"]
    return [
        _row("How much does a per-file random split inflate test accuracy?", answer, "leakage_lesson",
             gap["delta"], gap.get("ci95"), verdict(gap, "inflated", "deflated") if gap.get("ci95") else None, True),
        _row("Is the curated split free of leakage?", f"{leaks} identical files, near-duplicates or groups cross "
             "the curated splits", "leakage_check", leaks, None, "passed" if check["passed"] else "FAILED"),
    ]  # fmt: skip


def _residual(m: dict[str, Any]) -> list[Row]:
    loss = m["final_train_loss"]
    deep = max(loss["plain"], key=int)
    plain, res = loss["plain"][deep], loss["residual v1"][deep]
    answer = (f"at depth {deep} the final training loss is {plain:.3f} plain vs {res:.3f} residual; the 5.1-vs-5 "
              f"ratio computes to {m['sensitivity']['ratio']:.0f}")  # fmt: skip
    reading = "plain trains worse" if plain > res else "no degradation seen"
    return [_row("Do deep plain nets degrade where residual ones do not? (plain − residual loss)", answer,
                 "final_train_loss", plain - res, None, f"{reading} (one run each: no interval)", True)]  # fmt: skip


def _chance(ci: list[float] | None) -> str | None:
    """Whether a score's interval clears chance for five balanced classes (0.2)."""
    if not ci or ci[0] is None:
        return None
    return "above chance (0.2)" if ci[0] > 0.2 else "not clearly above chance (0.2)"


def _baseline(m: dict[str, Any]) -> list[Row]:
    t = m["test"]
    return [_row("Does the hand-written CNN learn the data? (test accuracy)", f"accuracy on {t['n']} test images",
                 "test", t["accuracy"], t["accuracy_ci95"], _chance(t["accuracy_ci95"]))]  # fmt: skip


def _paired(question: str, d: dict[str, Any], key: str, better: str = "helps", worse: str = "hurts") -> Row:
    seeds = d.get("seeds", 1)
    runs = f"{d['a']} minus {d['b']}" if d.get("a") and d.get("b") else "the difference"
    answer = f"macro-F1 of {runs}, paired on the same {d.get('n')} test images" + (
        f", {seeds} seeds pooled" if seeds > 1 else "")  # fmt: skip
    return _row(question, answer, key, d["delta"], d["ci95"], verdict(d, better, worse), True)


def _finetune(m: dict[str, Any]) -> list[Row]:
    return [_paired(f"{q} (macro-F1)", d, "verdicts") for q, d in m["verdicts"].items()]


def _trained(name: str, r: dict[str, Any], key: str) -> Row:
    if r.get("trained") is False:
        return _row(f"How does {name} do?", f"not trained: {r['why']}", key, None, None, "not trained")
    weights = "ImageNet weights" if r.get("weights") == "imagenet" else "random weights"
    return _row(f"How does {name} do? (test macro-F1)", f"trained at {r['image_size']} px from {weights}", key,
                r["macro_f1"], r["macro_f1_ci95"], _chance(r["macro_f1_ci95"]))  # fmt: skip


def _inception(m: dict[str, Any]) -> list[Row]:
    rows = [_trained("InceptionV3 with its auxiliary loss", m["inception"], "inception")]
    return rows + [_trained(arch, r, "ladder") for arch, r in (m.get("ladder") or {}).items()]


def _ablation(m: dict[str, Any]) -> list[Row]:
    summary = {s["augmentation"]: s for s in m["summary"]["test_macro_f1"]}
    seeds = len(m["setup"]["seeds"])
    rows = []
    for aug, test in m["verdicts"].items():
        s = summary[aug]
        answer = f"test: {test}; val: {m['verdicts_val'].get(aug, 'not measured')} ({seeds} seed{'s' * (seeds > 1)})"
        rows.append(_row(f"Does {aug} help? (macro-F1 vs no augmentation)", answer, "verdicts", s["delta"],
                         s.get("delta_ci95"), test, True))  # fmt: skip
    return rows or [_row("Do the article's augmentations help?", verdict_line(m["verdicts"]), "verdicts")]


def _errors(m: dict[str, Any]) -> list[Row]:
    best, pairs = m["best_model"], m["pairs"]
    top = max(pairs, key=lambda p: pairs[p]["count"]) if pairs else None
    most = f"most frequent confusion {top} ({pairs[top]['count']})" if top else "no test mistakes"
    rows = [_row("Which model is best on validation (macro-F1), and where do its mistakes fall?", f"{best}; {most}",
                 "best_model", m["val_scores"][best], None, "chosen on validation, never on test")]  # fmt: skip
    for name, e in m["explanations"].items():
        if e.get("n"):
            p = e["cam"]["pointing"]
            rows.append(_row(f"Do {name}'s heat maps point at the evidence? (pointing game)", e.get("reason") or
                             f"hits the evidence box on {p['mean']:.0%} of {e['n']} images", "explanations",
                             p["mean"], p["ci95"], e["verdict"]))  # fmt: skip
    sc = m.get("shortcut")
    if sc:
        rows.append(_row("Is a planted shortcut caught without ground truth?", "the clean control is "
                         f"{'flagged too' if sc['control_flagged'] else 'not flagged'}", "shortcut", None, None,
                         "detected" if sc["shortcut_detected"] else "not detected"))  # fmt: skip
    rob = (m.get("robustness") or {}).get(best)
    if rob and rob.get("worst"):
        w = rob["worst"]
        hurt = f"hurt by {len(rob['hurt'])} of {rob['of']}"
        rows.append(_row(f"What do corruptions cost {best}? (worst macro-F1 drop)", f"detectably {hurt} conditions; "
                         f"worst {w['corruption']} (n = {rob['n']})", "robustness", w["drop"], w.get("ci95"), hurt,
                         True))  # fmt: skip
    return rows


def _calibration(m: dict[str, Any]) -> list[Row]:
    rows = []
    for name, c in m["calibration"].items():
        p = m["policy"][name]["test"]
        recall = "n/a" if p["block_recall"] is None else f"{p['block_recall']:.2f}"
        bound = " (at bound)" if c.get("at_bound") else ""
        answer = (f"T {c['temperature']:.2f}{bound}, test ECE {c['ece_before']:.3f} → {c['ece_after']:.3f}; policy: "
                  f"block recall {recall}, review rate {p['review_rate']:.2f}")  # fmt: skip
        better = "ECE lower after scaling" if c["ece_after"] < c["ece_before"] else "ECE not lower after scaling"
        rows.append(_row(f"Is {name} calibrated, and what does its policy cost? (test ECE after scaling)", answer,
                         "calibration", c["ece_after"], None, better))  # fmt: skip
    return rows


def _comparison(m: dict[str, Any]) -> list[Row]:
    ref = m["reference"]
    return [_paired(f"Is {ref} (best on val) better than {name}? (macro-F1)", p, "paired", "better", "worse")
            for name, p in m["paired"].items()]  # fmt: skip


FINDINGS: tuple[tuple[str, str, Callable[[dict[str, Any]], list[Row]]], ...] = (
    ("00_data", "How much does a per-file random split inflate the score?", _data),
    ("01_residual_learning", "Do deep plain nets degrade where residual ones do not?", _residual),
    ("02_baseline_cnn", "Does the hand-written CNN learn the data?", _baseline),
    (
        "03_finetune",
        "Does ImageNet pretraining help; probe, refine, learning rate, big batch; ResNet-50 vs 101?",
        _finetune,
    ),
    ("04_inception_v3", "InceptionV3 with its auxiliary loss, and the modern ladder", _inception),
    ("05_augmentation_ablation", "Do the article's augmentations help?", _ablation),
    (
        "06_gradcam_error_analysis",
        "Where do mistakes fall, do heat maps point at the evidence, is a shortcut caught, what do corruptions cost?",
        _errors,
    ),
    ("07_calibration_policy", "Are probabilities calibrated; what does the moderation policy cost?", _calibration),
    ("08_comparison", "Which model is best, and is the difference real?", _comparison),
)
KEY_FIGURES = {  # the figure that shows each notebook's answer (the site's thumbnails)
    "00_data": "leakage", "01_residual_learning": "degradation", "02_baseline_cnn": "confusion",
    "03_finetune": "test_macro_f1", "04_inception_v3": "comparison", "05_augmentation_ablation": "ablation",
    "06_gradcam_error_analysis": "pointing_game", "07_calibration_policy": "reliability", "08_comparison": "macro_f1",
}  # fmt: skip


def key_figure(notebook: str, recorded: list[str]) -> str | None:
    """The recorded figure (``figures/<nb>_<name>.png``) that shows the notebook's answer, else its first."""
    wanted = f"figures/{notebook}_{KEY_FIGURES.get(notebook)}.png"
    return wanted if wanted in recorded else (recorded[0] if recorded else None)


def _reader(source: Report | Path) -> Callable[[str], dict[str, Any]]:
    """A report's own reader (a notebook: the read is recorded) or plain reads of a report folder (the site)."""
    if isinstance(source, Report):
        return source.read

    def read(nb: str) -> dict[str, Any]:
        found = read_metrics(Path(source), nb)
        if found is None:
            raise NsfwLabError(f"{nb} has not run")
        return found

    return read


def study_findings(source: Report | Path) -> list[Row]:
    """``[{notebook, question, answer, number, interval, verdict, cell}]`` in notebook order, from the recorded
    metrics of a notebook's report or of a report folder; ``cell`` is the execution count of the cell that
    recorded the row's numbers (None outside a kernel)."""
    read = _reader(source)
    out = []
    for nb, question, reader in FINDINGS:
        try:
            m = read(nb)
            rows = reader(m)
        except NsfwLabError as e:  # not run, or its metrics unreadable
            unreadable = "not valid JSON" in str(e)
            m, rows = {}, [_row(question, f"not readable ({e})" if unreadable else "not run", "")]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # an older or partial record
            what = f"{e.args[0]} missing" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
            rows = [_row(question, f"not recorded ({what}: rerun the notebook)", "")]
        for r in rows:
            key = r.pop("key")
            out.append({"notebook": nb, **r, "cell": (m.get("recorded_cells") or {}).get(key)})
    return out
