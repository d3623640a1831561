"""``nsfw-lab gpu-check`` (``make gpu-check``): everything GPU-specific, run once on a CUDA machine in minutes.

Sized for one H100/H200 in at most 8 minutes, offline, with the machine's own PyTorch:

1. the CUDA tests (``pytest -m cuda``: nvJPEG decoding against the worker path, a ``--decode gpu`` run,
   the bf16 + channels_last defaults);
2. the bench's GPU part (:func:`nsfw_lab.bench.gpu.measure`, quick): ResNet-50/101 and InceptionV3 training
   img/s from synthetic device tensors, and end to end from a curated cache with TorchCodec and with
   ``--decode gpu``, with the loader-wait share;
3. a ``gpu``-profile mini study on a proxy of a few thousand images: ResNet-50 two-stage at 224 px (decoded
   on the GPU) and InceptionV3 at 299 px, each evaluated on test with intervals, Grad-CAM measured against the
   proxy's evidence boxes on the device, and the ONNX export's parity checked against the CUDA model.

It writes ``gpu_check.json`` and ``gpu_check.md`` (default ``reports/benchmarks/``) naming the device. On
a machine without CUDA it writes a result saying so and exits 0. Each step is guarded: one that fails
records its error and the others still run. Accuracy here checks the code paths; with random initial
weights (no ImageNet files offline) it is not a finding.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nsfw_lab import config

BUDGET_S = 8 * 60


@dataclass(frozen=True)
class CheckSettings:
    """The sizes of one check; the defaults are the H100/H200 ones, :meth:`tiny` the CPU test's."""

    per_class: int = 600  # proxy images per class (3,000 in all, about 2,400 to train on)
    proxy_px: int = 360
    short_side: int = 320  # the cache's short side: 299 px crops without upsampling
    models: tuple[tuple[str, int, str, str], ...] = (
        ("resnet50", 224, "two-stage", "gpu"),  # (model, px, recipe, decode)
        ("inception_v3", 299, "single", "torchcodec"),
    )
    epochs: int = 3
    batch: int = 128
    cam_images: int = 64
    tests: bool = True
    bench: bool = True

    @classmethod
    def tiny(cls) -> CheckSettings:
        """Minutes on 2 CPU cores: the same steps at toy sizes (what tests/test_gpu_check.py runs)."""
        models = (("resnet18", 64, "two-stage", "torchcodec"), ("inception_v3", 80, "single", "pil"))
        return cls(per_class=40, proxy_px=96, short_side=88, models=models, epochs=1, batch=16, cam_images=8,
                   tests=False, bench=False)  # fmt: skip


def _guard(fn: Any) -> dict[str, Any]:
    from nsfw_lab.bench.gpu import _guard as guard

    return guard(fn)


def cuda_tests(tests: Path = config.PROJECT_ROOT / "tests", timeout_s: int = 240) -> dict[str, Any]:
    """Run ``pytest -m cuda`` on ``tests`` in a subprocess; counts from its JUnit report."""
    if not tests.is_dir():
        return {"error": f"{tests}: no tests folder (run from a repository checkout)"}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", str(tests), "-m", "cuda", "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}"]  # fmt: skip
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tests.parent)
        except subprocess.TimeoutExpired:
            return {"error": f"pytest -m cuda ran past {timeout_s} s"}
        if not junit.is_file():
            return {"error": f"pytest exited {proc.returncode} without a report: {proc.stdout[-300:]}"}
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None or
                  c.find("error") is not None]  # fmt: skip
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed, "exit_code": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def make_data(work: Path, s: CheckSettings) -> Path:
    """The check's proxy, generated and curated once into ``work``; returns the curated folder."""
    from nsfw_lab.data.curate import CurateConfig
    from nsfw_lab.data.prepare import ensure_curated, ensure_proxy
    from nsfw_lab.data.synth import SynthConfig

    raw = ensure_proxy(work / "raw", SynthConfig(per_class=s.per_class, size=s.proxy_px, seed=0), progress=False)
    ensure_curated(raw, work / "curated", CurateConfig(short_side=s.short_side), progress=False)
    return work / "curated"


