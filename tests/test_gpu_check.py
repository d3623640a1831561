"""``nsfw-lab gpu-check``: its CPU-side logic (the result without CUDA, the rehearsal of every step on the CPU,
the CUDA tests' counts, what counts as a failure). On a CUDA machine ``make gpu-check`` runs the real thing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nsfw_lab.bench import gpu_check
from nsfw_lab.bench.gpu_check import CheckSettings, cuda_tests, failures, markdown, run_gpu_check
from nsfw_lab.cli import main


def test_without_cuda_it_writes_a_result_saying_so_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu-check", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 0
    r = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert r["cuda"] is False and r["device"] == "none" and "no CUDA device" in r["note"]
    assert "study" not in r and "cuda_tests" not in r and not (tmp_path / "work").exists()  # nothing was run
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert md.startswith("# GPU check: none") and "no CUDA device" in md and r["versions"]["torch"] in md
    assert "no CUDA device" in capsys.readouterr().out


@pytest.mark.slow
def test_the_rehearsal_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    s = CheckSettings.tiny()
    r, js, md = run_gpu_check(tmp_path / "out", tmp_path / "work", s, device="cpu", say=lambda _: None)
    assert failures(r) == [], failures(r)
    assert [row["model"] for row in r["study"]] == [m for m, *_ in s.models] and r["run_on"] == "cpu"
    for row in r["study"]:
        assert row["n"] >= 15 and 0 <= row["macro_f1_ci95"][0] <= row["macro_f1"] <= row["macro_f1_ci95"][1] <= 1
        assert row["epochs"] == (2 if row["recipe"] == "two-stage" else 1) and row["train_images_per_s"] > 0
        cam = row["gradcam"]
        assert 1 <= cam["images"] <= s.cam_images and 0 <= cam["pointing"]["mean"] <= 1 and cam["grid"] >= 1
        assert row["onnx"]["cpu_parity"] <= row["onnx"]["tolerance"] and row["onnx"]["device_within_tolerance"]
        assert (tmp_path / "work" / "exports" / f"{row['model']}.onnx").is_file()
    text = md.read_text()
    assert all(f"| {m} | {px} | {recipe} | {decode} |" in text for m, px, recipe, decode in s.models)
    assert json.loads(js.read_text())["within_budget"] is True


def test_the_cuda_tests_are_counted_from_pytests_report(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "import pytest\n"
        "@pytest.mark.cuda\ndef test_a(): pass\n"
        "@pytest.mark.cuda\ndef test_b(): assert False\n"
        "@pytest.mark.cuda\ndef test_c(): pytest.skip('no')\n"
        "def test_not_cuda(): assert False\n"
    )
    t = cuda_tests(tests)
    assert (t["tests"], t["passed"], t["failures"], t["skipped"], t["failed"]) == (3, 1, 1, 1, ["test_b"])
    assert t["exit_code"] == 1
    assert cuda_tests(tmp_path / "nowhere")["error"].endswith("no tests folder (run from a repository checkout)")


def test_failures_name_each_broken_step_and_the_page_shows_them() -> None:
    err = {"error": "RuntimeError: boom", "where": ""}
    ok = {"tests": 3, "passed": 3, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "seconds": 1.0}
    row = {"model": "resnet50", "input_px": 224, "recipe": "two-stage", "decode": "gpu", "weights": "none",
           "train_images_per_s": 900.0, "macro_f1": 0.5, "macro_f1_ci95": [0.4, 0.6], "gradcam": err,
           "onnx": {"cpu_parity": 1e-6, "device_parity": 2e-6}}  # fmt: skip
    base = {"created": "now", "device": "H200", "seconds": 300.0, "budget_s": 480, "within_budget": True,
            "versions": {"torch": "2.11", "cuda": "13.0", "torchvision": "0.26", "torchcodec": "0.10",
                         "python": "3.12"}}  # fmt: skip
    r = {**base, "cuda_tests": ok, "bench_gpu": {"synthetic": [err]}, "study": [row, err]}
    assert failures(r) == ["bench ?", "resnet50 gradcam", "study (RuntimeError: boom)"]
    assert failures({**base, "cuda_tests": {**ok, "failures": 1, "failed": ["test_x"]}}) == ["CUDA tests (test_x)"]
    assert failures({**base, "cuda_tests": ok, "study": [{**row, "gradcam": {"pointing": {}}}]}) == []
    page = markdown(r)
    assert page.startswith("# GPU check: H200") and "3 passed, 0 failed" in page
    want = "| resnet50 | 224 | two-stage | gpu | none | 900 | 0.500 [0.400, 0.600] | error | 1.0e-06 / 2.0e-06 |"
    assert want in page
    assert "| error |" in page and gpu_check.BUDGET_S == 480
