"""Measuring: medians of repeated timings, side by side, peak memory, and the machine being measured."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def side_by_side(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, dict[str, Any]]:
    """Items per second of each function, measured in turns (A B, B A, A B, ...: the order reversed every other
    repeat) so that all see the same machine state; each function returns how many items it processed. Median
    and every repeat."""
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats):
        for name in list(fns) if r % 2 == 0 else list(reversed(fns)):
            fn = fns[name]
            t0 = time.perf_counter()
            n = fn()
            rates[name].append(n / (time.perf_counter() - t0))
    return {k: {"median": statistics.median(v), "repeats": [round(r, 2) for r in v]} for k, v in rates.items()}


@torch.inference_mode()
def median_call_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, repeats: int = 20, warmup: int = 1) -> float:
    """Median milliseconds of ``fn(x)`` over ``repeats`` timed calls after ``warmup`` untimed ones (CUDA work is
    waited for when ``x`` is on a CUDA device). The one latency timer of the project."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda *_: None)
    for _ in range(warmup):
        fn(x)
    sync(x.device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        sync(x.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def paired_ratio(rates: dict[str, dict[str, Any]], a: str, b: str) -> float:
    """Median over repeats of ``a``'s rate ÷ ``b``'s rate in the same repeat: a disturbance that hits one turn
    spoils one pair, not the whole comparison (each repeat measured both, one right after the other)."""
    return statistics.median(x / y for x, y in zip(rates[a]["repeats"], rates[b]["repeats"], strict=True))


def _rss_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None  # not Linux


class PeakMemory:
    """Peak growth of resident memory (sampled every 2 ms) over the block, in MiB (None where it cannot be read)."""

    def __init__(self) -> None:
        self.cpu_mib: float | None = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _rss_bytes() or 0)

    def __enter__(self) -> PeakMemory:
        self._start = _rss_bytes()
        self._peak = self._start or 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._start is not None:
            self._peak = max(self._peak, _rss_bytes() or 0)
            self.cpu_mib = round(max(0, self._peak - self._start) / 2**20, 1)


def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo (None where it cannot be read)."""
    try:
        pairs, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                phys = value.strip()
            elif key.strip() == "core id":
                pairs.add((phys, value.strip()))
        return len(pairs) or None
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores this process may use, memory, GPU if any."""
    from nsfw_lab.utils.parallel import default_workers

    mem = None
    with contextlib.suppress(ValueError, OSError, AttributeError):  # not POSIX
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {"name": p.name, "count": torch.cuda.device_count(), "memory_gib": round(p.total_memory / 2**30, 1)}
    return {
        "cpu": _cpu_model(),
        "cores": default_workers(),  # logical CPUs this process may run on (what the loaders size from)
        "physical_cores": _physical_cores(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem,
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()}",
    }


def _torchcodec_version() -> str:
    """TorchCodec's version, or why it is not used here (decoding then goes through Pillow)."""
    from importlib import metadata

    from nsfw_lab.data.decode import torchcodec_problem

    problem = torchcodec_problem()
    return metadata.version("torchcodec") if problem is None else f"unused: {problem}"


def versions() -> dict[str, str]:
    """Versions of everything that decides the figures."""
    import numpy
    import onnxruntime
    import PIL
    import torchvision

    from nsfw_lab import __version__

    return {
        "nsfw_lab": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchcodec": _torchcodec_version(),
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda or "none",
    }
