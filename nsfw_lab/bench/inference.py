"""The per-model inference table: batch-1 latency and batch-32 throughput of each model in eager fp32,
channels_last, TorchScript, ONNX Runtime and ONNX Runtime int8, with peak memory and top-1 agreement with
eager fp32 on proxy images.

int8 is ONNX Runtime's static quantisation (QDQ, per-channel int8 weights, uint8 activations calibrated on
proxy images from another set than the agreement images); it enters the table only when it keeps top-1
agreement >= 99% on images that eager fp32 sorts into more than one class, otherwise its agreement is still
reported with the reason.

The models have random weights unless the ImageNet file is already in torch's cache (no download is
attempted). Latency does not depend on the weights; agreement does. A freshly initialised network's batch
norm statistics (mean 0, variance 1) let activations drift through the depth until every image gets the
same class, which would make any agreement trivially 100%; so random-weight models first get their batch
norm statistics estimated on the calibration images (activations in realistic ranges, predictions spread
over the classes; the table says how many classes eager predicts). A trained run (``--run``) is the real
test of int8.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from nsfw_lab.bench.measure import PeakMemory, median_call_ms
from nsfw_lab.evaluate.export import OnnxModel, load_exported, onnx_bytes, torchscript_bytes
from nsfw_lab.models import NsfwModel, build_model, imagenet_file

INT8_MIN_AGREEMENT = 0.99
VARIANTS = ("eager", "channels_last", "torchscript", "onnxruntime", "int8")


def _weights(name: str) -> str:
    return "imagenet" if name != "baseline" and imagenet_file(name).is_file() else "none"


def bench_model(name: str, size: int | None = None) -> tuple[NsfwModel, str]:
    """``name`` for benchmarking (eval mode, fp32) and the weights it got."""
    w = _weights(name)
    torch.manual_seed(0)
    m = build_model(name, 5, w, image_size=size or (224 if name == "baseline" else None))
    return m.float().eval(), w


@torch.no_grad()
def estimate_bn_stats(model: NsfwModel, images: torch.Tensor, batch: int = 16) -> None:
    """Batch norm running statistics as the plain average over ``images`` (see the module docstring)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for i in range(0, len(images), batch):
        model(images[i : i + batch])
    model.eval()


class _Calibration(CalibrationDataReader):
    """onnxruntime's calibration reader over uint8 batches of one image."""

    def __init__(self, images: torch.Tensor) -> None:
        self.it = iter([{"images": images[i : i + 1].numpy()} for i in range(len(images))])

    def get_next(self) -> dict | None:
        return next(self.it, None)


