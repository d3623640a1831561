"""Corruptions, the robustness record and ``nsfw-lab robustness``: graded, seeded, measured on known cases."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.cli import main
from nsfw_lab.config import CLASSES
from nsfw_lab.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from nsfw_lab.evaluate.robustness import condition_record, robustness_run, worst
from nsfw_lab.rundir import RunDir


def _photo(size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A benign test image with fine detail: a checkerboard under smooth gradients."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    board = ((x // 3 + y // 3) % 2) * 120
    a = np.stack([board + x * 135 // w, board + y * 135 // h, 255 - board - x * 100 // w], -1)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8))


def _error(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b.resize(a.size), float)).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_is_rgb_seeded_and_changes_the_image(name: str) -> None:
    im = _photo()
    for s in SEVERITIES:
        out = corrupt(im, name, s, seed=7)
        assert out.mode == "RGB" and min(out.size) >= 1
        assert np.array_equal(np.asarray(out), np.asarray(corrupt(im, name, s, seed=7))), "not reproducible"
    assert _error(im, corrupt(im, name, 5, seed=7)) > 1.0, f"{name} at severity 5 leaves the image as it was"


@pytest.mark.parametrize("name", ["jpeg", "downscale", "blur", "noise", "grayscale", "brightness", "contrast"])
def test_pixel_corruptions_grow_with_severity(name: str) -> None:
    im = _photo()
    errors = [_error(im, corrupt(im, name, s, seed=1)) for s in SEVERITIES]
    assert all(b > a for a, b in pairwise(errors)), (name, errors)


def test_geometric_corruptions_do_what_they_say() -> None:
    im = _photo((100, 80))
    assert corrupt(im, "crop_centre", 5).size == (50, 40)
    assert corrupt(im, "squash", 4).size == (200, 80)  # one side stretched twice
    box = corrupt(im, "letterbox", 1)
    assert box.size[0] == box.size[1] == 100 + 2 * 10 and np.asarray(box)[0, 0].sum() == 0
    shot = corrupt(im, "screenshot", 3)
    assert shot.size == im.size and tuple(np.asarray(shot)[-1, -1]) == (238, 238, 238)  # the canvas shows
    corners = {corrupt(im, "crop_offcentre", 2, seed=s).getpixel((0, 0)) for s in range(12)}
    assert len(corners) > 1, "the off-centre crop always takes the same corner"


def test_unknown_corruption_or_severity_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(_photo(), "fog", 1)
    with pytest.raises(ValueError, match=r"severity must be 1\.\.5"):
        corrupt(_photo(), "jpeg", 6)


def test_condition_record_counts_pairs_recall_and_the_paired_drop() -> None:
    classes = list(CLASSES)  # drawings, hentai, neutral, porn, sexy
    porn, sexy, hentai = classes.index("porn"), classes.index("sexy"), classes.index("hentai")
    y = np.repeat(np.arange(5), 40)
    clean = y.copy()
    pred = y.copy()
    pred[y == porn] = np.where(np.arange(40) < 30, sexy, porn)  # 30 of 40 porn images now read as sexy
    r = condition_record(y, pred, clean, classes, [porn, hentai], n_boot=300, seed=0)
    assert r["grown_pairs"][0] == {"true": "porn", "predicted": "sexy", "clean": 0, "now": 30}
    assert len(r["grown_pairs"]) == 1
    assert r["block_recall"] == pytest.approx(50 / 80)  # 10 porn + 40 hentai of the 80 block images
    lo, hi = r["block_recall_ci95"]
    assert lo < 50 / 80 < hi
    assert r["drop"]["delta"] < -0.1 and r["verdict"] == "hurts"
    watched = {(p["true"], p["predicted"]): p["now"] for p in r["watched_pairs"]}
    assert watched[("porn", "sexy")] == 30 and watched[("hentai", "drawings")] == 0
    same = condition_record(y, clean, clean, classes, [porn, hentai], n_boot=100, seed=0)
    assert same["verdict"].startswith("no difference") and same["grown_pairs"] == []


def test_cli_writes_the_record_and_figure_and_refuses_bad_flags(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = ["robustness", "--run", str(run), "--corruptions", "jpeg,letterbox", "--severities", "1,5",
            "--fgsm-eps", "1,8", "--limit", "3", "--bootstrap", "50", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    files = RunDir(run)
    rec = json.loads(files.robustness("test").read_text())
    assert rec["n"] == 15 and rec["severities"] == [1, 5] and rec["fgsm_eps"] == [1.0, 8.0]
    got = [(r["corruption"], r["severity"]) for r in rec["conditions"]]
    assert got == [("jpeg", 1), ("jpeg", 5), ("letterbox", 1), ("letterbox", 5), ("fgsm", 1), ("fgsm", 2)]
    assert [w["corruption"] for w in worst(rec)] == ["jpeg", "letterbox", "fgsm"]
    assert all(w["severity"] == (2 if w["corruption"] == "fgsm" else 5) for w in worst(rec))
    with Image.open(files.robustness_plot("test")) as im:
        assert im.format == "PNG" and im.width > 400
    out = capsys.readouterr().out
    assert "clean macro-F1" in out and "letterbox" in out and "eps 8/255" in out
    for bad, msg in ((["--severities", "0"], "severities must be in 1..5"),
                     (["--corruptions", "fog"], "unknown corruption 'fog'"),
                     (["--fgsm-eps", "x"], "--fgsm-eps: 'x' is not"),
                     (["--limit", "0"], "--limit must be >= 1"),
                     (["--severities", "2.5"], "whole numbers"),
                     (["--fgsm-eps", "-1"], "must be > 0")):  # fmt: skip
        assert main([*args, *bad]) == 2
        assert msg in capsys.readouterr().err


def test_the_model_card_quotes_the_robustness_table(tiny_run: Path, tmp_path: Path) -> None:
    from nsfw_lab.cards import model_card

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert "_Not recorded: robustness" in model_card(run, "tiny")
    robustness_run(run, corruptions=["jpeg"], severities=[1, 3], fgsm_eps=[2.0], limit=2, n_boot=20,
                   device="cpu", progress=False)  # fmt: skip
    card = model_card(run, "tiny")
    assert "## Robustness" in card and "| jpeg | 3 |" in card and "| fgsm | ε 2/255 |" in card


@pytest.mark.slow
def test_jpeg_at_quality_10_hurts_a_model_trained_on_clean_proxy_images(default_curated: Path, tmp_path: Path) -> None:
    """A known monotone degradation: EfficientNet-Lite0 fine-tuned from ImageNet for one epoch on the clean proxy
    (96 px) loses macro-F1 under JPEG re-encoding, detectably at quality 10, which blurs the ring-and-dot motif;
    and FGSM at 8 grey levels hurts it (gradient descent instead of ascent would not)."""
    from nsfw_lab.train import fit, make_config

    fit(make_config(data=str(default_curated), out=str(tmp_path / "run"), model="efficientnet_lite0",
                    weights="imagenet", image_size=96, batch_size=32, epochs=1, lr=0.01, workers=0, save_every=0,
                    progress=False))  # fmt: skip
    rec = robustness_run(tmp_path / "run", corruptions=["jpeg"], fgsm_eps=(8.0,), n_boot=500, device="cpu",
                         progress=False)  # fmt: skip
    fgsm = rec["conditions"].pop()
    assert fgsm["corruption"] == "fgsm" and fgsm["verdict"] == "hurts", fgsm  # the sign ascends the loss
    f1 = [r["macro_f1"] for r in rec["conditions"]]
    assert rec["clean"]["macro_f1"] > 0.6, "the model did not learn the proxy; the test means nothing"
    assert f1[-1] == min(f1) and f1[-1] < f1[0] - 0.1, f1
    assert rec["conditions"][-1]["verdict"] == "hurts"
    assert rec["conditions"][-1]["drop"]["detectable"] < abs(rec["conditions"][-1]["drop"]["delta"])
