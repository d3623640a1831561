"""A Dataset over a curated folder (``nsfw-lab curate`` output), class weights and a DataLoader helper."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import pil_to_tensor

from nsfw_lab.data.curate import REPORT_NAME
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.fsutil import read_csv
from nsfw_lab.parallel import default_workers


def read_curated(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Class names and manifest rows of a curated folder, or a one-line error if it is not one."""
    root = Path(root)
    report, manifest = root / REPORT_NAME, root / "manifest.csv"
    if not report.is_file() or not manifest.is_file():
        raise NsfwLabError(f"{root}: not a curated dataset (no {REPORT_NAME}); run `nsfw-lab curate SRC {root}`")
    classes = json.loads(report.read_text())["classes"]
    return classes, read_csv(manifest)


class CuratedImageDataset(Dataset):
    """Images of one split of a curated dataset, as ``(transform(uint8 CHW tensor), label)``.

    Labels index ``self.classes`` (the sorted class folders, the same in every split).
    """

    def __init__(self, root: Path | str, split: str, transform: Callable | None = None) -> None:
        self.root = Path(root)
        self.classes, rows = read_curated(self.root)
        if split not in ("train", "val", "test"):
            raise NsfwLabError(f"unknown split {split!r}; choose train, val or test")
        rows = [r for r in rows if r["split"] == split]
        self.split = split
        self.paths = [self.root / r["cached_path"] for r in rows]
        self.targets = [self.classes.index(r["class"]) for r in rows]
        self.rows = rows
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:  # the cache holds clean RGB JPEGs (curation checked them)
            img = pil_to_tensor(im.convert("RGB"))
        return (self.transform(img) if self.transform else img), self.targets[i]

    def class_counts(self) -> list[int]:
        """Images per class, in ``self.classes`` order."""
        return np.bincount(self.targets, minlength=len(self.classes)).tolist()


def class_weights(dataset: CuratedImageDataset) -> torch.Tensor:
    """Inverse-frequency ("balanced") loss weights, one per class; classes absent from the split get 0."""
    counts = np.array(dataset.class_counts())
    present = np.flatnonzero(counts)
    w = np.zeros(len(counts))
    w[present] = compute_class_weight("balanced", classes=present, y=np.array(dataset.targets))
    return torch.tensor(w, dtype=torch.float32)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def loader_workers(requested: int | None = None) -> int:
    """``requested``, else ``NSFW_LAB_WORKERS``, else up to 8 but one core left for the main process."""
    if requested is not None:
        return requested
    return int(os.environ.get("NSFW_LAB_WORKERS", min(8, max(0, default_workers() - 1))))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    workers: int | None = None,
    device: str = "cpu",
    drop_last: bool | None = None,
) -> DataLoader:
    """A DataLoader with sensible defaults: shuffled (seeded) for training, worker count from the
    machine (override with ``NSFW_LAB_WORKERS``), pinned memory and prefetching on CUDA, persistent
    workers when there are workers."""
    workers = loader_workers(workers)
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train if drop_last is None else drop_last,
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=g,
    )
