"""``data_speedup``: our training loader over the curated cache against a plain ImageFolder + PIL pipeline
over the original large JPEGs.

Both produce normalised float batches of the same shape, ``(B, 3, S, S)``, with the same augmentation
(RandomResizedCrop with the training scale range, horizontal flip), the same number of workers and the
same DataLoader settings (persistent workers, prefetch), over the same images. Ours: the curated,
pre-resized cache, decoded by TorchCodec in the workers, uint8 through the loader, normalised after
(where the training engine does it, on the device). The plain one: ``torchvision.datasets.ImageFolder``
opening each original with PIL, cropping and resizing the PIL image, then ``ToTensor`` + ``Normalize`` in
the workers, as most published pipelines do.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision.transforms import v2

from nsfw_lab.bench.measure import paired_ratio, side_by_side
from nsfw_lab.data.dataset import CuratedImageDataset, loader_options
from nsfw_lab.data.decode import decode_file, torchcodec_problem
from nsfw_lab.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from nsfw_lab.models.wrapper import ModelSpec, NsfwModel
from nsfw_lab.train.data import train_val_datasets
from nsfw_lab.train.sampler import ResumableBatchSampler

CROP_SCALE = (0.35, 1.0)  # TrainConfig's default
_SPEC = ModelSpec("identity", 5, 224, 1, "", (), (), "none")


def make_large_proxy(root: Path, per_class: int, short_side: int, seed: int = 0, progress: bool = False) -> Path:
    """Proxy JPEGs at ``short_side`` px (1000: 1.3-1.5 megapixels), clean (no planted defects), and their
    curated cache at 256 px with every image in the train split. Returns the curated folder."""
    from nsfw_lab.data.curate import CurateConfig
    from nsfw_lab.data.prepare import ensure_curated, ensure_proxy
    from nsfw_lab.data.synth import SynthConfig

    raw, cached = root / "large", root / "large-curated"
    cfg = SynthConfig(per_class=per_class, size=short_side, seed=seed, near_dup_rate=0, exact_dup_rate=0,
                      conflict_rate=0, corrupt_rate=0, placeholder_rate=0, label_noise=0)  # fmt: skip
    ensure_proxy(raw, cfg, progress)
    ensure_curated(raw, cached, CurateConfig(val=0, test=0, short_side=256), progress)
    return cached


def _ours(cached: Path, size: int, batch: int, workers: int | None, epochs: int) -> Callable[[], int]:
    train, _ = train_val_datasets(cached, size, CROP_SCALE)
    normalise = NsfwModel(torch.nn.Identity(), _SPEC).normalize  # what the engine does on the device
    sampler = ResumableBatchSampler(len(train), batch, seed=0)
    loader = DataLoader(train, batch_sampler=sampler, **loader_options(workers, "cpu"))
    epoch = [0]

    def run() -> int:
        n = 0
        for _ in range(epochs):
            epoch[0] += 1
            sampler.set_epoch(epoch[0])
            for x, _, _ in loader:
                n += len(normalise(x))
        return n

    return run


def _plain(
    large: Path, sources: set[str], size: int, batch: int, workers: int | None, epochs: int
) -> Callable[[], int]:
    tf = v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ])  # fmt: skip
    folder = datasets.ImageFolder(str(large), transform=tf)
    keep = [i for i, (p, _) in enumerate(folder.samples) if Path(p).resolve().as_posix() in sources]
    opts = loader_options(workers, "cpu")
    loader = DataLoader(Subset(folder, keep), batch_size=batch, shuffle=True, drop_last=True, **opts)

    def run() -> int:
        return sum(len(x) for _ in range(epochs) for x, _ in loader)

    return run


def decode_rates(cached: Path, large: Path, n: int = 40) -> dict[str, float]:
    """Milliseconds per image to decode a 256 px cache file (TorchCodec, Pillow) and an original (Pillow)."""
    cache_files = CuratedImageDataset(cached, "train").paths[:n]
    originals = sorted(large.glob("*/*.jpg"))[:n]

    def ms(files: list[Path], decoder: str) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for f in files:
                decode_file(f, decoder)
            times.append((time.perf_counter() - t0) / max(1, len(files)) * 1000)
        return round(statistics.median(times), 3)

    return {
        "cache_torchcodec_ms": None if torchcodec_problem() else ms(cache_files, "torchcodec"),
        "cache_pil_ms": ms(cache_files, "pil"),
        "original_pil_ms": ms(originals, "pil"),
    }


def measure(
    root: Path, per_class: int, size: int, batch: int, repeats: int, epochs: int = 2, workers: int | None = None
) -> dict:
    """The ``data`` section of the bench (``speedup`` is the ``data_speedup`` key). Each timed repeat runs
    ``epochs`` passes over the images (so that filling the workers' queues is a small part of it)."""
    from nsfw_lab.data.dataset import read_curated

    cached = make_large_proxy(root, per_class, 1000)
    large = root / "large"
    _, rows = read_curated(cached)
    sources = {(large / r["source_path"]).resolve().as_posix() for r in rows if r["split"] == "train"}
    ours = _ours(cached, size, batch, workers, epochs)
    plain = _plain(large, sources, size, batch, workers, epochs)
    ours(), plain()  # warm-up: workers started, files in the page cache for both
    rates = side_by_side({"ours": ours, "plain": plain}, repeats)
    mp = statistics.median(int(r["width"]) * int(r["height"]) for r in rows) / 1e6
    return {
        "speedup": paired_ratio(rates, "ours", "plain"),
        "ours_images_per_s": rates["ours"],
        "plain_images_per_s": rates["plain"],
        "images": len(sources),
        "original_megapixels_median": round(mp, 2),
        "cache_short_side": 256,
        "batch_shape": [batch, 3, size, size],
        "augmentation": f"RandomResizedCrop({size}, scale={CROP_SCALE}) + horizontal flip",
        "workers": loader_options(workers, "cpu")["num_workers"],
        "decode": decode_rates(cached, large),
        "repeats": repeats,
        "epochs_per_repeat": epochs,
    }
