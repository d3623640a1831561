"""Evaluation metrics against hand-computed cases; evaluate and predict on a trained run agree."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.cli import main
from nsfw_lab.evaluate.metrics import bootstrap_ci, classification_metrics
from nsfw_lab.evaluate.predict import predict
from nsfw_lab.evaluate.scoring import evaluate_run


def test_metrics_on_a_hand_computed_case() -> None:
    y = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.7, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    m = classification_metrics(y, probs, ["a", "b", "c"], n_boot=500)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    # class a: positives score 0.8, 0.3; negatives 0.1, 0.2, 0.1 -> every positive above every negative
    assert m["roc_auc_ovr"]["a"] == 1.0 and m["roc_auc_ovr"]["c"] == 1.0
    # class b: positives 0.7, 0.5; negatives 0.1, 0.6, 0.2 -> 5 of 6 pairs ordered
    assert m["roc_auc_ovr"]["b"] == pytest.approx(5 / 6)
    assert m["pr_auc_ovr"]["b"] == pytest.approx((1 + 2 / 3) / 2)  # hits at ranks 1 and 3
    lo, hi = m["accuracy_ci95"]
    assert 0 <= lo <= 0.8 <= hi <= 1 and m["n"] == 5


def test_auc_is_none_for_a_class_without_positives() -> None:
    m = classification_metrics(
        np.array([0, 1, 0]), np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0]]), ["a", "b", "c"], n_boot=10
    )
    assert m["roc_auc_ovr"]["c"] is None and m["roc_auc_macro"] == 1.0


def test_bootstrap_ci_is_seeded_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    acc = lambda a, b: float((a == b).mean())  # noqa: E731
    y_small = rng.integers(0, 2, 50)
    p_small = np.where(rng.random(50) < 0.7, y_small, 1 - y_small)
    y_big = rng.integers(0, 2, 2000)
    p_big = np.where(rng.random(2000) < 0.7, y_big, 1 - y_big)
    a = bootstrap_ci(y_small, p_small, acc, 400, seed=1)
    assert a == bootstrap_ci(y_small, p_small, acc, 400, seed=1)
    b = bootstrap_ci(y_big, p_big, acc, 400, seed=1)
    assert b[1] - b[0] < (a[1] - a[0]) / 3 and b[0] < 0.7 < b[1]


def test_evaluate_writes_json_and_consistent_predictions(tiny_run: Path, small_curated: Path) -> None:
    r = evaluate_run(tiny_run, "test", n_boot=100, progress=False)
    saved = json.loads((tiny_run / "eval_test.json").read_text())
    assert saved["accuracy"] == r["accuracy"] and "latency_ms_batch1" not in saved  # latency: the bench
    rows = list(csv.DictReader((tiny_run / "predictions_test.csv").open()))
    n_test = sum(1 for line in (small_curated / "manifest.csv").open() if line.startswith("test,"))
    assert len(rows) == r["n"] == n_test
    classes = r["classes"]
    probs = np.array([[float(row[f"prob_{c}"]) for c in classes] for row in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.mean([row["label"] == row["prediction"] for row in rows]) == pytest.approx(r["accuracy"])
    cm = np.array(r["confusion_matrix"])
    assert cm.sum() == n_test and np.trace(cm) / n_test == pytest.approx(r["accuracy"])
    # predict on the same files gives the same probabilities (one eval pipeline)
    preds = predict(tiny_run, [small_curated / rows[0]["path"], small_curated / rows[1]["path"]], device="cpu")
    for row, p in zip(rows[:2], preds, strict=True):
        assert [p[f"prob_{c}"] for c in classes] == pytest.approx([float(row[f"prob_{c}"]) for c in classes], abs=2e-6)


def test_predict_keeps_going_past_bad_files_and_reads_animations(
    tiny_run: Path, small_curated: Path, tmp_path: Path
) -> None:
    src = sorted((small_curated / "test").rglob("*.jpg"))[:3]
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    frames = [Image.open(src[0]).convert("RGB"), Image.open(src[1]).convert("RGB")]
    frames[0].save(tmp_path / "in" / "first.png")
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    (folder / "broken.jpg").write_bytes(Image.open(src[2]).tobytes()[:500])  # raw pixels, not a JPEG
    (folder / "notes.txt").write_text("not an image")  # ignored inside folders (not an image suffix)
    rows = predict(tiny_run, [tmp_path / "in", tmp_path / "missing.jpg"], batch_size=2, device="cpu")
    by = {Path(r["path"]).name: r for r in rows}
    assert set(by) == {"first.png", "anim.gif", "broken.jpg", "missing.jpg"}
    assert by["broken.jpg"]["error"] and by["broken.jpg"]["prediction"] is None
    assert by["missing.jpg"]["error"].startswith("missing")
    first_png, gif = by["first.png"], by["anim.gif"]
    assert gif["error"] is None and gif["prediction"] == first_png["prediction"]
    assert gif["prob_" + gif["prediction"]] == pytest.approx(first_png["prob_" + gif["prediction"]], abs=0.05)


def test_predict_cli_streams_jsonl(tiny_run: Path, small_curated: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["predict", "--run", str(tiny_run), str(small_curated / "val"), "--format", "jsonl", "--device", "cpu"])
        == 0
    )
    lines = [json.loads(x) for x in io.StringIO(capsys.readouterr().out)]
    n_val = sum(1 for line in (small_curated / "manifest.csv").open() if line.startswith("val,"))
    assert len(lines) == n_val and all(x["error"] is None and x["prediction"] for x in lines)


def test_evaluate_on_a_view_of_the_data(tiny_run: Path, small_curated: Path, tmp_path: Path) -> None:
    from nsfw_lab.data.views import random_split_view

    view = random_split_view(small_curated, tmp_path / "view")
    r = evaluate_run(tiny_run, "test", data=view, n_boot=20, progress=False)
    rows = list(csv.DictReader((tiny_run / "predictions_test.csv").open()))
    assert len(rows) == r["n"] and all(Path(row["path"]).is_file() for row in rows)


def test_evaluate_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "not a training run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def constant_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A copy of ``tiny_run`` whose last layer ignores its input: logits = b for every image."""
    import shutil

    import torch

    out = tmp_path_factory.mktemp("const") / "run"
    out.mkdir()
    shutil.copy(tiny_run / "config.json", out / "config.json")
    ck = torch.load(tiny_run / "best.pt", weights_only=True)
    b = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])
    ck["model"]["classifier.4.weight"].zero_()
    ck["model"]["classifier.4.bias"].copy_(b)
    torch.save(ck, out / "best.pt")
    return out, torch.softmax(b, 0).numpy()


