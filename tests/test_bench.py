"""``nsfw-lab bench``: the quick bench runs and writes its keys (the figures themselves are benchmarks, never
asserted against speed goals here), and the pieces it is built from behave."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nsfw_lab.bench.measure import PeakMemory, paired_ratio, side_by_side
from nsfw_lab.bench.report import inference_table, load, markdown

BIN = Path(sys.executable).parent / "nsfw-lab"


@pytest.mark.slow
def test_quick_bench_writes_every_key_naming_machine_and_versions(quick_bench: Path) -> None:
    b = json.loads((quick_bench / "bench.json").read_text())
    for key in ("data_speedup", "train_step_ratio", "onnx_latency_ratio"):
        assert isinstance(b[key], float) and b[key] > 0, key
        assert b["goals"][key]["met"] in (True, False)
    assert b["quick"] is True and b["machine"]["cores"] >= 1 and b["machine"]["cpu"]
    assert {"torch", "torchvision", "torchcodec", "onnxruntime", "nsfw_lab"} <= set(b["versions"])
    # the ratios are medians of the per-repeat quotients of the two rates recorded beside them
    d, t, o = b["data"], b["train_step"], b["onnx"]

    def paired(a: dict, c: dict) -> float:
        return statistics.median(x / y for x, y in zip(a["repeats"], c["repeats"], strict=True))

    assert b["data_speedup"] == pytest.approx(paired(d["ours_images_per_s"], d["plain_images_per_s"]), rel=1e-3)
    assert len(d["ours_images_per_s"]["repeats"]) == d["repeats"] == 3
    assert b["train_step_ratio"] == pytest.approx(paired(t["ours_images_per_s"], t["bare_images_per_s"]), rel=1e-3)
    lat = {r["variant"]: r["batch1_ms_repeats"] for r in b["inference"] if r["model"] == "resnet50"}
    assert b["onnx_latency_ratio"] == pytest.approx(paired({"repeats": lat["onnxruntime"]}, {"repeats": lat["eager"]}))
    assert o["onnxruntime_batch1_ms"] == statistics.median(lat["onnxruntime"])
    assert d["original_megapixels_median"] > 1.0 and d["batch_shape"][1:] == [3, 224, 224]
    rows = {r["variant"]: r for r in b["inference"] if r["model"] == "resnet50"}
    assert set(rows) == {"eager", "channels_last", "torchscript", "onnxruntime", "int8"}
    for v in ("eager", "channels_last", "torchscript", "onnxruntime"):
        assert rows[v]["agreement"] == 1.0 and rows[v]["batch1_ms"] > 0 and rows[v]["batch32_images_per_s"] > 0
    assert rows["int8"]["kept"] == (rows["int8"]["agreement"] >= 0.99 and rows["int8"]["classes_predicted"] > 1)
    assert rows["eager"]["classes_predicted"] >= 2  # agreement is not measured on a one-class network
    trained = [r for r in b["inference"] if r["model"] == "run:run"]  # --run: the tiny trained CNN
    assert len(trained) == 5 and trained[0]["weights"] == "trained (baseline)" and trained[0]["input_px"] == 32
    assert b["peak_memory"]["process_max_rss_mib"] > 100
    assert b["gpu"]["available"] == torch.cuda.is_available()
    lv = b["cpu_levers"]
    p, c = lv["precision"], lv["cached_probe"]
    assert set(p["images_per_s"]) == {"fp32", "channels_last", "bf16", "bf16_channels_last"}
    for v, r in p["images_per_s"].items():  # each variant's speed-up is its median rate over fp32's
        assert p["speedup_over_fp32"][v] == pytest.approx(r["median"] / p["images_per_s"]["fp32"]["median"], abs=1e-3)
    assert 0 <= p["bf16_top1_agreement"] <= 1 and p["bf16_max_logit_diff"] >= 0
    from nsfw_lab.train.config import cpu_has_amx_bf16

    assert p["amx_bf16"] == cpu_has_amx_bf16() and p["default"]["amp"] == ("bf16" if p["amx_bf16"] else "off")
    assert c["model"] == "efficientnet_lite0" and c["images"] > 0 and c["extract_s"] > 0
    assert c["speedup"] == pytest.approx(c["frozen_epoch_s"] * c["epochs"] / (c["extract_s"] + c["fit_s"]), abs=0.01)
    md = (quick_bench / "bench.md").read_text()
    assert (
        "## CPU levers" in md
        and f"| bf16_channels_last | {p['images_per_s']['bf16_channels_last']['median']:.1f} |" in md
    )
    assert b["machine"]["cpu"] in md and f"torch {b['versions']['torch']}" in md
    assert f"| `data_speedup` | {b['data_speedup']:.3f} |" in md and "ONNX Runtime int8" in md
    assert markdown(b) == md


@pytest.mark.slow
def test_if_missing_keeps_the_bench_and_bad_models_are_one_line_errors(quick_bench: Path) -> None:
    before = (quick_bench / "bench.json").stat().st_mtime_ns
    r = subprocess.run([str(BIN), "bench", "--quick", "--if-missing", "--out", str(quick_bench)], capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0 and "not measured again" in r.stdout
    assert (quick_bench / "bench.json").stat().st_mtime_ns == before
    r = subprocess.run([str(BIN), "bench", "--quick", "--models", "resnet18", "--out", str(quick_bench / "x")],
                       capture_output=True, text=True)  # fmt: skip
    want = "error: --models must include resnet50 (onnx_latency_ratio is measured on it)"
    assert r.returncode == 2 and r.stderr.strip() == want
    assert load(quick_bench / "missing") is None


def test_side_by_side_takes_medians_in_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    import nsfw_lab.bench.measure as measure

    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    calls: list[str] = []
    cost = {"a": [1.0, 2.0, 4.0], "b": [2.0, 2.0, 2.0]}  # seconds per repeat, for 10 items each

    def make(name: str):  # type: ignore[no-untyped-def]
        def fn() -> int:
            clock[0] += cost[name][sum(c == name for c in calls)]
            calls.append(name)
            return 10

        return fn

    r = side_by_side({"a": make("a"), "b": make("b")}, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # turns, the order reversed every other repeat
    assert r["a"]["repeats"] == [10.0, 5.0, 2.5] and r["a"]["median"] == 5.0 and r["b"]["median"] == 5.0
    assert paired_ratio(r, "a", "b") == pytest.approx(1.0)  # per-repeat ratios 2, 1, 0.5


def test_peak_memory_sees_an_allocation() -> None:
    with PeakMemory() as m:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, still alive when the block ends
    assert m.cpu_mib is None or m.cpu_mib >= 48
    del x


def test_int8_is_refused_below_the_agreement_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    import nsfw_lab.bench.inference as inf
    from nsfw_lab.models import build_model

    torch.manual_seed(0)
    model = build_model("baseline", 5, image_size=32, widths=(8, 16), hidden=16).eval()
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=g)
    monkeypatch.setattr(inf, "INT8_MIN_AGREEMENT", 1.01)  # nothing can reach it
    rows = {r["variant"]: r for r in inf.measure_model("tiny", model, "none", images[8:], images[:8], 3, 2)}
    assert all(len(r["batch1_ms_repeats"]) == 3 and r["batch32_images_per_s"] > 0 for r in rows.values())
    assert rows["int8"]["kept"] is False and "< 101%" in rows["int8"]["why"]
    assert all(rows[v]["kept"] and rows[v]["agreement"] == 1.0 for v in ("eager", "torchscript", "onnxruntime"))
    assert "not kept" in "\n".join(inference_table(list(rows.values())))


@pytest.mark.slow
def test_the_model_card_reads_the_latency_table_of_its_architecture(
    quick_bench: Path, small_curated: Path, tmp_path: Path, tiny_config, tiny_run: Path
) -> None:  # type: ignore[no-untyped-def]
    from nsfw_lab.cards import model_card, write_cards
    from nsfw_lab.train import fit

    run = tmp_path / "r50"
    fit(tiny_config(small_curated, run, model="resnet50", image_size=32, max_steps=1))
    bench = load(quick_bench)
    card = model_card(run, "r50", bench=bench)
    section = card.split("## Deployment cost")[1].split("## ")[0]
    rows = {r["variant"]: r for r in bench["inference"] if r["model"] == "resnet50"}
    px = rows["eager"]["input_px"]  # the quick bench's input (112 px)
    assert px == 112 and f"at {px} px (this model runs at 32 px" in section
    assert f"| resnet50 | {px} | none | eager fp32 | {rows['eager']['batch1_ms']:.1f} |" in section
    assert f"| ONNX Runtime | {rows['onnxruntime']['batch1_ms']:.1f} |" in section
    assert "_Not measured" in model_card(tiny_run, "tiny", bench=bench)  # the quick bench has no baseline rows
    assert "Run `make bench`" in model_card(tiny_run, "tiny", bench=None)
    paths = write_cards(run, tmp_path / "cards", "r50", bench=quick_bench / "bench.json")
    assert f"{rows['eager']['batch1_ms']:.1f}" in paths["model"].read_text()


@pytest.mark.torchcodec
def test_the_gpu_part_runs_its_loops_on_the_cpu_device(small_curated: Path) -> None:
    """No GPU in CI: the GPU part's code runs here on the CPU device with tiny settings (the CUDA-only calls are
    skipped there), both decode paths through the real loader, sampler and training loop."""
    from nsfw_lab.bench import gpu
    from nsfw_lab.bench.report import _gpu_lines

    syn = gpu.synthetic("resnet18", 32, 4, steps=2, repeats=2, device="cpu")
    assert syn["images_per_s"] > 0 and len(syn["repeats"]) == 2 and syn["peak_gib"] is None
    e2e = [gpu.end_to_end(small_curated, d, 8, 3, "resnet18", 32, "cpu", workers=0) for d in ("torchcodec", "gpu")]
    for r in e2e:
        assert r["images"] == 24 and r["images_per_s"] > 0 and 0 <= r["loader_wait_share"] < 1
    broken = gpu._guard(lambda: gpu.end_to_end(small_curated / "missing", "gpu", 8, 3, device="cpu"))
    assert "not a curated dataset" in broken["error"]
    md = "\n".join(_gpu_lines({"available": True, "device": "cpu (test)", "synthetic": [syn],
                               "end_to_end": [*e2e, broken]}))  # fmt: skip
    assert "| synthetic tensors | resnet18 | 32 | 4 | False |" in md and "decode gpu" in md and "error:" in md
