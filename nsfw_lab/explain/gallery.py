"""Test mistakes grouped by confusion pair, with Grad-CAM maps for the predicted and the true class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.loading import LoadedRun
from nsfw_lab.evaluate.metrics import mistakes
from nsfw_lab.explain.cam import GradCam, cam_layer, is_flat
from nsfw_lab.explain.measure import region_mass

# The confusions the real data is known for (label noise and near-identical content) come first.
FIRST_PAIRS: tuple[tuple[str, str], ...] = (("porn", "sexy"), ("sexy", "porn"), ("hentai", "drawings"),
                                            ("drawings", "hentai"))  # fmt: skip


def error_pairs(predictions: list[dict[str, str]], per_pair: int) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``{(true, predicted): mistakes}`` from a ``predictions_<split>.csv``: the known-confusable pairs first,
    then the others by how often they occur; within a pair the most confident mistakes first, ``per_pair`` kept.
    Each mistake gets ``confidence`` (the predicted class's probability) and ``count`` (the pair's size)."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in mistakes(predictions):  # most confident first
        pairs.setdefault((r["label"], r["prediction"]), []).append(r)

    def order(p: tuple[str, str]) -> tuple[int, int]:
        return (FIRST_PAIRS.index(p) if p in FIRST_PAIRS else len(FIRST_PAIRS), -len(pairs[p]))

    out = {}
    for p in sorted(pairs, key=order):
        out[p] = [{**r, "count": len(pairs[p])} for r in pairs[p][:per_pair]]
    return out


def load_images(root: Path, rows: Sequence[dict[str, Any]], size: int) -> torch.Tensor:
    """``(N, 3, size, size)`` uint8: the rows' images through the one eval transform (what the model saw)."""
    tf = eval_transform(size, normalize=False)
    out = []
    for r in rows:
        path = Path(root) / r["path"]
        if not path.is_file():
            raise NsfwLabError(f"{path}: missing; the predictions file does not match the curated folder {root}")
        with Image.open(path) as im:
            out.append(tf(im.convert("RGB")))
    return torch.stack(out)


def mistake_cams(
    run: LoadedRun, root: Path, rows: Sequence[dict[str, Any]], layer: str | None = None
) -> dict[str, Any]:
    """Images of ``rows`` with a CAM for the predicted class and one for the true class (``(N, H, W)`` each),
    from ``layer`` (default: the one :func:`nsfw_lab.explain.cam.cam_layer` picks for the run's input size).
    The true class's map may be flat (the model saw no evidence for it at all): ``true_flat`` says which."""
    images = load_images(root, rows, run.image_size)
    idx = {c: i for i, c in enumerate(run.classes)}
    layer = layer or cam_layer(run.model, run.image_size)
    with GradCam(run.model, layer) as cam:
        predicted = cam(images, [idx[r["prediction"]] for r in rows])
        true = cam(images, [idx[r["label"]] for r in rows], allow_flat=True)
    flat = [is_flat(c) for c in true]
    return {"images": images, "cam_predicted": predicted, "cam_true": true, "true_flat": flat, "rows": list(rows),
            "layer": layer}  # fmt: skip


def cam_mass_centre(cams: np.ndarray, border: float = 0.15) -> float:
    """Share of CAM mass inside the central region (excluding a ``border`` fraction on each side)."""
    return region_mass(cams, border)["centre"] if len(cams) else float("nan")