def test_predict_and_evaluate_on_a_hand_computed_model(constant_run: tuple, small_curated: Path) -> None:
    run, p = constant_run
    rows = predict(run, [small_curated / "val"], device="cpu")
    assert rows and all(r["prediction"] == "sexy" for r in rows)  # argmax of b
    for r in rows:
        assert [r[f"prob_{c}"] for c in ("drawings", "hentai", "neutral", "porn", "sexy")] == pytest.approx(p, abs=1e-6)
    ev = evaluate_run(run, "test", n_boot=50, progress=False)
    counts = np.array(ev["confusion_matrix"]).sum(1)  # true class counts
    share = counts[4] / counts.sum()
    assert ev["accuracy"] == pytest.approx(share)  # every image called "sexy"
    assert ev["per_class"]["sexy"]["recall"] == 1.0 and ev["per_class"]["sexy"]["precision"] == pytest.approx(share)
    assert ev["macro_f1"] == pytest.approx(2 * share / (1 + share) / 5)
    assert ev["balanced_accuracy"] == pytest.approx(1 / 5)
    for k, c in enumerate(ev["classes"]):  # constant scores: chance ROC-AUC, PR-AUC = prevalence
        assert ev["roc_auc_ovr"][c] == pytest.approx(0.5)
        assert ev["pr_auc_ovr"][c] == pytest.approx(counts[k] / counts.sum())


def test_predict_cli_reports_unreadable_inputs(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "bad.jpg").write_text("<html>gone</html>")
    code = main(["predict", "--run", str(tiny_run), str(empty), str(tmp_path / "bad.jpg"), "--no-progress"])
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["error"].split(":")[0] for r in rows] == ["no_images", "not_an_image"]
    assert code == 2 and "no input could be classified" in err
    assert main(["predict", "--run", str(tiny_run), str(empty), "--batch-size", "0"]) == 2
