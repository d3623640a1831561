"""Shortcut detection: does a model read the label off a watermark instead of the content?

Three independent lines of evidence, on a proxy made with ``--shortcut`` (a badge in the bottom-right
fixed place of most images of one class and a few of the others):

(a) behaviour: accuracy when each test image's badge is removed (its badge-free twin, rendered from the same
    seeds) and how often other classes' images flip to the shortcut class when the badge is stamped on them;
(b) CAM mass inside the badge's box on badged images of the shortcut class;
(c) an automatic check that needs no ground truth, usable on real data: :func:`detect_shortcut` flags a
    class when one fixed cell of a grid takes a large share of its CAM mass across the class's images
    (real evidence moves around the frame; a watermark, a caption bar or a site logo does not).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nsfw_lab.data.curate import cache_image
from nsfw_lab.data.synth.render import draw_watermark
from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.evaluate.loading import LoadedRun
from nsfw_lab.explain.measure import Box, box_to_input

SHORTCUT_GRID = 4  # cells per side for detect_shortcut
SHORTCUT_MIN_SHARE = 2 / SHORTCUT_GRID**2  # a class is flagged when one fixed cell holds twice the uniform share
SHORTCUT_MIN_LIFT = 3.0  # ... of its CAM mass, and three times the share the other classes' CAMs put there


def region_shares(cams: np.ndarray, grid: int = SHORTCUT_GRID) -> np.ndarray:
    """``(N, grid, grid)``: each CAM's share of mass per cell of a ``grid`` x ``grid`` partition."""
    _, h, w = cams.shape
    ys, xs = np.linspace(0, h, grid + 1).round().astype(int), np.linspace(0, w, grid + 1).round().astype(int)
    cells = np.array(
        [[cams[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].sum(axis=(1, 2)) for j in range(grid)] for i in range(grid)]
    )
    return cells.transpose(2, 0, 1) / np.maximum(cams.sum(axis=(1, 2)), 1e-12)[:, None, None]


def detect_shortcut(
    cams: np.ndarray,
    labels: Sequence[str],
    grid: int = SHORTCUT_GRID,
    min_share: float = SHORTCUT_MIN_SHARE,
    min_lift: float = SHORTCUT_MIN_LIFT,
    min_images: int = 5,
) -> dict[str, Any]:
    """For each class (with at least ``min_images`` CAMs): the grid cell where the class's mean share of CAM
    mass most exceeds the other classes' (``share`` vs ``others_share``, ratio ``lift``) and the share of its
    CAMs that peak there (``peak_in_cell``).

    A class is flagged when ``share >= min_share`` and ``lift >= min_lift``. Real evidence moves with the
    content, so a class's mass spreads over the frame; a centre bias is shared by every class (lift near 1);
    a watermark, caption bar or site logo that comes with one class piles that class's mass into a cell the
    others leave alone. ``flags`` lists the flagged classes; ``shortcut_detected`` is true when there is one."""
    shares = region_shares(cams, grid).reshape(len(cams), -1)
    labels = np.asarray(labels)
    peaks = shares.argmax(1)
    per_class: dict[str, Any] = {}
    for c in sorted(set(labels.tolist())):
        m = labels == c
        if m.sum() < min_images:
            continue
        mine = shares[m].mean(0)
        others = shares[~m].mean(0) if (~m).any() else np.full(grid * grid, 1 / grid**2)
        lift = mine / np.maximum(others, 0.5 / grid**2)  # floor: a cell the others never use is not infinitely telling
        top = int(lift.argmax())
        per_class[c] = {
            "cell": list(divmod(top, grid)),
            "share": float(mine[top]),
            "others_share": float(others[top]),
            "lift": float(lift[top]),
            "peak_in_cell": float(np.mean(peaks[m] == top)),
            "n": int(m.sum()),
        }
    flags = [{"class": c, **v} for c, v in per_class.items() if v["share"] >= min_share and v["lift"] >= min_lift]
    return {
        "shortcut_detected": bool(flags),
        "flags": flags,
        "per_class": per_class,
        "grid": grid,
        "min_share": min_share,
        "min_lift": min_lift,
        "uniform_share": 1 / grid**2,
    }


