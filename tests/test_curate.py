"""Curation: quarantine, duplicates, label conflicts, group-aware split without leakage, determinism."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nsfw_lab.data import curate as curate_mod
from nsfw_lab.data.curate import CurateConfig, curate
from nsfw_lab.data.hashing import hamming, phash_hex
from nsfw_lab.data.synth import SynthConfig, generate
from nsfw_lab.data.synth.generate import placeholder_image
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import read_csv


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rescaled(path: Path, scale: float, fmt: str = "JPEG") -> bytes:
    im = Image.open(path).convert("RGB")
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 70} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted(small_proxy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The small proxy plus planted duplicates, conflicts, bad files and metadata, curated once."""
    root = tmp_path_factory.mktemp("planted")
    src = root / "src"
    shutil.copytree(small_proxy, src)
    rows = {r["file"]: r for r in read_csv(src / "manifest.csv")}
    orig = sorted(f for f, r in rows.items() if r["kind"] == "original")
    pick = {c: [f for f in orig if f.startswith(c + "/")] for c in ("porn", "hentai", "neutral", "drawings")}
    plant = {
        "dup_within": ("porn/nested/deeper/copy_no_ext", (src / pick["porn"][0]).read_bytes()),
        "exact_cross": ("drawings/repost.jpg", (src / pick["hentai"][0]).read_bytes()),
        "near_cross": ("sexy/near_repost.png", _rescaled(src / pick["neutral"][0], 0.9, "PNG")),
        "near_unknown": ("drawings/sub/unlisted_copy.jpg", _rescaled(src / pick["drawings"][1], 1.1)),
        "html": ("porn/removed.jpg", b"<html><body>This image has been removed</body></html>"),
        "empty": ("neutral/zero.jpeg", b""),
        "meta": ("porn/urls_porn.txt", b"https://example.invalid/a.jpg\n"),
    }
    for path, data in plant.values():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    before = digest(src)
    report = curate(src, root / "out", CurateConfig(short_side=64, seed=7), progress=False)
    return {
        "src": src,
        "out": root / "out",
        "report": report,
        "rows": rows,
        "pick": pick,
        "plant": plant,
        "before": before,
        "root": root,
    }


def test_source_is_never_modified(planted: dict) -> None:
    assert digest(planted["src"]) == planted["before"]


def test_quarantine_lists_every_bad_file_with_its_reason(planted: dict) -> None:
    q = {r["source_path"]: r["reason"] for r in read_csv(planted["out"] / "quarantine.csv")}
    expected_bad = {f for f, r in planted["rows"].items() if r["kind"].startswith("corrupt")}
    expected_bad |= {"porn/removed.jpg", "neutral/zero.jpeg"}
    assert set(q) == expected_bad
    assert q["porn/removed.jpg"] == "not_an_image" and q["neutral/zero.jpeg"] == "empty"
    for f, r in planted["rows"].items():
        if r["kind"].startswith("corrupt"):
            assert (
                q[f]
                == {
                    "corrupt_html": "not_an_image",
                    "corrupt_json": "not_an_image",
                    "corrupt_empty": "empty",
                    "corrupt_truncated": "truncated",
                }[r["kind"]]
            )
    rep = planted["report"]
    assert rep["quarantined"] == len(expected_bad) and rep["metadata_files_ignored"] == 1
    assert sum(rep["quarantined_by_reason"].values()) == len(expected_bad)


def test_exact_duplicate_within_a_class_is_kept_once(planted: dict) -> None:
    d = read_csv(planted["out"] / "duplicates.csv")
    got = {frozenset((r["source_path"], r["duplicate_of"])) for r in d}
    planted_pair = frozenset(("porn/nested/deeper/copy_no_ext", planted["pick"]["porn"][0]))
    generated = {
        frozenset((f, r["near_duplicate_of"])) for f, r in planted["rows"].items() if r["kind"] == "exact_duplicate"
    }
    assert len(generated) == 5 and got == generated | {planted_pair}
    kept = {r["source_path"] for r in read_csv(planted["out"] / "manifest.csv")}
    for r in d:
        assert r["duplicate_of"] < r["source_path"]  # the first path in sorted order is the one kept
        assert r["source_path"] not in kept and r["duplicate_of"] not in {x["source_path"] for x in d}
    first, second = sorted(planted_pair)
    assert first in kept and second not in kept
    assert planted["report"]["exact_duplicates_removed"] == len(d)


