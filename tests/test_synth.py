"""The synthetic proxy: determinism, class structure, manifest, galleries, near-duplicates, shortcut."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.config import CLASSES
from nsfw_lab.data.hashing import hamming, phash_hex
from nsfw_lab.data.imageio import ImageLoadError, load_image
from nsfw_lab.data.synth import CLASS_FACTORS, Difficulty, SynthConfig, generate
from nsfw_lab.data.synth.generate import MANIFEST_COLUMNS, planted_count
from nsfw_lab.data.synth.render import draw_watermark
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import read_csv

# regenerated when the shortcut badge moved inside the eval crop
RECORDED_TINY_DIGEST = "cbda0a9d8351f7b02b41d5f791515f6a490bd10defab7f2ead67cd55d0e4612b"


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    cfg = SynthConfig(per_class=24, size=48, seed=11, shortcut=True)
    generate(tmp_path / "a", cfg, workers=1, progress=False)
    generate(tmp_path / "b", cfg, workers=2, progress=False)
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nsfw_lab",
            "synth",
            str(tmp_path / "c"),
            "--per-class",
            "24",
            "--size",
            "48",
            "--seed",
            "11",
            "--shortcut",
            "--workers",
            "2",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    a = tree_digest(tmp_path / "a")
    assert len(a) > 5 * 24
    assert a == tree_digest(tmp_path / "b") == tree_digest(tmp_path / "c")


def test_another_seed_gives_other_images(tmp_path: Path) -> None:
    generate(tmp_path / "a", SynthConfig(per_class=10, size=48, seed=1), progress=False)
    generate(tmp_path / "b", SynthConfig(per_class=10, size=48, seed=2), progress=False)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    same = [k for k in a if k.endswith(".jpg") and a[k] == b.get(k) and a[k] != hashlib.sha256(b"").hexdigest()]
    assert not same


def test_class_folders_and_manifest(small_proxy: Path) -> None:
    assert sorted(p.name for p in small_proxy.iterdir() if p.is_dir()) == sorted(CLASSES)
    rows = read_csv(small_proxy / "manifest.csv")
    assert tuple(rows[0]) == MANIFEST_COLUMNS
    on_disk = {p.relative_to(small_proxy).as_posix() for p in small_proxy.rglob("*.jpg")}
    assert {r["file"] for r in rows} == on_disk
    images = [r for r in rows if not r["kind"].startswith("corrupt") and r["kind"] != "placeholder"]
    assert Counter(r["class"] for r in images) == dict.fromkeys(CLASSES, 60)
    for r in rows:
        assert r["file"].startswith(r["class"] + "/")
        assert r["sha256"] == hashlib.sha256((small_proxy / r["file"]).read_bytes()).hexdigest()


def test_two_factors_and_evidence_boxes(small_proxy: Path) -> None:
    for r in read_csv(small_proxy / "manifest.csv"):
        if r["kind"].startswith("corrupt") or r["kind"] == "placeholder":
            continue
        assert (r["style"], r["motif"]) == CLASS_FACTORS[r["true_class"]]
        if r["motif"] == "absent":
            assert r["evidence_box"] == ""
            continue
        x0, y0, x1, y1 = map(int, r["evidence_box"].split())
        w, h = int(r["width"]), int(r["height"])
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        with Image.open(small_proxy / r["file"]) as im:
            assert im.size == (w, h)
        if r["kind"] == "original":  # diameter within the default motif scale (x jitter)
            assert 0.28 * 0.85 * min(w, h) - 2 <= max(x1 - x0, y1 - y0) <= 0.42 * 1.15 * min(w, h) + 2


def test_galleries_share_a_scene_and_class(small_proxy: Path) -> None:
    rows = [r for r in read_csv(small_proxy / "manifest.csv") if r["kind"] == "original"]
    by_group: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_group[r["group"]].append(r)
    assert len(by_group) < len(rows)  # real galleries, not singletons only
    assert max(len(v) for v in by_group.values()) >= 4
    for members in by_group.values():
        assert len({m["class"] for m in members}) == 1
        assert len({(m["width"], m["height"]) for m in members}) == 1  # same framing


def test_near_duplicates_are_recorded_and_near(small_proxy: Path) -> None:
    rows = {r["file"]: r for r in read_csv(small_proxy / "manifest.csv")}
    near = [r for r in rows.values() if r["kind"] == "near_duplicate"]
    assert len(near) == 5 * planted_count(60, 0.08)
    dists = []
    for r in near:
        src = rows[r["near_duplicate_of"]]
        assert src["class"] == r["class"] and src["group"] == r["group"] and src["kind"] == "original"
        assert r["sha256"] != src["sha256"]
        a, b = (phash_hex(load_image(small_proxy / f)) for f in (r["file"], src["file"]))
        dists.append(hamming(a, b))
    assert np.median(dists) <= 8


def test_exact_duplicates_are_byte_identical_within_the_class(small_proxy: Path) -> None:
    rows = {r["file"]: r for r in read_csv(small_proxy / "manifest.csv")}
    exact = [r for r in rows.values() if r["kind"] == "exact_duplicate"]
    assert len(exact) == 5 * planted_count(60, 0.01) == 5
    for r in exact:
        src = rows[r["near_duplicate_of"]]
        assert (r["class"], r["group"], r["sha256"]) == (src["class"], src["group"], src["sha256"])


def test_conflict_copies_cross_into_the_confusable_class(small_proxy: Path) -> None:
    rows = {r["file"]: r for r in read_csv(small_proxy / "manifest.csv")}
    conflicts = [r for r in rows.values() if r["kind"] == "conflict_copy"]
    assert conflicts
    pairs = {frozenset((r["class"], rows[r["near_duplicate_of"]]["class"])) for r in conflicts}
    assert pairs <= {frozenset(p) for p in (("porn", "sexy"), ("hentai", "drawings"), ("neutral", "sexy"))}


def test_broken_files_are_planted_and_fail_to_load(small_proxy: Path) -> None:
    broken = [r for r in read_csv(small_proxy / "manifest.csv") if r["kind"].startswith("corrupt")]
    assert len(broken) == 5 * planted_count(60, 0.04)
    for r in broken:
        with pytest.raises(ImageLoadError):
            load_image(small_proxy / r["file"])


def _badge_distance(path: Path) -> float:
    """Mean colour distance between the watermark badge's four inner corners and the badge colour."""
    arr = np.asarray(load_image(path), dtype=float)
    h, w, _ = arr.shape
    x0, y0, x1, y1 = draw_watermark(Image.new("RGB", (w, h)))
    corners = arr[[y0 + 1, y0 + 1, y1 - 2, y1 - 2], [x0 + 1, x1 - 2, x0 + 1, x1 - 2]]
    return float(np.abs(corners - np.array([236, 236, 228])).mean())


