"""A Dataset over a curated folder (``nsfw-lab curate`` output), class weights and a DataLoader helper."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import DataLoader, Dataset

from nsfw_lab.config import SPLITS
from nsfw_lab.data.curate import read_report
from nsfw_lab.data.decode import check_decoder, decode_file, effective_decoder, read_encoded
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import read_csv
from nsfw_lab.utils.parallel import default_workers


def read_curated(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Class names and manifest rows of a curated folder, or a one-line error if it is not one."""
    root = Path(root)
    classes = read_report(root)["classes"]
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise NsfwLabError(f"{root}: not a curated dataset (no {manifest.name}); run `nsfw-lab curate SRC {root}`")
    return classes, read_csv(manifest)


class CuratedImageDataset(Dataset):
    """Images of one split of a curated dataset, as ``(transform(uint8 CHW tensor), label)``.

    Labels index ``self.classes`` (the sorted class folders, the same in every split). ``decoder`` is
    ``torchcodec`` (default) or ``pil`` (see :mod:`nsfw_lab.data.decode`); :meth:`encoded` gives the
    file's bytes for decoding on the GPU.
    """

    def __init__(
        self, root: Path | str, split: str, transform: Callable | None = None, decoder: str = "torchcodec"
    ) -> None:
        check_decoder(decoder)
        self.root = Path(root)
        self.classes, rows = read_curated(self.root)
        if split not in SPLITS:
            raise NsfwLabError(f"unknown split {split!r}; choose train, val or test")
        rows = [r for r in rows if r["split"] == split]
        self.split = split
        self.paths = [self.root / r["cached_path"] for r in rows]
        self.targets = [self.classes.index(r["class"]) for r in rows]
        self.rows = rows
        self.transform = transform
        # item access still decodes on the CPU; Pillow in place of TorchCodec where it does not load (said once)
        self.decoder = effective_decoder("torchcodec" if decoder == "gpu" else decoder)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = decode_file(self.paths[i], self.decoder)  # the cache holds clean RGB JPEGs (curation checked them)
        return (self.transform(img) if self.transform else img), self.targets[i]

    def encoded(self, i: int) -> torch.Tensor:
        """Image ``i``'s JPEG bytes (1-D uint8 tensor), for :func:`nsfw_lab.data.decode.decode_batch`."""
        return read_encoded(self.paths[i])

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
    """``requested``, else ``NSFW_LAB_WORKERS``, else this process's share of the cores less one for the main
    process, at most 8. The share: the CPUs this process may use, divided among torchrun's ``LOCAL_WORLD_SIZE``
    processes unless each was already bound to its own CPUs (fewer allowed than the machine has)."""
    if requested is not None:
        return requested
    if "NSFW_LAB_WORKERS" in os.environ:
        return int(os.environ["NSFW_LAB_WORKERS"])
    mine = default_workers()
    bound = mine < (os.cpu_count() or mine)
    share = mine if bound else mine // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return min(8, max(0, share - 1))


CUDA_BATCHES_IN_FLIGHT = 16  # what the workers keep ready for a GPU, whatever their number


def loader_options(workers: int | None, device: str) -> dict[str, Any]:
    """DataLoader settings sized from the machine: workers (:func:`loader_workers`), kept alive across epochs;
    on CUDA pinned memory and about 16 batches in flight (``prefetch_factor`` = 16 / workers, 2..8), so that a
    few workers still buffer a GPU's pauses; on the CPU 2 per worker (the workers share the cores with the
    model: a deeper queue only holds memory)."""
    n = loader_workers(workers)
    cuda = device.startswith("cuda")
    prefetch = min(8, max(2, -(-CUDA_BATCHES_IN_FLIGHT // max(1, n)))) if cuda else 2
    return {
        "num_workers": n,
        "pin_memory": cuda,
        "persistent_workers": n > 0,
        "prefetch_factor": prefetch if n > 0 else None,
    }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    workers: int | None = None,
    device: str = "cpu",
    drop_last: bool | None = None,
) -> DataLoader:
    """A DataLoader with sensible defaults: shuffled (seeded) for training, the rest from
    :func:`loader_options` (override the workers with ``NSFW_LAB_WORKERS``)."""
    opts = loader_options(workers, device)
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train if drop_last is None else drop_last,
        worker_init_fn=_seed_worker if opts["num_workers"] > 0 else None,
        generator=g,
        **opts,
    )
