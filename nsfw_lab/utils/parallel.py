"""Ordered parallel map with a progress bar, shared by the data steps (synth, curate)."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from nsfw_lab.utils.progress import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes to use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def imap_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    total: int | None = None,
    workers: int | None = None,
    desc: str = "",
    progress: bool = True,
    chunksize: int = 8,
) -> Iterator[R]:
    """Yield ``fn(item)`` in input order, computed by ``workers`` processes (1 = in this process).

    Results stream: only a bounded window of them is in memory at once. The order, and so the
    output of every caller, does not depend on the number of workers.
    """
    workers = default_workers() if workers is None else max(1, workers)
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, mininterval=0.5) as bar:
        if workers == 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for result in pool.imap(fn, items, chunksize=chunksize):
                yield result
                bar.update()