def test_shortcut_watermark_marks_mostly_one_class(shortcut_proxy: Path) -> None:
    rows = [r for r in read_csv(shortcut_proxy / "manifest.csv") if r["kind"] in ("original", "near_duplicate")]
    rate = {c: np.mean([int(r["watermark"]) for r in rows if r["class"] == c]) for c in CLASSES}
    assert 0.45 <= rate["porn"] <= 0.75
    assert all(rate[c] <= 0.1 for c in CLASSES if c != "porn")
    originals = [r for r in rows if r["kind"] == "original"]
    marked = [_badge_distance(shortcut_proxy / r["file"]) for r in originals if r["watermark"] == "1"][:30]
    plain = [_badge_distance(shortcut_proxy / r["file"]) for r in originals if r["watermark"] == "0"][:30]
    assert max(marked) < 20 and np.median(plain) > 40


def test_the_twin_is_the_same_images_without_the_badge(shortcut_proxy: Path, tmp_path: Path) -> None:
    """``draw_watermarks=False`` keeps the plan: unbadged files are byte-identical, badged ones differ only
    around the badge (within the JPEG blocks it touches), and none of the twin's files carries a badge."""
    twin = tmp_path / "twin"
    generate(twin, SynthConfig(per_class=80, size=64, seed=5, shortcut=True, draw_watermarks=False), progress=False)
    rows = {r["file"]: r for r in read_csv(shortcut_proxy / "manifest.csv") if r["kind"] == "original"}
    twin_rows = {r["file"]: r for r in read_csv(twin / "manifest.csv") if r["kind"] == "original"}
    assert set(rows) == set(twin_rows) and all(r["watermark"] == "0" for r in twin_rows.values())
    badged = [f for f, r in rows.items() if r["watermark"] == "1"]
    assert len(badged) >= 20
    for f, r in rows.items():
        if r["watermark"] == "0":
            assert (shortcut_proxy / f).read_bytes() == (twin / f).read_bytes(), f
    for f in badged[:15]:
        a, b = (np.asarray(load_image(root / f), dtype=int) for root in (shortcut_proxy, twin))
        x0, y0, x1, y1 = draw_watermark(Image.new("RGB", (a.shape[1], a.shape[0])))
        diff = np.abs(a - b).max(axis=2) > 24
        outside = diff.copy()
        outside[max(0, y0 - 16) : y1 + 16, max(0, x0 - 16) : x1 + 16] = False  # one 16 px JPEG block
        assert diff[y0:y1, x0:x1].mean() > 0.5 and not outside.any(), f
        assert _badge_distance(twin / f) > 20  # no badge colour where the badge was


