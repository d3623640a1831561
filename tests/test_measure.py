"""Measured explanations with known answers: box mapping, pointing game, energy-in-box, baselines, where mass
falls, the automatic shortcut check on constructed positives and negatives, and the proxy's ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.data.transforms import eval_transform
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.explain.measure import (
    box_to_input,
    centre_prior,
    energy_in_box,
    input_boxes,
    pointing_game,
    pointing_hits,
    proxy_truth,
    random_cams,
    region_mass,
)
from nsfw_lab.explain.shortcut import detect_shortcut, region_shares, stamped, watermark_box


def _peak(size: int, y: int, x: int) -> np.ndarray:
    cam = np.zeros((size, size), np.float32)
    cam[y, x] = 1.0
    return cam


def test_box_follows_resize_and_centre_crop() -> None:
    # 128 x 64 landscape, input 56 px: short side -> 64 (56 / 0.875), scale 1, width 128 -> crop x from 36
    assert box_to_input((40, 10, 60, 30), 128, 64, 56) == pytest.approx((4, 6, 24, 26))
    assert box_to_input((0, 0, 20, 20), 128, 64, 56) is None  # cropped away entirely
    assert box_to_input((0, 0, 64, 64), 64, 64, 56) == (0, 0, 56, 56)  # clipped to the input


def test_mapped_box_lands_on_the_drawn_pixels() -> None:
    """A white square drawn at a box in a non-square image is where box_to_input says after eval_transform."""
    img = Image.new("RGB", (150, 100))
    box = (90, 40, 120, 70)
    img.paste((255, 255, 255), box)
    x = eval_transform(64, normalize=False)(img)[0].numpy()
    b = box_to_input(box, 150, 100, 64)
    ys, xs = np.nonzero(x > 128)
    assert abs(xs.min() - b[0]) <= 1 and abs(xs.max() + 1 - b[2]) <= 1
    assert abs(ys.min() - b[1]) <= 1 and abs(ys.max() + 1 - b[3]) <= 1


def test_pointing_hits_and_energy_have_known_answers() -> None:
    box = (10, 10, 20, 20)
    cams = np.stack([_peak(32, 15, 15), _peak(32, 2, 2), _peak(32, 21, 15)])
    assert pointing_hits(cams, [box] * 3, tolerance=0).tolist() == [True, False, False]
    assert pointing_hits(cams, [box] * 3, tolerance=2 / 32).tolist() == [True, False, True]  # 2 px tolerance
    half = np.zeros((32, 32), np.float32)
    half[10:20, 10:20] = 1
    half[0:10, 0:10] = 1
    assert energy_in_box(np.stack([half, np.zeros((32, 32))]), [box] * 2) == pytest.approx([0.5, 0.0])


def test_baselines_behave_as_designed() -> None:
    size = 40
    centred, corner = (15, 15, 25, 25), (0, 0, 8, 8)
    prior = centre_prior(2, size)
    assert pointing_hits(prior, [centred, corner], 0).tolist() == [True, False]
    rnd = random_cams(400, size, grid=4, seed=0)
    assert rnd.shape == (400, size, size) and rnd.min() >= 0 and rnd.max() == pytest.approx(1)
    rate = pointing_hits(rnd, [(0, 0, 20, 20)] * 400, 0).mean()  # a quarter of the image
    assert 0.15 < rate < 0.35
    assert not np.allclose(rnd, random_cams(400, size, 4, seed=1))


def test_pointing_game_separates_a_good_cam_from_the_baselines() -> None:
    rng = np.random.default_rng(0)
    boxes, cams = [], []
    for _ in range(60):
        x, y = rng.integers(0, 40, 2)
        boxes.append((float(x), float(y), float(x + 12), float(y + 12)))
        cams.append(_peak(52, y + 6, x + 6))
    r = pointing_game(np.stack(cams), boxes, grid=4, n_boot=200)
    assert r["n"] == 60 and r["cam"]["pointing"]["mean"] == 1.0
    assert r["cam"]["pointing"]["ci95"][0] > r["random"]["pointing"]["mean"]
    assert r["cam"]["pointing"]["ci95"][0] > r["centre"]["pointing"]["mean"]
    assert r["cam"]["energy"]["mean"] == 1.0 and r["random"]["energy"]["mean"] < 0.2


def test_region_mass_of_uniform_and_corner_maps() -> None:
    uni = region_mass(np.ones((3, 20, 20)), border=0.15, corner=0.25)
    assert uni["centre"] == pytest.approx(14 * 14 / 400) and uni["top_left"] == pytest.approx(25 / 400)
    corner = region_mass(np.stack([_peak(20, 19, 19)]))
    assert corner["bottom_right"] == 1 and corner["border"] == 1 and corner["top_left"] == 0


def test_region_shares_sum_to_one() -> None:
    cams = np.random.default_rng(1).random((5, 17, 23))
    assert region_shares(cams, 4).sum(axis=(1, 2)) == pytest.approx(np.ones(5))


def test_shortcut_check_flags_a_fixed_region_and_not_moving_evidence() -> None:
    rng = np.random.default_rng(0)
    size, n = 32, 40
    moving = np.stack([_peak(size, *rng.integers(0, size, 2)) for _ in range(n)])
    fixed = moving.copy()
    fixed[: int(0.7 * n)] = _peak(size, 28, 28)  # 70% of the class lights up the bottom-right corner
    negative = detect_shortcut(moving, ["porn"] * n)
    positive = detect_shortcut(np.concatenate([fixed, moving]), ["porn"] * n + ["neutral"] * n)
    assert negative["shortcut_detected"] is False and negative["flags"] == []
    assert positive["shortcut_detected"] is True
    [flag] = positive["flags"]
    assert flag["class"] == "porn" and flag["cell"] == [3, 3] and flag["peak_in_cell"] >= 0.7 - 1e-6
    assert flag["share"] >= 0.7 - 1e-6 and flag["lift"] > 3  # and neutral's scattered peaks are not flagged
    assert detect_shortcut(fixed[:3], ["porn"] * 3)["per_class"] == {}  # too few images: no verdict either way


@pytest.mark.parametrize(("w", "h"), [(64, 64), (96, 64), (64, 96), (128, 64)])
def test_a_stamped_badge_lands_where_watermark_box_says(w: int, h: int) -> None:
    """Any aspect ratio: the badge survives the eval crop, and the pixels it changes are in watermark_box."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 60, (h, w, 3), dtype=np.uint8))
    tf = eval_transform(56, normalize=False)
    diff = (tf(stamped(img)).int() - tf(img).int()).abs().amax(0).numpy() > 40
    b = watermark_box(w, h, 56)
    assert b is not None and diff.any()
    ys, xs = np.nonzero(diff)
    assert b[0] - 1 <= xs.min() and xs.max() + 1 <= b[2] + 1 and b[1] - 1 <= ys.min() and ys.max() + 1 <= b[3] + 1
    assert diff[int(b[1]) + 1 : int(b[3]) - 1, int(b[0]) + 1 : int(b[2]) - 1].mean() > 0.3
    assert np.asarray(img).sum() == np.asarray(img.copy()).sum()  # the input is not drawn on