def watermark_box(width: int, height: int, size: int) -> Box | None:
    """Where the generator's badge lands in the ``size`` px model input of a ``width`` x ``height`` image."""
    return box_to_input(draw_watermark(Image.new("RGB", (width, height))), width, height, size)


def stamped(img: Image.Image) -> Image.Image:
    """A copy of ``img`` with the generator's badge drawn where it draws it (the shortcut moved onto this
    image exactly as training saw it: the same place, then the same cache resize and eval crop)."""
    out = img.convert("RGB").copy()
    draw_watermark(out)
    return out


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise NsfwLabError(f"{path}: missing; regenerate the shortcut proxy (nsfw_lab.data.prepare.prepare_shortcut)")
    with Image.open(path) as im:
        return im.convert("RGB")


def counterfactual_images(
    curated: Path,
    twin: Path,
    rows: Sequence[dict[str, str]],
    truth: dict[str, dict[str, Any]],
    size: int,
    short_side: int,
) -> dict[str, torch.Tensor]:
    """``(N, 3, size, size)`` uint8 versions of the test ``rows`` (``path`` = cached path): ``original``;
    ``removed``, the badge-free twin of each file (through the same cache resize); ``stamped``, the original
    with the badge drawn on it (:func:`stamped`)."""
    tf = eval_transform(size, normalize=False)
    out: dict[str, list[torch.Tensor]] = {"original": [], "removed": [], "stamped": []}
    for r in rows:
        img = _open(Path(curated) / r["path"])
        twin_img = _open(Path(twin) / truth[r["path"]]["source_path"])
        twin_img = Image.open(io.BytesIO(cache_image(twin_img, short_side, 95))).convert("RGB")
        for name, im in (("original", img), ("removed", twin_img), ("stamped", stamped(img))):
            out[name].append(tf(im))
    empty = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return {k: torch.stack(v) if v else empty for k, v in out.items()}


@torch.inference_mode()
def predict_classes(run: LoadedRun, images: torch.Tensor) -> np.ndarray:
    """Predicted class index per image, in batches of 64."""
    return (
        np.concatenate(
            [run.model(images[i : i + 64].to(run.device)).argmax(1).cpu().numpy() for i in range(0, len(images), 64)]
        )
        if len(images)
        else np.zeros(0, int)
    )


def shortcut_effect(
    run: LoadedRun, sets: dict[str, torch.Tensor], labels: Sequence[str], badged: Sequence[bool], shortcut_class: str
) -> dict[str, float | None]:
    """Behavioural evidence (a) for one model on the sets of :func:`counterfactual_images`: accuracy on the
    original and badge-removed images; recall of ``shortcut_class`` on its badged images before and after
    the badge is removed; share of the *other* classes' images predicted as ``shortcut_class`` before and
    after the badge is stamped on them."""
    idx = {c: i for i, c in enumerate(run.classes)}
    y = np.array([idx[c] for c in labels])
    k = idx[shortcut_class]
    badged_k = np.asarray(badged, bool) & (y == k)
    other = y != k
    pred = {name: predict_classes(run, x) for name, x in sets.items()}
    rate = lambda m, v: float(v[m].mean()) if m.any() else None  # noqa: E731
    return {
        "accuracy_original": rate(np.ones_like(y, bool), pred["original"] == y),
        "accuracy_removed": rate(np.ones_like(y, bool), pred["removed"] == y),
        "recall_badged": rate(badged_k, pred["original"] == k),
        "recall_badge_removed": rate(badged_k, pred["removed"] == k),
        "others_as_shortcut_class": rate(other, pred["original"] == k),
        "others_as_shortcut_class_stamped": rate(other, pred["stamped"] == k),
        "n": len(y),
        "n_badged": int(badged_k.sum()),
    }
