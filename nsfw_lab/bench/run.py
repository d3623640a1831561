"""``run_bench``: every part of the bench in one run, with the settings of ``--quick`` or the full bench."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nsfw_lab import config
from nsfw_lab.bench import data_speedup, gpu, inference, levers, train_step
from nsfw_lab.bench.measure import machine, versions
from nsfw_lab.bench.report import GOALS, met, write
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.models.names import MODELS


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one bench run (``quick``: a few minutes on 2 cores; its inference table at 112 px)."""

    quick: bool
    data_per_class: int
    data_batch: int
    data_repeats: int
    train_model: str
    train_size: int
    train_batch: int
    train_steps: int
    train_repeats: int
    models: tuple[str, ...]
    latency_repeats: int  # turns, each with LATENCY_BLOCK timed calls per variant
    throughput_repeats: int
    agreement_per_class: int
    inference_px: int | None  # input of the inference table's models (None: each architecture's own)
    lever_batch: int
    lever_steps: int  # training steps per turn of each precision variant (bf16 is slow without AMX)
    lever_repeats: int
    probe_model: str  # the cached-features lever: the course's fine-tuning network at its input
    probe_size: int
    probe_images: int
    probe_epochs: int

    @classmethod
    def make(cls, quick: bool, models: tuple[str, ...] | None = None) -> BenchSettings:
        """The quick or the full settings (``models`` replaces the inference models)."""
        if quick:
            s = cls(True, 16, 16, 3, "resnet18", 112, 16, 4, 3, ("resnet50",), 3, 2, 24, 112, 8, 1, 2,
                    "efficientnet_lite0", 112, 128, 2)  # fmt: skip
        else:
            s = cls(False, 60, 32, 5, "resnet18", 224, 32, 6, 5, MODELS, 9, 5, 40, None, 32, 4, 3,
                    "efficientnet_lite0", 112, 512, 2)  # fmt: skip
        if models:
            if "resnet50" not in models:
                raise NsfwLabError("--models must include resnet50 (onnx_latency_ratio is measured on it)")
            s = BenchSettings(**{**asdict(s), "models": tuple(models)})
        return s


def _images(files: list[Path], size: int) -> torch.Tensor:
    from nsfw_lab.data.decode import decode_file
    from nsfw_lab.data.transforms import eval_transform

    tf = eval_transform(size, normalize=False)
    return torch.stack([tf(decode_file(f)) for f in files])


def agreement_files(work: Path, per_class: int) -> list[Path]:
    """Proxy images for top-1 agreement: another seed than the data-path images (which calibrate int8)."""
    from nsfw_lab.data.prepare import ensure_proxy
    from nsfw_lab.data.synth import SynthConfig

    cfg = SynthConfig(per_class=per_class, size=256, seed=1, corrupt_rate=0, placeholder_rate=0)
    return sorted(ensure_proxy(work / "agreement", cfg, progress=False).glob("*/*.jpg"))


def run_bench(
    out: Path | None = None,
    quick: bool = False,
    models: tuple[str, ...] | None = None,
    runs: tuple[Path, ...] = (),
    gpu_data: Path | None = None,
    work: Path | None = None,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> tuple[dict[str, Any], Path, Path]:
    """Measure everything and write ``bench.json`` + ``bench.md`` into ``out`` (default
    ``reports/benchmarks``); ``runs`` adds trained runs' models to the inference table. Returns the figures
    and the two paths."""
    from nsfw_lab.bench.report import default_dir
    from nsfw_lab.data.dataset import CuratedImageDataset
    from nsfw_lab.evaluate.loading import load_run

    s = BenchSettings.make(quick, models)
    work = work or config.DATA_DIR / "interim" / "bench"
    t0 = time.perf_counter()
    say(f"bench ({'quick' if quick else 'full'}): data path, {s.data_per_class * 5} proxy images of ~1.4 MP")
    data = data_speedup.measure(work, s.data_per_class, 224, s.data_batch, s.data_repeats)
    say(f"  data_speedup {data['speedup']:.2f}; training loop ({s.train_model} at {s.train_size} px)")
    train = train_step.measure(s.train_model, s.train_size, s.train_batch, s.train_steps, s.train_repeats)
    say(f"  train_step_ratio {train['ratio']:.3f}; CPU levers: precision variants, cached features")
    cpu_levers = {
        "precision": levers.precision(s.train_model, s.train_size, s.lever_batch, s.lever_steps, s.lever_repeats),
        "cached_probe": levers.cached_probe(s.probe_model, s.probe_size, s.probe_images, s.probe_epochs),
    }
    say(f"  bf16 + channels_last {cpu_levers['precision']['speedup_over_fp32']['bf16_channels_last']:.2f}x fp32; "
        f"cached features {cpu_levers['cached_probe']['speedup']:.1f}x a frozen backbone; inference: "
        f"{', '.join(s.models)}")  # fmt: skip
    agree_files = agreement_files(work, s.agreement_per_class)
    cache_files = CuratedImageDataset(work / "large-curated", "train").paths  # sorted by class: take every k-th
    calib_files = cache_files[:: max(1, len(cache_files) // 32)][:32]
    rows: list[dict[str, Any]] = []

    def sources() -> Iterator[tuple[str, Any, str]]:  # one model in memory at a time
        yield from ((name, *inference.bench_model(name, s.inference_px)) for name in s.models)
        for r in runs:
            loaded = load_run(r, device="cpu")
            yield f"run:{Path(r).name}", loaded.model.float().eval(), f"trained ({loaded.model.spec.name})"

    for name, model, weights in sources():
        size = model.spec.input_size
        calibration = _images(calib_files, size)
        if weights == "none":
            inference.estimate_bn_stats(model, calibration)
        rows += inference.measure_model(name, model, weights, _images(agree_files, size), calibration,
                                        s.latency_repeats, s.throughput_repeats, lambda v: say(f"  {v}"))  # fmt: skip
    onnx = inference.onnx_ratio(rows)
    say(f"  onnx_latency_ratio {onnx['ratio']:.3f}")
    if gpu_data is None and torch.cuda.is_available():  # end to end needs more images than the CPU part
        say("  GPU end-to-end data: 5 x 1600 proxy images (320 px), curated at 256 px")
        gpu_data = data_speedup.make_large_proxy(work / "gpu", 1600, 320)
    gpu_part = gpu.measure(gpu_data, quick, lambda v: say(f"  {v}"))
    bench: dict[str, Any] = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "machine": machine(),
        "versions": versions(),
        "settings": asdict(s),
        "data_speedup": data["speedup"],
        "train_step_ratio": train["ratio"],
        "onnx_latency_ratio": onnx["ratio"],
        "data": data,
        "train_step": train,
        "cpu_levers": cpu_levers,
        "onnx": onnx,
        "inference": rows,
        "peak_memory": {
            "process_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "inference_mib": {f"{r['model']} {r['variant']}": r.get("peak_mib") for r in rows},
        },
        "gpu": gpu_part,
    }
    bench["goals"] = {k: {"goal": f"{op} {goal}", "met": met(k, bench[k])} for k, (op, goal, _) in GOALS.items()}
    bench["seconds"] = round(time.perf_counter() - t0, 1)
    json_path, md_path = write(out or default_dir(), bench)
    return bench, json_path, md_path