def cam_check(run_dir: Path, curated: Path, n: int, device: str) -> dict[str, Any]:
    """Grad-CAM of the predicted class on ``n`` boxed test images, on ``device``: pointing game vs random maps."""
    from nsfw_lab.data.dataset import CuratedImageDataset
    from nsfw_lab.data.transforms import eval_transform
    from nsfw_lab.evaluate.loading import load_run
    from nsfw_lab.explain.cam import GradCam, map_sizes
    from nsfw_lab.explain.measure import input_boxes, pointing_game, proxy_truth

    run = load_run(run_dir, device=device)
    size = run.image_size
    ds = CuratedImageDataset(curated, "test", eval_transform(size, normalize=False))
    truth = proxy_truth(curated)
    boxes = input_boxes(truth, [r["cached_path"] for r in ds.rows], size)
    keep = [i for i, b in enumerate(boxes) if b is not None][:n]
    images = torch.stack([ds[i][0] for i in keep])
    t0 = time.perf_counter()
    with torch.inference_mode():
        pred = run.model(images.to(run.device)).argmax(1).cpu().tolist()
    with GradCam(run.model) as cam:
        maps = cam(images, pred, allow_flat=True)
    seconds = time.perf_counter() - t0
    grid = map_sizes(run.model, [run.model.spec.target_layer], size)[run.model.spec.target_layer][0]
    game = pointing_game(maps, [boxes[i] for i in keep], grid, n_boot=200)
    return {"images": len(keep), "layer": run.model.spec.target_layer, "grid": grid, "seconds": round(seconds, 2),
            "pointing": game["cam"]["pointing"], "random_pointing": game["random"]["pointing"]}  # fmt: skip


def onnx_check(run_dir: Path, out: Path, device: str) -> dict[str, Any]:
    """Export to ONNX (the CLI's parity check, on the CPU) and compare the export with the model on ``device``
    in fp32 (TF32 off, so the comparison is of the graph, not of the matmul precision)."""
    from nsfw_lab.evaluate.export import (
        PARITY_BATCHES,
        PARITY_TOLERANCE,
        export_run,
        load_exported,
        max_prob_diff,
        parity_images,
    )
    from nsfw_lab.evaluate.loading import load_run

    info = export_run(run_dir, "onnx", out)
    run = load_run(run_dir, device=device)
    images, _ = parity_images(run)
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        model = run.model.float().eval()
        diff = max_prob_diff(lambda x: model(x.to(run.device)).cpu(), load_exported(Path(info["path"]), "onnx"),
                             images, PARITY_BATCHES)  # fmt: skip
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return {"cpu_parity": info["parity"]["max_abs_prob_diff"], "device_parity": diff,
            "tolerance": PARITY_TOLERANCE, "device_within_tolerance": bool(diff <= PARITY_TOLERANCE),
            "bytes": Path(info["path"]).stat().st_size}  # fmt: skip


