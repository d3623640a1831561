"""Explanations measured: the pointing game and energy-in-box against the proxy's evidence boxes, where CAM
mass falls, and ROAD / confidence-drop faithfulness, each next to a random CAM and a centre prior.

The proxy records the box of each image's target motif in its source manifest; :func:`proxy_truth` maps it
through the curation cache and the eval transform (aspect-preserving resize, centre crop) into the model's
input pixels, so a CAM and its box share one coordinate frame. Real scraped data has no boxes: the measured
explanations are a proxy-only check of the method, which is the point of having a proxy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nsfw_lab.data.curate import read_report
from nsfw_lab.data.transforms import EVAL_CROP_RATIO
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.metrics import bootstrap_ci
from nsfw_lab.utils.fsutil import read_csv

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
POINTING_TOLERANCE = 15 / 224  # the pointing game's usual 15 px at 224 px, as a share of the input side


def box_to_input(box: Box, width: int, height: int, size: int, crop_ratio: float = EVAL_CROP_RATIO) -> Box | None:
    """``box`` in a ``width`` x ``height`` image, in the ``size`` x ``size`` input the eval transform makes
    (short side to ``size / crop_ratio``, centre crop); None when the crop cuts it away entirely."""
    scale = round(size / crop_ratio) / min(width, height)
    ox, oy = (width * scale - size) / 2, (height * scale - size) / 2
    x0, y0, x1, y1 = (box[0] * scale - ox, box[1] * scale - oy, box[2] * scale - ox, box[3] * scale - oy)
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(size), x1), min(float(size), y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _parse_box(text: str) -> Box | None:
    return tuple(float(v) for v in text.split()) if text.strip() else None  # type: ignore[return-value]


def proxy_truth(curated: Path) -> dict[str, dict[str, Any]]:
    """``{cached_path: {"box", "watermark", "width", "height", "source_path"}}`` for a curated *proxy*: the
    evidence box (original pixels, None when the image has no motif) and watermark flag from the generator's
    manifest. A one-line error for data without that ground truth (real scraped data)."""
    curated = Path(curated)
    report = read_report(curated)
    source = Path(report.get("source", ""))
    synth = source / "manifest.csv"
    rows = read_csv(synth) if synth.is_file() else []
    if not rows or "evidence_box" not in rows[0]:
        raise NsfwLabError(
            f"{curated}: its source {source} has no proxy manifest with evidence boxes; "
            "measured explanations need the synthetic proxy (`nsfw-lab synth`)"
        )
    by_file = {r["file"]: r for r in rows}
    out = {}
    for r in read_csv(curated / "manifest.csv"):
        s = by_file.get(r["source_path"])
        if s is None:
            continue
        out[r["cached_path"]] = {
            "box": _parse_box(s["evidence_box"]),
            "watermark": s["watermark"] == "1",
            "width": int(r["width"]),
            "height": int(r["height"]),
            "source_path": r["source_path"],
        }
    return out


def input_boxes(truth: dict[str, dict[str, Any]], paths: Sequence[str], size: int) -> list[Box | None]:
    """The evidence box of each ``path`` in ``size`` px input coordinates (None: no motif, or cropped away)."""
    out = []
    for p in paths:
        t = truth.get(p)
        if t is None:
            raise NsfwLabError(f"{p}: not in the curated proxy's manifest; the predictions and the data differ")
        out.append(box_to_input(t["box"], t["width"], t["height"], size) if t["box"] else None)
    return out


def pointing_hits(cams: np.ndarray, boxes: Sequence[Box], tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """One bool per CAM: its maximum lies in its box grown by ``tolerance`` x the input side on every side."""
    hits = np.zeros(len(cams), bool)
    for i, (cam, b) in enumerate(zip(cams, boxes, strict=True)):
        y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
        t = tolerance * cam.shape[-1]
        hits[i] = b[0] - t <= x + 0.5 < b[2] + t and b[1] - t <= y + 0.5 < b[3] + t
    return hits


def energy_in_box(cams: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Share of each CAM's mass inside its box (pixel centres inside; 0 for an all-zero CAM)."""
    out = np.zeros(len(cams))
    for i, (cam, b) in enumerate(zip(cams, boxes, strict=True)):
        h, w = cam.shape
        ys, xs = np.arange(h)[:, None] + 0.5, np.arange(w)[None, :] + 0.5
        inside = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
        total = float(cam.sum())
        out[i] = float(cam[inside].sum()) / total if total > 0 else 0.0
    return out


