"""The GPU part of the bench (only on CUDA): training images/s with bf16 autocast and channels_last,
from synthetic tensors already on the device and end to end from a curated cache through our loader,
with the cache decoded in the workers (TorchCodec) or on the GPU (nvJPEG), and how long the loop waited
for the loader (a share of the wall time near 0 means the GPU, not the input pipeline, sets the pace).

Each measurement is guarded: one that fails records its error and the others still run.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.utils.data import DataLoader

from nsfw_lab.bench.train_step import InMemoryLoader, make_step, our_loop, synthetic_batches
from nsfw_lab.models import build_model

SYNTHETIC = (("resnet50", 224, 256), ("resnet101", 224, 256), ("inception_v3", 299, 128))


def _guard(fn: Callable[[], dict]) -> dict:
    try:
        return fn()
    except Exception as exc:  # a benchmark must report, not stop
        return {"error": f"{type(exc).__name__}: {exc}", "where": traceback.format_exc(limit=3)[-600:]}


def _model(name: str, size: int, device: torch.device, compile: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(name, 5, "none", image_size=size).to(device, memory_format=torch.channels_last)
    if compile:
        m.compile()
    return m


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic(
    name: str, size: int, batch: int, steps: int, repeats: int, compile: bool = False, device: str = "cuda"
) -> dict:
    """Training images/s of our loop on device-resident uint8 batches (bf16, channels_last)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model = _model(name, size, dev, compile)
    batches = [(x.to(dev), y.to(dev)) for x, y in synthetic_batches(steps, batch, size)]
    run = our_loop(model, InMemoryLoader(batches), dev, torch.bfloat16, channels_last=True)
    t0 = time.perf_counter()
    run()  # warm-up (and compilation)
    _sync(dev)
    first = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        n = run()
        _sync(dev)
        rates.append(n / (time.perf_counter() - t0))
    peak = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None
    return {"model": name, "input_px": size, "batch": batch, "compile": compile,
            "images_per_s": statistics.median(rates), "repeats": [round(r, 1) for r in rates],
            "first_epoch_s": round(first, 2), "peak_gib": peak}  # fmt: skip


class TimedLoader:
    """A DataLoader that adds up the time the training loop waits for each batch (``limit`` batches an epoch)."""

    def __init__(self, loader: DataLoader, limit: int) -> None:
        self.loader, self.waited = loader, 0.0
        self.batch_sampler = SimpleNamespace(batches_per_epoch=min(limit, len(loader)))

    def __len__(self) -> int:
        return self.batch_sampler.batches_per_epoch

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        for _ in range(len(self)):
            t0 = time.perf_counter()
            batch = next(it)
            self.waited += time.perf_counter() - t0
            yield batch


def _timed(fn: Callable | None, total: list[float]) -> Callable | None:
    """``fn`` adding its wall time to ``total[0]`` (for the time spent decoding on the device)."""
    if fn is None:
        return None

    def run(batch: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(batch)
        total[0] += time.perf_counter() - t0
        return out

    return run


def end_to_end(
    cache: Path,
    decode: str,
    batch: int,
    max_batches: int,
    model_name: str = "resnet50",
    size: int = 224,
    device: str = "cuda",
    workers: int | None = None,
    epochs: int = 3,
) -> dict:
    """Our training loader + loop over a curated cache: images/s, the share of the wall time the loop waited for
    the loader, and (``--decode gpu``) the share spent issuing the decode; medians over ``epochs - 1`` epochs
    after a first one that starts the workers and lets cuDNN pick its kernels."""
    from nsfw_lab.train.data import batch_preparer, loader_over, train_val_datasets
    from nsfw_lab.train.loop import Running, train_epoch
    from nsfw_lab.train.sampler import ResumableBatchSampler

    dev = torch.device(device)
    train, _ = train_val_datasets(cache, size, (0.35, 1.0), (), decode)
    sampler = ResumableBatchSampler(len(train), batch, seed=0)
    loader = loader_over(train, sampler, workers, dev)
    model = _model(model_name, size, dev)
    s = make_step(model, dev, torch.bfloat16, True, max_batches)
    prepared = [0.0]
    s.prepare = _timed(batch_preparer(train, dev, True), prepared)
    runs = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        timed, prepared[0] = TimedLoader(loader, max_batches), 0.0
        _sync(dev)
        t0 = time.perf_counter()
        _, _, n = train_epoch(model, timed, s, Running.zeros(len(train), dev), 0, lambda k: False, "e2e", False)
        _sync(dev)
        wall = time.perf_counter() - t0
        runs.append({"images_per_s": n / wall, "loader_wait_share": timed.waited / wall,
                     "device_decode_share": prepared[0] / wall, "images": n})  # fmt: skip
    timed_runs = runs[1:] or runs
    med = {k: statistics.median(r[k] for r in timed_runs) for k in timed_runs[0]}
    return {"model": model_name, "input_px": size, "decode": decode, "batch": batch, "workers": loader.num_workers,
            "epochs_timed": len(timed_runs), **{k: round(v, 3) for k, v in med.items()}}  # fmt: skip


def measure(cache: Path | None, quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """The ``gpu`` section: ``{"available": False}`` without CUDA."""
    if not torch.cuda.is_available():
        return {"available": False, "note": "no CUDA device on this machine: the GPU part was not run"}
    torch.backends.cudnn.benchmark = True
    steps, repeats = (10, 3) if quick else (30, 5)
    out: dict[str, Any] = {"available": True, "device": torch.cuda.get_device_name(0), "synthetic": []}
    for name, size, batch in SYNTHETIC:
        progress(f"gpu synthetic {name}")
        out["synthetic"].append(_guard(lambda: synthetic(name, size, batch, steps, repeats)))  # noqa: B023
    progress("gpu synthetic resnet50 compiled")
    out["synthetic"].append(_guard(lambda: synthetic("resnet50", 224, 256, steps, repeats, compile=True)))
    if cache is not None:
        out["end_to_end"] = []
        for decode in ("torchcodec", "gpu"):
            progress(f"gpu end to end, decode {decode}")
            out["end_to_end"].append(_guard(lambda: end_to_end(cache, decode, 256, 10 if quick else 30)))  # noqa: B023
    return out