def _blob(size: int, y: float, x: float, sigma: float = 4.0) -> np.ndarray:
    """A smooth CAM-like bump (real CAMs are coarse maps upsampled, never single pixels)."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_five_classes_flag_only_the_one_with_a_fixed_region(seed: int) -> None:
    """Negatives: evidence that moves, and a centre bias every class shares; positive: half of one class's maps
    sit on the same spot (a badge on half the images, as in the proxy)."""
    rng = np.random.default_rng(seed)
    size, n = 32, 30
    labels = [c for c in ("drawings", "hentai", "neutral", "porn", "sexy") for _ in range(n)]
    moving = np.stack([_blob(size, *rng.integers(0, size, 2)) for _ in labels])
    centred = np.stack([_blob(size, *rng.integers(10, 22, 2)) for _ in labels])
    for cams in (moving, centred):
        r = detect_shortcut(cams, labels)
        assert r["shortcut_detected"] is False and set(r["per_class"]) == set(labels)
    badged = moving.copy()
    badged[3 * n : 3 * n + n // 2] = _blob(size, 28, 28)  # porn
    r = detect_shortcut(badged, labels)
    assert [f["class"] for f in r["flags"]] == ["porn"] and r["flags"][0]["cell"] == [3, 3]


def test_proxy_truth_maps_cached_files_to_boxes(small_curated: Path, tmp_path: Path) -> None:
    truth = proxy_truth(small_curated)
    assert truth and all(set(t) == {"box", "watermark", "width", "height", "source_path"} for t in truth.values())
    by_class: dict[str, list] = {}
    for path, t in truth.items():
        by_class.setdefault(path.split("/")[1], []).append(t["box"])
    assert all(b is None for b in by_class["neutral"]) and all(b is not None for b in by_class["porn"])
    boxes = input_boxes(truth, list(truth), 48)
    assert all(0 <= b[0] < b[2] <= 48 for b in boxes if b)
    with pytest.raises(NsfwLabError, match="not in the curated proxy"):
        input_boxes(truth, ["test/porn/unknown.jpg"], 48)
    fake = tmp_path / "real"
    fake.mkdir()
    (fake / "curation_report.json").write_text('{"source": "/nonexistent"}')
    with pytest.raises(NsfwLabError, match="measured explanations need the synthetic proxy"):
        proxy_truth(fake)


def test_a_model_missing_the_pointing_target_gets_its_measured_reasons() -> None:
    from nsfw_lab.course.explanations import miss_reason

    m = {"verdict": "above baselines", "n": 200, "n_correct": 120, "n_flat": 10, "cell_px": 16.0,
         "median_box_px": 12.0, "cam": {"pointing_correct_only": 0.85, "energy": {"mean": 0.3}},
         "random": {"energy": {"mean": 0.1}},
         "faithfulness": {"cam": {"road_combined": 0.01}, "random": {"road_combined": 0.02}}}  # fmt: skip
    why = miss_reason(m)
    assert "classifies 60% of the boxed images correctly" in why and "do point (0.85)" in why
    assert "a map cell (16 px) is larger than the median evidence box (12 px)" in why and "5% of its maps" in why
    assert "ROAD 0.010 is no better than random maps' 0.020" in why
    good = {**m, "n_correct": 190, "n_flat": 0, "cell_px": 8.0,
            "cam": {"pointing_correct_only": 0.5, "energy": {"mean": 0.3}},
            "faithfulness": {"cam": {"road_combined": 0.05}, "random": {"road_combined": 0.0}}}  # fmt: skip
    assert miss_reason(good) == (
        "even on the images it gets right the maps point at 0.50; its maps put 30% of their mass in the evidence box "
        "(random maps 10%)"
    )
    assert miss_reason({**m, "verdict": "meets target"}) is None