def random_cams(n: int, size: int, grid: int, seed: int = 0) -> np.ndarray:
    """Baseline: uniform noise at a ``grid`` x ``grid`` layer resolution, upsampled like a CAM, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, grid, grid, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    up = up - up.amin((1, 2), keepdim=True)
    return (up / up.amax((1, 2), keepdim=True).clamp_min(1e-12)).numpy()


def centre_prior(n: int, size: int, sigma: float = 0.25) -> np.ndarray:
    """Baseline: the same centred Gaussian (``sigma`` x the side) for every image; photographers centre things."""
    c = (np.arange(size) + 0.5 - size / 2) / (sigma * size)
    m = np.exp(-0.5 * (c[:, None] ** 2 + c[None, :] ** 2)).astype(np.float32)
    return np.repeat(m[None], n, axis=0)


def _rate(values: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    v = np.asarray(values, float)
    mean = lambda a, _b: float(np.mean(a)) if len(a) else 0.0  # noqa: E731
    return {"mean": float(v.mean()) if len(v) else None, "ci95": bootstrap_ci(v, v, mean, n_boot, seed)}


def pointing_game(
    cams: np.ndarray,
    boxes: Sequence[Box],
    grid: int,
    tolerance: float = POINTING_TOLERANCE,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Hit rate and energy-in-box (means with bootstrap 95% CIs) of ``cams`` and of the two baselines on the
    same boxes: ``random`` (noise at the layer's ``grid``) and ``centre`` (a centred Gaussian)."""
    n, size = len(cams), (cams.shape[-1] if len(cams) else 1)
    out: dict[str, Any] = {"n": n, "tolerance_px": round(tolerance * size, 2)}
    for name, maps in (("cam", cams), ("random", random_cams(n, size, grid, seed)), ("centre", centre_prior(n, size))):
        out[name] = {
            "pointing": _rate(pointing_hits(maps, boxes, tolerance), n_boot, seed),
            "energy": _rate(energy_in_box(maps, boxes), n_boot, seed),
        }
    return out


def region_mass(cams: np.ndarray, border: float = 0.15, corner: float = 0.25) -> dict[str, float]:
    """Where CAM mass falls, as mean shares over ``cams``: the centre (inside a ``border`` margin), the
    border band, and each ``corner`` x ``corner`` corner square (``top_left`` ...). Uniform maps give
    ``centre = (1 - 2 border)^2`` and ``corner^2`` per corner."""
    if not len(cams):
        return {}
    h, w = cams.shape[-2:]
    total = np.maximum(cams.sum(axis=(-2, -1)), 1e-12)
    bh, bw, ch, cw = round(h * border), round(w * border), round(h * corner), round(w * corner)
    share = lambda part: float(np.mean(part.sum(axis=(-2, -1)) / total))  # noqa: E731
    centre = share(cams[..., bh : h - bh, bw : w - bw])
    return {
        "centre": centre,
        "border": 1 - centre,
        "top_left": share(cams[..., :ch, :cw]),
        "top_right": share(cams[..., :ch, w - cw :]),
        "bottom_left": share(cams[..., h - ch :, :cw]),
        "bottom_right": share(cams[..., h - ch :, w - cw :]),
    }


def faithfulness(
    model: torch.nn.Module,
    images: torch.Tensor,
    cams: np.ndarray,
    classes: Sequence[int],
    percentiles: Sequence[int] = (20, 40, 60, 80),
    seed: int = 0,
) -> dict[str, float]:
    """grad-cam's ROAD (combined: least- minus most-relevant-first, averaged over ``percentiles``; higher =
    more faithful) and the confidence change when the image is multiplied by the CAM (probability after minus
    before: closer to 0, or higher, = the CAM keeps what the model needs), on the softmax probability of
    ``classes``; means over the images."""
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    x = x.to(next(model.parameters()).device)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    was_training = model.training
    model.eval()
    try:
        torch.manual_seed(seed)
        np.random.seed(seed)  # ROAD's imputer adds numpy noise
        road = ROADCombined(percentiles=list(percentiles))(x, cams, targets, model)
        drop = CamMultImageConfidenceChange()(x, cams, targets, model)
    finally:
        model.train(was_training)
    return {"road_combined": float(np.mean(road)), "confidence_change": float(np.mean(drop))}
