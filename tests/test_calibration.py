"""Calibration (ECE, temperature scaling), the moderation policy (thresholds meet the target on val by
construction, decisions, operating points), ``nsfw-lab calibrate``/``predict`` with decisions, and cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nsfw_lab.cards import data_card, model_card, write_cards
from nsfw_lab.cli import main
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.calibration import ece, fit_temperature, load_calibration, nll, probabilities, reliability
from nsfw_lab.evaluate.policy import (
    UNFITTED,
    Policy,
    Thresholds,
    choose_thresholds,
    decide,
    load_fitted,
    load_policy,
    operating_point,
    threshold_for_recall,
)
from nsfw_lab.evaluate.predict import predict

CLASSES = ["drawings", "hentai", "neutral", "porn", "sexy"]


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a 70%-accurate classifier that claims ~99% confidence (scaled-up logits)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 5, n))
    logits = rng.normal(0, 0.3, (n, 5))
    logits[np.arange(n), pred] += 2.0
    return logits * 4, y


def test_ece_and_reliability_have_known_values() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])  # bin 0.9: accuracy 0.5; bin 0.6: accuracy 1.0
    assert ece(probs, y, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    r = reliability(probs, y, bins=10)
    assert sum(r["count"]) == 4 and r["accuracy"][8] == 0.5 and r["accuracy"][5] == 1.0
    assert r["confidence"][0] is None
    assert ece(np.eye(3), np.arange(3)) == 0.0  # confident and right: perfectly calibrated


def test_temperature_scaling_lowers_nll_and_ece_on_an_overconfident_model() -> None:
    val, test = _overconfident(600, 0), _overconfident(600, 1)
    t = fit_temperature(*val)
    assert t > 2  # over-confident: the logits must be softened
    assert nll(*test, t) < nll(*test) - 0.3
    assert ece(probabilities(test[0], t), test[1]) < ece(probabilities(test[0]), test[1]) / 2
    assert (probabilities(test[0], t).argmax(1) == test[0].argmax(1)).all()  # predictions never change
    # a calibrated model keeps T near 1
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (4000, 5))
    y = np.array([rng.choice(5, p=p) for p in probabilities(logits)])
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_meet_the_target_recall_on_val_by_construction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    probs = rng.dirichlet(np.ones(5), n)
    y = rng.integers(0, 5, n)
    policy = Policy(target_recall=float(rng.uniform(0.5, 0.99)), review_recall=0.995)
    t = choose_thresholds(probs, y, CLASSES, policy)
    dec = decide(probs, CLASSES, policy, t)
    op = operating_point(dec, y, CLASSES, policy, n_boot=50)
    assert op["block_recall"] >= policy.target_recall
    assert (
        op["block_recall"] + sum(op["by_class"][c]["review"] for c in policy.block) / max(1, sum(np.isin(y, [1, 3])))
        >= policy.review_recall - 1e-9
    )
    assert t.t_review <= t.t_block
    # the highest such threshold: nudging it up loses recall below the target
    pos = probs[np.isin(y, [1, 3])][:, [1, 3]].sum(1)
    assert np.mean(pos >= np.nextafter(t.t_block, 1)) < policy.target_recall


def test_threshold_for_recall_edge_cases() -> None:
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05] * 2)
    assert threshold_for_recall(s, 0.95) == pytest.approx(0.05)  # 19 of 20 needs the 19th-highest score
    assert threshold_for_recall(s, 0.5) == pytest.approx(0.5)
    with pytest.raises(NsfwLabError, match="no block-group images"):
        threshold_for_recall(np.array([]), 0.9)


def test_decisions_follow_the_policy() -> None:
    probs = np.array(
        [
            [0.0, 0.5, 0.0, 0.4, 0.1],  # block score 0.9 -> block
            [0.1, 0.1, 0.2, 0.2, 0.4],  # 0.3: in the band -> review
            [0.1, 0.0, 0.1, 0.05, 0.75],  # 0.05, top class sexy -> review
            [0.7, 0.0, 0.25, 0.05, 0.0],  # 0.05, top class drawings -> allow
        ]
    )
    dec = decide(probs, CLASSES, Policy(), Thresholds(t_block=0.5, t_review=0.25))
    assert dec.tolist() == ["block", "review", "review", "allow"]
    op = operating_point(dec, np.array([3, 1, 4, 0]), CLASSES, Policy(), n_boot=20)
    assert op["block_recall"] == 0.5 and op["block_precision"] == 1.0 and op["false_positive_rate"] == 0.0
    assert op["review_rate"] == 0.5 and op["missed_rate"] == 0.0 and op["by_class"]["hentai"]["review"] == 1


def test_policy_files_are_checked(tmp_path: Path) -> None:
    assert load_policy() == Policy()  # the packaged file is the documented default
    f = tmp_path / "p.toml"
    groups = 'block = ["porn"]\nreview = ["sexy", "hentai"]\nallow = ["neutral", "drawings"]\n'
    f.write_text(groups + "target_recall = 0.9\n")
    p = load_policy(f)
    assert p.block == ("porn",) and p.target_recall == 0.9
    p.check(CLASSES)
    f.write_text('block = ["porn"]\nreview = ["sexy"]\nallow = ["neutral", "drawings"]\n')
    with pytest.raises(NsfwLabError, match="classes in no group: hentai"):
        load_policy(f).check(CLASSES, str(f))
    f.write_text('block = ["porn"]\nbloc = ["x"]\n')
    with pytest.raises(NsfwLabError, match="unknown keys bloc"):
        load_policy(f)
    f.write_text("block = [")
    with pytest.raises(NsfwLabError, match="cannot read the policy"):
        load_policy(f)
    f.write_text(groups + "target_recall = [0.9]\n")
    with pytest.raises(NsfwLabError, match="target_recall must be a number"):
        load_policy(f)
    f.write_text('block = "porn"\n')
    with pytest.raises(NsfwLabError, match="block must be a list of class names"):
        load_policy(f)
    with pytest.raises(NsfwLabError, match="target_recall <= review_recall"):
        Policy(target_recall=0.99, review_recall=0.9).check(CLASSES)


@pytest.fixture(scope="module")
def calibrated_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cal") / "run"
    shutil.copytree(tiny_run, run)
    (run / "eval_test.json").unlink(missing_ok=True)
    card = model_card(run, "tiny CNN")
    assert "Not recorded: test metrics" in card and "Not recorded: calibration" in card
    assert main(["evaluate", "--run", str(run), "--device", "cpu", "--bootstrap", "50", "--no-progress"]) == 0
    assert main(["calibrate", "--run", str(run), "--device", "cpu", "--bootstrap", "50", "--no-progress"]) == 0
    return run


def test_calibrate_cli_writes_temperature_and_policy(calibrated_run: Path) -> None:
    cal = json.loads((calibrated_run / "calibration.json").read_text())
    assert cal["fitted_on"] == "val" and load_calibration(calibrated_run)["temperature"] == cal["temperature"]
    assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9  # fitted to minimise val NLL
    pol = json.loads((calibrated_run / "policy.json").read_text())
    assert pol["val"]["block_recall"] >= pol["policy"]["target_recall"]
    assert pol["test"]["n"] == cal["test"]["n"] and set(pol["test"]["by_class"]) == set(CLASSES)
    fitted = load_fitted(calibrated_run)
    assert fitted.policy == Policy() and fitted.thresholds.to_dict() == pol["thresholds"]
    assert fitted.temperature == cal["temperature"]


def test_predict_applies_the_temperature_and_the_fitted_policy(
    tiny_run: Path, calibrated_run: Path, small_curated: Path, capsys: pytest.CaptureFixture
) -> None:
    files = sorted((small_curated / "test").rglob("*.jpg"))[:6]
    raw, cal = predict(tiny_run, files, device="cpu"), predict(calibrated_run, files, device="cpu")
    t = load_calibration(calibrated_run)["temperature"]
    fitted = load_fitted(calibrated_run)
    policy, th = fitted.policy, fitted.thresholds
    for a, b in zip(raw, cal, strict=True):
        p = np.array([a[f"prob_{c}"] for c in CLASSES])
        expected = probabilities(np.log(np.clip(p, 1e-12, 1))[None], t)[0]
        assert [b[f"prob_{c}"] for c in CLASSES] == pytest.approx(expected, abs=1e-4)
        assert b["prediction"] == a["prediction"]
        score = b["prob_porn"] + b["prob_hentai"]
        assert b["block_score"] == pytest.approx(score, abs=1e-5)
        want = decide(np.array([[b[f"prob_{c}"] for c in CLASSES]]), CLASSES, policy, th)[0]
        assert b["decision"] == want
    assert all(r["decision"] in ("allow", "review", "block") for r in raw)  # unfitted: the 0.5 default rule
    assert main(["predict", "--run", str(calibrated_run), str(files[0]), "--device", "cpu", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith("block_score,decision,error") and "policy fitted on val" in err


def test_calibration_is_not_applied_to_the_other_checkpoint_and_mismatches_fail(
    calibrated_run: Path, tmp_path: Path
) -> None:
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.evaluate.predict import decision_rule

    rule = decision_rule(load_run(calibrated_run, "best", "cpu"))
    assert rule.temperature == load_calibration(calibrated_run)["temperature"]
    assert rule.thresholds == load_fitted(calibrated_run).thresholds
    rule = decision_rule(load_run(calibrated_run, "last", "cpu"))
    assert rule.temperature == 1.0 and rule.thresholds == UNFITTED == Thresholds(0.5, 0.5)
    assert "not applied to last" in rule.note
    run = tmp_path / "run"
    shutil.copytree(calibrated_run, run)
    pol = json.loads((run / "policy.json").read_text())
    (run / "policy.json").write_text(json.dumps({**pol, "temperature": pol["temperature"] + 0.5}))
    with pytest.raises(NsfwLabError, match="disagree; rerun `nsfw-lab calibrate`"):
        decision_rule(load_run(run, "best", "cpu"))


def test_predict_can_apply_the_risk_controlled_thresholds(
    calibrated_run: Path, tiny_run: Path, small_curated: Path, capsys: pytest.CaptureFixture
) -> None:
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.evaluate.predict import decision_rule

    pol = json.loads((calibrated_run / "policy.json").read_text())
    risk = Thresholds(**pol["risk_controlled"]["thresholds"])
    assert load_fitted(calibrated_run).risk_thresholds == risk
    rule = decision_rule(load_run(calibrated_run, "best", "cpu"), "risk")
    assert rule.thresholds == risk and "risk-controlled" in rule.note and rule.clip.k == 1
    files = [str(f) for f in sorted((small_curated / "test").rglob("*.jpg"))[:8]]
    assert main(["predict", "--run", str(calibrated_run), *files, "--operating-point", "risk", "--format", "jsonl",
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fitted = load_fitted(calibrated_run)
    for r in rows:
        p = np.array([[r[f"prob_{c}"] for c in CLASSES]])
        assert r["decision"] == decide(p, CLASSES, fitted.policy, risk)[0]
    with pytest.raises(NsfwLabError, match="no risk-controlled policy fitted"):
        decision_rule(load_run(tiny_run, "best", "cpu"), "risk")


def test_cards_report_what_the_run_recorded(calibrated_run: Path, tmp_path: Path) -> None:
    ev = json.loads((calibrated_run / "eval_test.json").read_text())
    card = model_card(calibrated_run, "tiny CNN")
    cal = json.loads((calibrated_run / "calibration.json").read_text())
    recorded, deployment = card.split("## Robustness")[0], card.split("## Deployment cost")[1]
    assert f"T = {cal['temperature']:.3f}" in card and "Not recorded" not in recorded
    assert "_Not recorded: robustness. Run `nsfw-lab robustness" in card  # not run here (test_robustness: with)
    assert "_Not recorded: inference latency. Run `make bench`" in deployment  # no bench given (test_bench: with)
    assert f"macro-F1 {ev['macro_f1']:.3f} [{ev['macro_f1_ci95'][0]:.3f}" in card
    pol = json.loads((calibrated_run / "policy.json").read_text())
    assert f"block ≥ {pol['thresholds']['t_block']:.4f}" in card
    assert "Intended use" in card and "Content safety" in card and "not** a detector" in card
    explanations = {"n": 10, "layer": "features.1", "target": 0.8, "verdict": "meets target",
                    "cam": {"pointing": {"mean": 0.9, "ci95": [0.8, 1.0]}, "energy": {"mean": 0.4}},
                    "random": {"pointing": {"mean": 0.2}}, "centre": {"pointing": {"mean": 0.3}}}  # fmt: skip
    card = model_card(calibrated_run, "tiny CNN", explanations, {"summary": "shortcut found: porn relies on a badge"})
    assert "0.900 [0.800, 1.000]" in card and "**meets target**" in card and "porn relies on a badge" in card
    paths = write_cards(calibrated_run, tmp_path / "cards", "tiny CNN", bench=tmp_path / "no-bench")
    data = paths["data"].read_text()
    report = json.loads((Path(json.loads((calibrated_run / "config.json").read_text())["data"]["path"]) /
                         "curation_report.json").read_text())  # fmt: skip
    assert f"Files seen {report['files_seen']}, kept {report['kept']}" in data and "Check passed" in data
    assert "Synthetic proxy generated by `nsfw-lab synth`" in data
    assert paths["model"].read_text().startswith("# Model card: tiny CNN")
    with pytest.raises(NsfwLabError, match="not a curated dataset"):
        data_card(tmp_path)