def quantize_int8(onnx_path: Path, out: Path, calibration: torch.Tensor) -> Path:
    """Static int8 quantisation of an ONNX file (see the module docstring)."""
    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), _Calibration(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    pre.unlink(missing_ok=True)
    return out


def variants(model: NsfwModel, size: int, calibration: torch.Tensor, tmp: Path) -> dict[str, Callable]:
    """Each variant as a callable on uint8 ``(N, 3, size, size)`` batches returning logits."""
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    ts_path = tmp / "m.pt"
    ts_path.write_bytes(torchscript_bytes(model, example))
    onnx_path = tmp / "m.onnx"
    onnx_path.write_bytes(onnx_bytes(model, example, {}))
    return {
        "eager": model,
        "channels_last": lambda x: cl_model(x.contiguous(memory_format=torch.channels_last)),
        "torchscript": load_exported(ts_path, "torchscript"),
        "onnxruntime": OnnxModel(onnx_path),
        "int8": OnnxModel(quantize_int8(onnx_path, tmp / "m.int8.onnx", calibration)),
    }


@torch.inference_mode()
def _top1(fn: Callable, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    return np.concatenate([fn(images[i : i + batch]).argmax(1).numpy() for i in range(0, len(images), batch)])


LATENCY_BLOCK = 4  # timed batch-1 calls per variant per turn, after one untimed call


@torch.inference_mode()
def measure_variants(fns: dict[str, Callable], size: int, latency_turns: int, throughput_turns: int) -> dict:
    """Per variant: the growth of resident memory over an untimed pass (batch 1 and 32; approximate, allocators
    may keep memory freed earlier), then batch-1 latency (ms) and batch-32 images/s, medians over turns taken
    across the variants (the order reversed every other turn). In each latency turn a variant first makes one
    untimed call (right after another runtime, its threads pay for waking up, and on few cores the previous
    runtime's spinning threads still compete), then the median of ``LATENCY_BLOCK`` timed calls is kept."""
    x1 = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    x32 = torch.randint(0, 256, (32, 3, size, size), dtype=torch.uint8)
    out: dict[str, dict[str, Any]] = {}
    for v, fn in fns.items():
        with PeakMemory() as mem:
            fn(x1), fn(x32), fn(x1)  # also the warm-up
        out[v] = {"peak_mib": mem.cpu_mib}

    def in_turns(x: torch.Tensor, turns: int, block: int, untimed: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {v: [] for v in fns}
        for r in range(turns):
            for v in list(fns) if r % 2 == 0 else list(reversed(fns)):
                times[v].append(median_call_ms(fns[v], x, block, warmup=untimed) / 1000)
        return times

    lat = in_turns(x1, latency_turns, LATENCY_BLOCK, 1)
    thr = in_turns(x32, throughput_turns, 1, 0)  # a batch of 32 takes long enough not to feel the switch
    for v in fns:
        out[v] |= {"batch1_ms": round(statistics.median(lat[v]) * 1000, 3),
                   "batch1_ms_repeats": [round(t * 1000, 3) for t in lat[v]],
                   "batch32_images_per_s": round(32 / statistics.median(thr[v]), 2)}  # fmt: skip
    return out


def measure_model(
    name: str,
    model: NsfwModel,
    weights: str,
    agreement_images: torch.Tensor,
    calibration: torch.Tensor,
    latency_repeats: int,
    throughput_repeats: int,
    progress: Callable[[str], None] = lambda s: None,
) -> list[dict[str, Any]]:
    """One row per variant of ``model`` (named ``name`` in the table)."""
    size = model.spec.input_size
    with tempfile.TemporaryDirectory(prefix="nsfw-lab-bench-") as d:
        progress(f"{name}: exports and int8 calibration")
        fns = variants(model, size, calibration, Path(d))
        progress(f"{name}: {', '.join(VARIANTS)} in turns")
        timings = measure_variants(fns, size, latency_repeats, throughput_repeats)
        reference = _top1(model, agreement_images)
        rows = []
        for v in VARIANTS:
            agree = float((_top1(fns[v], agreement_images) == reference).mean())
            row = {"model": name, "input_px": size, "weights": weights, "variant": v, **timings[v],
                   "agreement": round(agree, 4), "agreement_images": len(agreement_images),
                   "classes_predicted": len(np.unique(reference)), "kept": True}  # fmt: skip
            if v == "int8" and agree < INT8_MIN_AGREEMENT:
                row |= {"kept": False, "why": f"top-1 agreement {agree:.1%} < {INT8_MIN_AGREEMENT:.0%}"}
            elif v == "int8" and row["classes_predicted"] < 2:
                row |= {"kept": False, "why": "eager predicts one class for every image: agreement shows nothing"}
            rows.append(row)
    return rows


def onnx_ratio(rows: list[dict[str, Any]], model: str = "resnet50") -> dict[str, Any]:
    """The ``onnx`` section: ONNX Runtime batch-1 latency over eager fp32 for ``model``, the median of the
    ratios of the two measured in the same turn."""
    by = {r["variant"]: r for r in rows if r["model"] == model}
    ort, eager = by["onnxruntime"]["batch1_ms_repeats"], by["eager"]["batch1_ms_repeats"]
    return {
        "ratio": statistics.median(o / e for o, e in zip(ort, eager, strict=True)),
        "model": model,
        "onnxruntime_batch1_ms": by["onnxruntime"]["batch1_ms"],
        "eager_batch1_ms": by["eager"]["batch1_ms"],
    }