def study_row(curated: Path, work: Path, model: str, px: int, recipe: str, decode: str, s: CheckSettings,
              device: str) -> dict[str, Any]:  # fmt: skip
    """Train one model of the mini study on ``device``, evaluate it on test, explain it, export it."""
    from nsfw_lab.errors import NsfwLabError
    from nsfw_lab.evaluate.scoring import evaluate_run
    from nsfw_lab.models.zoo import fetch_imagenet
    from nsfw_lab.train import fit, make_config

    try:  # the gpu profile's weights where the machine has them (offline: torchvision's cache, else none)
        fetch_imagenet(model)
        weights, note = "imagenet", "ImageNet weights"
    except NsfwLabError as e:
        weights, note = "none", f"random initial weights ({e})"
    optim = dict(optimizer="sgd", lr=0.01) if weights == "imagenet" else dict(optimizer="adamw", lr=1e-3)
    two = recipe == "two-stage"
    cfg = make_config(data=str(curated), out=str(work / "runs" / model), model=model, weights=weights, image_size=px,
                      epochs=s.epochs, batch_size=s.batch, recipe=recipe, freeze_stages=2 if two else 0,
                      refine_epochs=1 if two else None, decode=decode, device=device, progress=False, save_every=0,
                      **optim)  # fmt: skip
    t0 = time.perf_counter()
    result = fit(cfg)
    test = evaluate_run(result.run_dir, "test", device=device, n_boot=500, progress=False)
    train_s = time.perf_counter() - t0
    rates = [h["images_per_s"] for h in result.history[1:] or result.history]  # the first epoch warms cuDNN up
    keys = ("accuracy", "accuracy_ci95", "macro_f1", "macro_f1_ci95", "n")
    row: dict[str, Any] = {"model": model, "input_px": px, "recipe": recipe, "decode": decode, "weights": weights,
                           "weights_note": note, "epochs": len(result.history), "train_eval_s": round(train_s, 1),
                           "train_images_per_s": round(statistics.median(rates), 1),
                           **{k: test[k] for k in keys}}  # fmt: skip
    row["gradcam"] = _guard(lambda: cam_check(result.run_dir, curated, s.cam_images, device))
    row["onnx"] = _guard(lambda: onnx_check(result.run_dir, work / "exports" / f"{model}.onnx", device))
    return row


def run_gpu_check(
    out: Path | None = None,
    work: Path | None = None,
    settings: CheckSettings | None = None,
    device: str | None = None,
    say: Any = lambda s: print(s, file=sys.stderr),
) -> tuple[dict[str, Any], Path, Path]:
    """Run the check (see the module docstring) and write ``gpu_check.json`` + ``.md`` into ``out``.

    ``device`` None means CUDA, and a machine without it gets a "no CUDA device" result; ``"cpu"`` runs the
    mini study on the CPU at ``settings`` (the test)."""
    from nsfw_lab.bench import gpu
    from nsfw_lab.bench.measure import machine, versions
    from nsfw_lab.bench.report import default_dir
    from nsfw_lab.utils.fsutil import atomic_write_json, atomic_write_text

    s = settings or CheckSettings()
    out = Path(out) if out else default_dir()
    work = Path(work) if work else config.DATA_DIR / "interim" / "gpu_check"
    cuda = torch.cuda.is_available()
    dev = device or "cuda"
    t0 = time.perf_counter()
    result: dict[str, Any] = {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cuda": cuda,
                              "device": torch.cuda.get_device_name(0) if cuda else "none", "run_on": dev,
                              "machine": machine(), "versions": versions(), "settings": asdict(s),
                              "budget_s": BUDGET_S}  # fmt: skip
    if dev == "cuda" and not cuda:
        result["note"] = (f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}): "
                          "nothing was run; run `make gpu-check` on a machine with an NVIDIA GPU")  # fmt: skip
        say(result["note"])
    else:
        if s.tests:
            say("gpu-check: the CUDA tests")
            result["cuda_tests"] = _guard(cuda_tests)
        say(f"gpu-check: proxy of {5 * s.per_class} images, curated at {s.short_side} px")
        curated = make_data(work, s)
        if s.bench:
            say("gpu-check: the bench's GPU part (quick)")
            result["bench_gpu"] = _guard(lambda: gpu.measure(curated, True, lambda v: say(f"  {v}")))
        result["study"] = []
        for old in (work / "runs", work / "exports"):  # a check trains afresh (the proxy is kept)
            shutil.rmtree(old, ignore_errors=True)
        for model, px, recipe, decode in s.models:
            say(f"gpu-check: mini study, {model} at {px} px ({recipe}, decode {decode})")
            result["study"].append(_guard(lambda: study_row(curated, work, model, px, recipe, decode, s, dev)))  # noqa: B023
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["within_budget"] = result["seconds"] <= BUDGET_S
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "gpu_check.json", out / "gpu_check.md"
    atomic_write_json(js, result)
    atomic_write_text(md, markdown(result))
    return result, js, md


