"""Runs offered by model notebooks, collected, chosen on val and tabulated; the study's findings table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsfw_lab.course.compare import best_on_val, candidates, offer, offer_nothing, paired_difference, run_row
from nsfw_lab.course.findings import study_findings
from nsfw_lab.course.report import Report
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.loading import load_run
from nsfw_lab.evaluate.metrics import independent_difference, paired_macro_f1_difference, verdict
from nsfw_lab.evaluate.scoring import evaluate_run
from nsfw_lab.models import count_parameters
from nsfw_lab.train import fit


def _fake_run(path: Path, val: float) -> Path:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"best": {"score": val}}))
    (path / "eval_test.json").write_text("{}")
    return path


def test_offer_and_collect_in_notebook_order(tmp_path: Path) -> None:
    a, b = Report("02_a", "smoke", tmp_path), Report("03_b", "smoke", tmp_path)
    offer(a, "small", _fake_run(tmp_path / "runs" / "x", 0.4))
    offer(b, "big", _fake_run(tmp_path / "runs" / "y", 0.7))
    offer(b, "bigger", _fake_run(tmp_path / "runs" / "z", 0.7))
    assert a.values["candidates"] == [["small", "runs/x"]]
    found = candidates(Report("07", "smoke", tmp_path), ["02_a", "03_b"])
    assert list(found) == ["small", "big", "bigger"] and found["big"] == tmp_path / "runs" / "y"
    assert best_on_val(found) == "big"  # the highest val score; a tie goes to the first offered
    with pytest.raises(NsfwLabError, match=r"missing; run notebook 04_c first \(nsfw-lab study --only 04_c\)"):
        candidates(Report("07", "smoke", tmp_path), ["02_a", "04_c"])
    Report("05_d", "smoke", tmp_path).record("other", 1)
    with pytest.raises(NsfwLabError, match="notebook 05_d offered no runs"):
        candidates(Report("07", "smoke", tmp_path), ["05_d"])
    offer_nothing(Report("06_e", "smoke", tmp_path), "no weights here")  # offered nothing, on purpose
    said: list[str] = []
    assert list(candidates(Report("07", "smoke", tmp_path), ["02_a", "06_e"], said.append)) == ["small"]
    assert said == ["06_e offers no model here: no weights here"]
    (tmp_path / "runs" / "y" / "eval_test.json").unlink()
    with pytest.raises(NsfwLabError, match=r"y/eval_test.json: missing; rerun notebook 03_b"):
        candidates(Report("07", "smoke", tmp_path), ["03_b"])
    with pytest.raises(NsfwLabError):
        best_on_val({})


def test_comparison_row_reads_the_run_and_measures_it(small_curated: Path, tmp_path: Path, tiny_config) -> None:
    run = tmp_path / "run"
    fit(tiny_config(small_curated, run, max_steps=3))
    test = evaluate_run(run, "test", n_boot=50, progress=False)
    row = run_row("tiny", run)
    assert row["test accuracy"] == round(test["accuracy"], 4) and row["macro-F1 95% CI"] == [
        round(v, 3) for v in test["macro_f1_ci95"]
    ]
    assert row["parameters (M)"] == round(count_parameters(load_run(run, device="cpu").model) / 1e6, 2)
    assert row["input px"] == 32 and row["architecture"] == "baseline" and row["CPU latency ms (batch 1)"] > 0
    assert row["val macro-F1"] == round(json.loads((run / "summary.json").read_text())["best"]["score"], 4)


def test_findings_are_computed_from_the_recorded_metrics(tmp_path: Path) -> None:
    def rows(source: Report | Path, notebook: str) -> list[tuple]:
        return [(f["question"], f["answer"], f["number"], f["interval"], f["verdict"])
                for f in study_findings(source) if f["notebook"] == notebook]  # fmt: skip

    Report("02_baseline_cnn", "smoke", tmp_path).record("test", {"accuracy": 0.41, "accuracy_ci95": [0.3, 0.52],
                                                                 "n": 80})  # fmt: skip
    r = Report("05_augmentation_ablation", "smoke", tmp_path)
    r.record("verdicts", {"rotation": "hurts", "shear": "no detectable difference (could detect 0.100)"})
    r.record("verdicts_val", {"rotation": "no detectable difference (could detect 0.120)", "shear": "helps"})
    r.record("setup", {"seeds": [0, 1, 2]})
    r.record("summary", {"test_macro_f1": [
        {"augmentation": "base", "mean": 0.6},
        {"augmentation": "rotation", "delta": -0.12, "delta_ci95": [-0.2, -0.04]},
        {"augmentation": "shear", "delta": 0.01, "delta_ci95": [-0.05, 0.07]},
    ]})  # fmt: skip
    c = Report("08_comparison", "smoke", tmp_path)
    c.record("reference", "B")
    c.record("paired", {
        "A": {"delta": 0.2, "ci95": [0.05, 0.31], "n": 90, "a": "run_b", "b": "run_a"},
        "C": {"delta": 0.05, "ci95": [-0.04, 0.12], "detectable": 0.09, "n": 90},
    })  # fmt: skip
    Report("04_inception_v3", "smoke", tmp_path).record("other", 1)
    assert rows(tmp_path, "02_baseline_cnn") == [("Does the hand-written CNN learn the data? (test accuracy)",
                                                  "accuracy on 80 test images", "0.410", "[0.300, 0.520]",
                                                  "above chance (0.2)")]  # fmt: skip
    assert rows(tmp_path, "05_augmentation_ablation") == [
        ("Does rotation help? (macro-F1 vs no augmentation)",
         "test: hurts; val: no detectable difference (could detect 0.120) (3 seeds)", "-0.120", "[-0.200, -0.040]",
         "hurts"),
        ("Does shear help? (macro-F1 vs no augmentation)",
         "test: no detectable difference (could detect 0.100); val: helps (3 seeds)", "+0.010", "[-0.050, +0.070]",
         "no detectable difference (could detect 0.100)"),
    ]  # fmt: skip
    assert rows(tmp_path, "08_comparison") == [
        ("Is B (best on val) better than A? (macro-F1)", "macro-F1 of run_b minus run_a, paired on the same 90 test "
         "images", "+0.200", "[+0.050, +0.310]", "better"),
        ("Is B (best on val) better than C? (macro-F1)", "macro-F1 of the difference, paired on the same 90 test "
         "images", "+0.050", "[-0.040, +0.120]", "no detectable difference (could detect 0.090)"),
    ]  # fmt: skip
    assert [r[1] for r in rows(tmp_path, "00_data")] == ["not run"]
    assert [r[1] for r in rows(tmp_path, "04_inception_v3")] == ["not recorded (inception missing: rerun the notebook)"]
    (tmp_path / "metrics" / "01_residual_learning.json").write_text("{not json")
    assert rows(tmp_path, "01_residual_learning")[0][1].startswith("not readable (")
    g = Report("06_gradcam_error_analysis", "smoke", tmp_path)
    g.record("best_model", "B")
    g.record("val_scores", {"B": 0.7})
    g.record("pairs", {"porn → sexy": {"count": 3}})
    g.record("explanations", {"B": {"n": 20, "cam": {"pointing": {"mean": 0.85, "ci95": [0.7, 0.95]}},
                                    "verdict": "meets target", "reason": None}})  # fmt: skip
    g.record("shortcut", {"shortcut_detected": True, "control_flagged": False})
    k = Report("07_calibration_policy", "smoke", tmp_path)
    k.record("calibration", {"B": {"temperature": 1.5, "ece_before": 0.12, "ece_after": 0.04}})
    k.record("policy", {"B": {"test": {"block_recall": 0.9, "review_rate": 0.25}}})
    assert rows(k, "06_gradcam_error_analysis") == [
        ("Which model is best on validation (macro-F1), and where do its mistakes fall?",
         "B; most frequent confusion porn → sexy (3)", "0.700", None, "chosen on validation, never on test"),
        ("Do B's heat maps point at the evidence? (pointing game)", "hits the evidence box on 85% of 20 images",
         "0.850", "[0.700, 0.950]", "meets target"),
        ("Is a planted shortcut caught without ground truth?", "the clean control is not flagged", None, None,
         "detected"),
    ]  # fmt: skip
    assert rows(k, "07_calibration_policy") == [
        ("Is B calibrated, and what does its policy cost? (test ECE after scaling)",
         "T 1.50, test ECE 0.120 → 0.040; policy: block recall 0.90, review rate 0.25", "0.040", None,
         "ECE lower after scaling"),
    ]  # fmt: skip
    assert json.loads((tmp_path / "metrics" / "07_calibration_policy.json").read_text())["reads"] == [
        "00_data", "01_residual_learning", "02_baseline_cnn", "03_finetune", "04_inception_v3",
        "05_augmentation_ablation", "06_gradcam_error_analysis", "08_comparison",
    ]  # fmt: skip  # a notebook's report records what it read (the site warns its readers of a failure)


def test_paired_difference_is_paired(tmp_path: Path) -> None:
    header = "path,label,prediction\n"
    labels = ["a", "b"] * 20
    good = [lab for lab in labels]  # always right
    bad = [lab if i % 4 else "b" for i, lab in enumerate(labels)]  # every other "a" called "b"
    for name, preds in (("good", good), ("bad", bad), ("other", good)):
        (tmp_path / name).mkdir()
        rows = "".join(f"img{i}.jpg,{lab},{p}\n" for i, (lab, p) in enumerate(zip(labels, preds, strict=True)))
        (tmp_path / name / "predictions_test.csv").write_text(header + rows)
    d = paired_difference(tmp_path / "good", tmp_path / "bad", n_boot=300)
    # bad: F1(a) = 2*10 / (2*10 + 10) = 2/3, F1(b) = 2*20 / (2*20 + 10) = 4/5 -> macro-F1 11/15
    assert d["n"] == 40 and d["delta"] == pytest.approx(1 - 11 / 15)
    assert 0 < d["ci95"][0] <= d["delta"] <= d["ci95"][1]
    assert d["detectable"] == pytest.approx(2.8016 * d["se"], rel=1e-4) and verdict(d) == "helps"
    same = paired_difference(tmp_path / "good", tmp_path / "other", n_boot=50)
    assert same["delta"] == 0 and same["ci95"] == [0.0, 0.0]  # identical predictions: no difference on any resample
    assert same["detectable"] == 0 and verdict(same) == "no difference (the same predictions on every image)"
    (tmp_path / "other" / "predictions_test.csv").write_text(header + "x.jpg,a,a\n")
    with pytest.raises(NsfwLabError, match="not scored on the same test images"):
        paired_difference(tmp_path / "good", tmp_path / "other")


def test_detectable_difference_shrinks_with_the_test_set_and_verdicts_follow_it() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = {}
    for n in (100, 1000):
        y = rng.integers(0, 5, n)
        a = np.where(rng.random(n) < 0.85, y, (y + 1) % 5)  # 85% right
        b = np.where(rng.random(n) < 0.80, y, (y + 2) % 5)  # 80% right, independently
        d = paired_macro_f1_difference(y, a, b, list(range(5)), n_boot=400)
        sizes[n] = d["detectable"]
    # a standard error shrinks as 1/sqrt(n): ten times the images, about a third of the detectable size
    assert 0.25 < sizes[1000] / sizes[100] < 0.42 and sizes[1000] < 0.06
    assert verdict({"delta": 0.02, "ci95": [-0.01, 0.05], "detectable": 0.04}) == (
        "no detectable difference (could detect 0.040)"
    )
    assert verdict({"delta": -0.1, "ci95": [-0.15, -0.05]}, "better", "worse") == "worse"


def test_independent_difference_of_two_test_sets() -> None:
    import numpy as np
    from sklearn.metrics import accuracy_score

    y1, y2 = np.zeros(1000, int), np.zeros(800, int)
    p1 = (np.arange(1000) % 10 == 0).astype(int)  # 90% right
    p2 = (np.arange(800) % 5 == 0).astype(int)  # 80% right
    d = independent_difference((y1, p1), (y2, p2), accuracy_score, n_boot=500)
    assert d["delta"] == pytest.approx(0.1) and d["n"] == [1000, 800]
    se = (0.9 * 0.1 / 1000 + 0.8 * 0.2 / 800) ** 0.5  # two independent binomial proportions
    assert d["se"] == pytest.approx(se, rel=0.15) and d["ci95"][0] > 0 and verdict(d) == "helps"


def test_resampled_macro_f1_equals_scikit_learn_on_every_resample() -> None:
    import numpy as np

    from nsfw_lab.evaluate.metrics import bootstrap_indices, macro_f1, resampled_macro_f1

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 5, 60), rng.integers(0, 4, 60)  # class 4 never predicted; tiny resamples miss classes
    idx = bootstrap_indices(60, 50, seed=2)
    fast = resampled_macro_f1(y, p, 5, idx)
    assert np.allclose(fast, [macro_f1(y[i], p[i], list(range(5))) for i in idx], atol=1e-12)
