"""Runs offered by model notebooks, collected, chosen on val and tabulated; the study's findings table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsfw_lab.course.compare import best_on_val, candidates, comparison_row, offer
from nsfw_lab.course.findings import study_findings
from nsfw_lab.course.report import Report
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate import evaluate_run
from nsfw_lab.models import count_parameters
from nsfw_lab.runs import load_run
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
    (tmp_path / "runs" / "y" / "eval_test.json").unlink()
    with pytest.raises(NsfwLabError, match=r"y/eval_test.json: missing; rerun notebook 03_b"):
        candidates(Report("07", "smoke", tmp_path), ["03_b"])
    with pytest.raises(NsfwLabError):
        best_on_val({})


def test_comparison_row_reads_the_run_and_measures_it(small_curated: Path, tmp_path: Path, tiny_config) -> None:
    run = tmp_path / "run"
    fit(tiny_config(small_curated, run, max_steps=3))
    test = evaluate_run(run, "test", n_boot=50, progress=False)
    row = comparison_row("tiny", run)
    assert row["test accuracy"] == round(test["accuracy"], 4) and row["macro-F1 95% CI"] == [
        round(v, 3) for v in test["macro_f1_ci95"]
    ]
    assert row["parameters (M)"] == round(count_parameters(load_run(run, device="cpu").model) / 1e6, 2)
    assert row["input px"] == 32 and row["architecture"] == "baseline" and row["CPU latency ms (batch 1)"] > 0
    assert row["val macro-F1"] == round(json.loads((run / "summary.json").read_text())["best"]["score"], 4)


def test_findings_are_computed_from_the_recorded_metrics(tmp_path: Path) -> None:
    Report("02_baseline_cnn", "smoke", tmp_path).record("test", {"accuracy": 0.41, "accuracy_ci95": [0.3, 0.52]})
    r = Report("05_augmentation_ablation", "smoke", tmp_path)
    r.record("verdicts", {"rotation": "hurts", "shear": "no clear effect", "noise": "no clear effect"})
    r.record("setup", {"seeds": [0, 1, 2]})
    Report("07_comparison", "smoke", tmp_path).record(
        "comparison",
        [{"model": "A", "test macro-F1": 0.5, "macro-F1 95% CI": [0.4, 0.6]},
         {"model": "B", "test macro-F1": 0.7, "macro-F1 95% CI": [0.62, 0.8]},
         {"model": "C", "test macro-F1": 0.65, "macro-F1 95% CI": [0.55, 0.75]}],
    )  # fmt: skip
    Report("04_inception_v3", "smoke", tmp_path).record("other", 1)
    f = {x["notebook"]: x["finding"] for x in study_findings(Report("07_comparison", "smoke", tmp_path))}
    assert f["02_baseline_cnn"] == "test accuracy 0.410 [0.30, 0.52], above chance (0.2)"
    assert f["05_augmentation_ablation"] == "hurts: rotation; no clear effect: noise, shear (3 seeds)"
    assert f["07_comparison"] == "highest test macro-F1: B 0.700; CIs overlap with C"
    assert f["00_data"] == "not run" and f["04_inception_v3"] == "not recorded (inception missing: rerun the notebook)"