def failures(r: dict[str, Any]) -> list[str]:
    """What went wrong in a result, one short item each (empty: everything ran and the CUDA tests passed)."""
    out = []
    t = r.get("cuda_tests") or {}
    if "error" in t or t.get("failures") or t.get("errors"):
        out.append(f"CUDA tests ({t.get('error') or ', '.join(t['failed'])})")
    b = r.get("bench_gpu") or {}
    out += [f"bench {row.get('model', '?')}" for row in b.get("synthetic", []) + b.get("end_to_end", [])
            if "error" in row] + (["bench"] if "error" in b else [])  # fmt: skip
    for row in r.get("study", []):
        if "error" in row:
            out.append(f"study ({row['error'][:80]})")
        else:
            out += [f"{row['model']} {k}" for k in ("gradcam", "onnx") if "error" in row[k]]
    return out


def _f(v: Any, fmt: str = "{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(r: dict[str, Any]) -> str:
    """The result as a short Markdown page."""
    v = r["versions"]
    lines = [f"# GPU check: {r['device']}", "", f"{r['created']}; torch {v['torch']} (CUDA {v['cuda']}), torchvision "
             f"{v['torchvision']}, TorchCodec {v['torchcodec']}, Python {v['python']}; {r['seconds']:.0f} s "
             f"(budget {r['budget_s']} s: {'within' if r['within_budget'] else 'OVER'}).", ""]  # fmt: skip
    if "note" in r:
        return "\n".join([*lines, r["note"], ""])
    t = r.get("cuda_tests")
    if t:
        failed = ": " + ", ".join(t["failed"]) if t.get("failed") else ""
        said = t.get("error") or (
            f"{t['passed']} passed, {t['failures'] + t['errors']} failed, {t['skipped']} "
            f"skipped in {t['seconds']} s{failed}"
        )
        lines += ["## CUDA tests", "", said, ""]
    b = r.get("bench_gpu")
    if b:
        lines += [
            "## Bench, GPU part (bf16 + channels_last)",
            "",
            "| what | px | batch | img/s | loader wait |",
            "|---|---|---|---|---|",
        ]
        for row in b.get("synthetic", []) + b.get("end_to_end", []):
            if "error" in row:
                lines.append(f"| error | | | {row['error'][:100]} | |")
                continue
            what = (f"{row['model']} synthetic{' compiled' if row.get('compile') else ''}" if "decode" not in row
                    else f"{row['model']} end to end, decode {row['decode']}")  # fmt: skip
            lines.append(f"| {what} | {row['input_px']} | {row['batch']} | {row['images_per_s']:.0f} | "
                         f"{_f(row.get('loader_wait_share'), '{:.0%}')} |")  # fmt: skip
        lines.append("")
    lines += ["## Mini study (test set; random initial weights measure the code path, not a model)", "",
              "| model | px | recipe | decode | weights | train img/s | test macro-F1 [95% CI] | pointing (random) | "
              "ONNX parity cpu / device |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in r.get("study", []):
        if "error" in row:
            lines.append(f"| error | | | | | | {row['error'][:120]} | | |")
            continue
        (lo, hi), cam, ox = row["macro_f1_ci95"], row["gradcam"], row["onnx"]
        point = "error" if "error" in cam else (f"{_f(cam['pointing']['mean'], '{:.2f}')} "
                                                 f"({_f(cam['random_pointing']['mean'], '{:.2f}')})")  # fmt: skip
        parity = "error" if "error" in ox else f"{ox['cpu_parity']:.1e} / {ox['device_parity']:.1e}"
        lines.append(f"| {row['model']} | {row['input_px']} | {row['recipe']} | {row['decode']} | {row['weights']} | "
                     f"{row['train_images_per_s']:.0f} | {row['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{point} | {parity} |")  # fmt: skip
    return "\n".join([*lines, ""])