def test_images_in_two_classes_are_conflicts_and_not_kept(planted: dict) -> None:
    conflicts = {r["source_path"]: r for r in read_csv(planted["out"] / "label_conflicts.csv")}
    for a, b in (
        ("drawings/repost.jpg", planted["pick"]["hentai"][0]),
        ("sexy/near_repost.png", planted["pick"]["neutral"][0]),
    ):
        assert a in conflicts and b in conflicts
        assert conflicts[a]["also_in"] == b.split("/")[0]
    # every planted cross-class repost of the generator is caught too
    for f, r in planted["rows"].items():
        if r["kind"] == "conflict_copy" and (planted["src"] / f).exists():
            assert f in conflicts or hamming(*_hashes(planted["src"], f, r["near_duplicate_of"])) > 8
    kept = {r["source_path"] for r in read_csv(planted["out"] / "manifest.csv")}
    assert not kept & set(conflicts)
    assert planted["report"]["label_conflicts_dropped"] == len(conflicts)


def _hashes(src: Path, a: str, b: str) -> tuple[str, str]:
    from nsfw_lab.data.curate import cache_image
    from nsfw_lab.data.imageio import load_image

    def h(f: str) -> str:
        return phash_hex(Image.open(io.BytesIO(cache_image(load_image(src / f), 64, 95))))

    return h(a), h(b)


def test_groups_and_near_duplicates_never_straddle_splits(planted: dict) -> None:
    m = read_csv(planted["out"] / "manifest.csv")
    for key in ("group", "source_group", "near_dup_cluster", "sha256"):
        splits: dict[str, set[str]] = defaultdict(set)
        for r in m:
            if r[key]:
                splits[r[key]].add(r["split"])
        assert splits and all(len(v) == 1 for v in splits.values()), key
    by_src = {r["source_path"]: r for r in m}
    unlisted = by_src["drawings/sub/unlisted_copy.jpg"]  # no gallery id: only its pHash links it
    assert unlisted["source_group"] == ""
    assert unlisted["split"] == by_src[planted["pick"]["drawings"][1]]["split"]
    assert unlisted["near_dup_cluster"] != ""


def test_independent_leakage_recheck(planted: dict) -> None:
    """Recompute pHashes of the cached files here and compare every cross-split pair by brute force."""
    out = planted["out"]
    m = read_csv(out / "manifest.csv")
    hashes = [phash_hex(Image.open(out / r["cached_path"])) for r in m]
    for i in range(len(m)):
        for j in range(i + 1, len(m)):
            if m[i]["split"] != m[j]["split"]:
                assert hamming(hashes[i], hashes[j]) > 8, (m[i]["source_path"], m[j]["source_path"])
    lc = planted["report"]["leakage_check"]
    assert lc["passed"] and lc["cross_split_near_duplicates"] == 0 and lc["hashes_matching_manifest"] == len(m)


def test_cache_layout_and_short_side(planted: dict) -> None:
    out = planted["out"]
    m = read_csv(out / "manifest.csv")
    assert {p.relative_to(out).as_posix() for p in out.glob("*/*/*.jpg")} == {r["cached_path"] for r in m}
    for r in m[:50]:
        assert r["cached_path"].startswith(f"{r['split']}/{r['class']}/")
        with Image.open(out / r["cached_path"]) as im:
            assert im.mode == "RGB" and min(im.size) == min(64, int(r["width"]), int(r["height"]))
    assert not (out / ".staging").exists()


def test_rerun_is_identical(planted: dict) -> None:
    report = curate(planted["src"], planted["root"] / "again", CurateConfig(short_side=64, seed=7), progress=False)
    assert report == planted["report"]
    assert digest(planted["root"] / "again") == digest(planted["out"])


def test_another_seed_changes_the_split_not_the_content(planted: dict) -> None:
    r = curate(planted["src"], planted["root"] / "seed8", CurateConfig(short_side=64, seed=8), progress=False)
    a = {x["source_path"]: x["split"] for x in read_csv(planted["out"] / "manifest.csv")}
    b = {x["source_path"]: x["split"] for x in read_csv(planted["root"] / "seed8" / "manifest.csv")}
    assert set(a) == set(b) and a != b and r["leakage_check"]["passed"]


def test_default_proxy_split_keeps_class_proportions(default_curated: Path) -> None:
    rep = json.loads((default_curated / "curation_report.json").read_text())
    assert rep["max_class_proportion_gap"] <= 0.03
    total = sum(sum(v.values()) for v in rep["counts"].values())
    for split, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        n = sum(v[split] for v in rep["counts"].values())
        assert abs(n / total - frac) <= 0.02, split
    assert rep["leakage_check"]["passed"]