def test_no_watermark_without_shortcut(small_proxy: Path) -> None:
    assert all(r["watermark"] == "0" for r in read_csv(small_proxy / "manifest.csv"))


def test_label_noise_is_recorded(tmp_path: Path) -> None:
    generate(tmp_path / "n", SynthConfig(per_class=40, size=48, seed=2, label_noise=0.3), progress=False)
    rows = [r for r in read_csv(tmp_path / "n" / "manifest.csv") if r["kind"] == "original"]
    noisy = [r for r in rows if r["true_class"] != r["class"]]
    assert 0.1 < len(noisy) / len(rows) < 0.5


def test_bad_settings_and_existing_output_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NsfwLabError, match="per-class"):
        generate(tmp_path / "x", SynthConfig(per_class=0), progress=False)
    with pytest.raises(NsfwLabError, match="label-noise"):
        generate(tmp_path / "x", SynthConfig(label_noise=2.0), progress=False)
    with pytest.raises(NsfwLabError, match="occlusion"):
        generate(tmp_path / "x", SynthConfig(difficulty=Difficulty(occlusion=(0.9, 0.1))), progress=False)
    with pytest.raises(NsfwLabError, match="motif-contrast"):
        generate(tmp_path / "x", SynthConfig(difficulty=Difficulty(motif_contrast=5.0)), progress=False)
    with pytest.raises(NsfwLabError, match="no original images"):
        generate(tmp_path / "x", SynthConfig(per_class=2), progress=False)
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(NsfwLabError, match="already exists"):
        generate(tmp_path / "exists", SynthConfig(per_class=20, size=48), progress=False)
    with pytest.raises(NsfwLabError, match="not made by nsfw-lab"):
        generate(tmp_path / "exists", SynthConfig(per_class=20, size=48), progress=False, overwrite=True)
    assert (tmp_path / "exists" / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]
    generate(tmp_path / "ours", SynthConfig(per_class=20, size=48), progress=False)
    generate(tmp_path / "ours", SynthConfig(per_class=20, size=48, seed=1), progress=False, overwrite=True)


def test_small_runs_still_plant_every_kind(tmp_path: Path) -> None:
    generate(tmp_path / "s", SynthConfig(per_class=20, size=48), progress=False)
    kinds = Counter(r["kind"] for r in read_csv(tmp_path / "s" / "manifest.csv"))
    for k, rate in (
        ("near_duplicate", 0.08),
        ("exact_duplicate", 0.01),
        ("conflict_copy", 0.005),
        ("placeholder", 0.01),
    ):
        assert kinds[k] == 5 * planted_count(20, rate) and kinds[k] >= 5, k
    assert sum(n for k, n in kinds.items() if k.startswith("corrupt")) == 5


def test_placeholders_are_one_card_in_every_class(small_proxy: Path) -> None:
    rows = [r for r in read_csv(small_proxy / "manifest.csv") if r["kind"] == "placeholder"]
    assert sorted(r["class"] for r in rows) == sorted(CLASSES)
    hashes = [phash_hex(load_image(small_proxy / r["file"])) for r in rows]
    assert max(hamming(hashes[0], h) for h in hashes) <= 4


def test_recorded_digest_of_a_tiny_proxy() -> None:
    """Byte-identical output on any machine with the locked packages: a recorded digest of a tiny run.
    (If the generator changes on purpose, regenerate the digest and say so in the change.)"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        generate(Path(d) / "t", SynthConfig(per_class=6, size=40, seed=123, shortcut=True), workers=1, progress=False)
        digest = hashlib.sha256((Path(d) / "t" / "manifest.csv").read_bytes()).hexdigest()
    assert digest == RECORDED_TINY_DIGEST