def test_an_imagefolder_with_three_classes(tmp_path: Path) -> None:
    """Any class count, nested folders, mixed and missing extensions, no manifest."""
    rng = np.random.default_rng(0)
    src = tmp_path / "folder"
    for c, hue in (("birds", 0), ("cars", 1), ("trees", 2)):
        for i in range(30):
            arr = (rng.random((12, 12, 3)) * 255).astype(np.uint8)
            arr[..., hue] = 255
            im = Image.fromarray(arr).resize((80, 60 + i), Image.Resampling.BICUBIC)
            sub = src / c / ("a/b" if i % 3 == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            ext, fmt = [(".png", "PNG"), (".webp", "WEBP"), ("", "JPEG")][i % 3]
            im.save(sub / f"img{i}{ext}", fmt)
    rep = curate(src, tmp_path / "out", CurateConfig(val=0.2, test=0.2, short_side=48), progress=False)
    assert rep["classes"] == ["birds", "cars", "trees"] and rep["kept"] == 90 and rep["known_groups"] == 0
    assert all(all(n >= 3 for n in v.values()) for v in rep["counts"].values())
    assert rep["leakage_check"]["passed"]


def test_group_manifest_by_sha256(tmp_path: Path) -> None:
    """A download-style manifest (sha256 + group_id) keeps each group in one split."""
    src = tmp_path / "src"
    generate(
        src,
        SynthConfig(
            per_class=20,
            size=48,
            seed=9,
            near_dup_rate=0,
            conflict_rate=0,
            corrupt_rate=0,
            exact_dup_rate=0,
            placeholder_rate=0,
        ),
        progress=False,
    )
    rows = read_csv(src / "manifest.csv")
    (src / "manifest.csv").unlink()
    audit = tmp_path / "audit.csv"
    audit.write_text(
        "url,class,status,sha256,group_id\n"
        + "".join(f"https://host.invalid/{i},{r['class']},ok,{r['sha256']},gal-{i % 7}\n" for i, r in enumerate(rows))
    )
    rep = curate(src, tmp_path / "out", CurateConfig(short_side=48, groups=str(audit)), progress=False)
    assert rep["known_groups"] == 7
    m = read_csv(tmp_path / "out" / "manifest.csv")
    splits = defaultdict(set)
    for r in m:
        splits[r["source_group"]].add(r["split"])
    assert set(splits) == {f"gal-{k}" for k in range(7)} and all(len(v) == 1 for v in splits.values())


def test_interrupted_curation_leaves_no_output(small_proxy: Path, tmp_path: Path, monkeypatch) -> None:
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(curate_mod, "leakage_check", boom)
    with pytest.raises(KeyboardInterrupt):
        curate(small_proxy, tmp_path / "out", CurateConfig(short_side=48), workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_killed_curation_never_looks_complete(tmp_path: Path) -> None:
    src = tmp_path / "src"
    generate(src, SynthConfig(per_class=120, size=160, seed=4), progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nsfw_lab", "curate", str(src), str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not any(p.name.startswith(".out.partial-") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "curation finished before it could be killed"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    subprocess.run(cmd, check=True, capture_output=True)
    assert json.loads((out / "curation_report.json").read_text())["leakage_check"]["passed"]


def test_bad_arguments_are_one_line_errors(small_proxy: Path, tmp_path: Path) -> None:
    with pytest.raises(NsfwLabError, match="not a folder"):
        curate(tmp_path / "missing", tmp_path / "o")
    with pytest.raises(NsfwLabError, match="inside SRC"):
        curate(small_proxy, small_proxy / "out")
    with pytest.raises(NsfwLabError, match="no files"):
        (tmp_path / "empty" / "a").mkdir(parents=True)
        curate(tmp_path / "empty", tmp_path / "o2")
    with pytest.raises(NsfwLabError, match="group manifest not found"):
        curate(small_proxy, tmp_path / "o3", CurateConfig(groups=str(tmp_path / "nope.csv")))


def test_placeholders_blanks_and_repeated_copies(tmp_path: Path) -> None:
    """Many copies of one card are placeholders; a few copies are one near-duplicate cluster, or label
    conflicts when they span two classes; a flat image is blank."""
    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        rng = np.random.default_rng(ord(c))
        for i in range(25):  # distinct real-looking images
            arr = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
            Image.fromarray(arr).resize((120, 90), Image.Resampling.BICUBIC).save(src / c / f"img{i}.png")
    card = placeholder_image(96)
    for q in range(60, 90):  # 30 re-encoded copies of the "removed" card: different bytes, one pHash
        card.save(src / ("a" if q % 2 else "b") / f"removed_{q}.jpg", quality=q)
    repost = Image.open(src / "a" / "img0.png").convert("RGB")
    for q in (70, 80, 90):
        repost.save(src / "a" / f"repost_{q}.jpg", quality=q)
    Image.new("RGB", (100, 80), (40, 40, 40)).save(src / "b" / "black.png")
    rep = curate(src, tmp_path / "one", CurateConfig(short_side=64), progress=False)
    q = {r["source_path"]: r["reason"] for r in read_csv(tmp_path / "one" / "quarantine.csv")}
    assert {k for k, v in q.items() if v == "placeholder"} == {
        f"{'a' if n % 2 else 'b'}/removed_{n}.jpg" for n in range(60, 90)
    }
    assert q["b/black.png"] == "blank" and rep["quarantined_by_reason"] == {"blank": 1, "placeholder": 30}
    m = {r["source_path"]: r for r in read_csv(tmp_path / "one" / "manifest.csv")}
    clusters = {
        m[f]["near_dup_cluster"] for f in ("a/img0.png", "a/repost_70.jpg", "a/repost_80.jpg", "a/repost_90.jpg")
    }
    assert len(clusters) == 1 and "" not in clusters and rep["label_conflicts_dropped"] == 0
    repost.save(src / "b" / "repost_b.jpg", quality=75)  # now the repost is in two classes
    rep = curate(src, tmp_path / "two", CurateConfig(short_side=64), progress=False)
    assert rep["label_conflicts_dropped"] == 5
    assert not any(
        "repost" in r["source_path"] or r["source_path"] == "a/img0.png"
        for r in read_csv(tmp_path / "two" / "manifest.csv")
    )


def test_invalid_settings_are_refused_before_any_work(small_proxy: Path, tmp_path: Path) -> None:
    for cfg, msg in (
        (CurateConfig(val=0.6, test=0.5), "val \\+ test < 1"),
        (CurateConfig(val=-0.1), "--val and --test"),
        (CurateConfig(short_side=0), "--short-side"),
        (CurateConfig(phash_threshold=17), "--phash-threshold"),
        (CurateConfig(min_side=0), "--min-side"),
    ):
        with pytest.raises(NsfwLabError, match=msg):
            curate(small_proxy, tmp_path / "o", cfg, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_curated_folder_as_source_and_foreign_overwrite_are_refused(default_curated: Path, tmp_path: Path) -> None:
    with pytest.raises(NsfwLabError, match="already a curated dataset"):
        curate(default_curated, tmp_path / "o", progress=False)
    foreign = tmp_path / "mine"
    (foreign / "a").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(foreign / "a" / "x.png")
    src = tmp_path / "src"
    shutil.copytree(foreign, src)
    with pytest.raises(NsfwLabError, match="not made by nsfw-lab"):
        curate(src, foreign, overwrite=True, progress=False)
    assert (foreign / "a" / "x.png").is_file()


def test_workers_do_not_change_the_output(small_proxy: Path, tmp_path: Path) -> None:
    cfg = CurateConfig(short_side=48, seed=2)
    curate(small_proxy, tmp_path / "w1", cfg, workers=1, progress=False)
    curate(small_proxy, tmp_path / "w2", cfg, workers=2, progress=False)
    assert digest(tmp_path / "w1") == digest(tmp_path / "w2")


def test_small_unbalanced_data_is_warned_about(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    for c in ("big", "tiny", "empty"):
        (src / c).mkdir(parents=True)
    for i in range(40):
        arr = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(arr).resize((64, 64), Image.Resampling.BICUBIC).save(src / "big" / f"{i}.png")
    tiny = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64))
    for i in range(6):  # 'tiny' is six re-encodings of one image: one cluster, so it sits in one split only
        tiny.save(src / "tiny" / f"{i}.jpg", quality=60 + 5 * i)
    (src / "empty" / "broken.jpg").write_bytes(b"")
    (src / "__MACOSX").mkdir()
    (src / "__MACOSX" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    rep = curate(src, tmp_path / "out", CurateConfig(short_side=48), progress=False)
    assert rep["classes"] == ["big", "tiny"]
    text = " | ".join(rep["warnings"])
    assert "'empty' has no usable image" in text and "'tiny' has no image in" in text
    assert "proportions differ" in text


def test_stale_partial_folders_are_swept(small_proxy: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.partial-{dead.pid}-abc"
    stale.mkdir()
    (stale / "junk").write_bytes(b"x" * 100)
    curate(small_proxy, tmp_path / "out", CurateConfig(short_side=48), progress=False)
    assert not stale.exists() and (tmp_path / "out" / "curation_report.json").is_file()


def test_group_manifest_matching_nothing_is_an_error(small_proxy: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "groups.csv"
    bogus.write_text("sha256,group_id\n" + "0" * 64 + ",gal-1\n")
    with pytest.raises(NsfwLabError, match="no group id matched"):
        curate(small_proxy, tmp_path / "o", CurateConfig(short_side=48, groups=str(bogus)), progress=False)
