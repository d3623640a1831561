"""``nsfw-lab curate SRC OUT``: validate, deduplicate, split without leakage, and cache.

SRC is any ImageFolder (``SRC/<class>/...``, nested folders, any extension or none). Nothing under SRC
is ever written. OUT is built under a hidden temporary name and appears only when complete:

- ``OUT/{train,val,test}/<class>/<sha256[:20]>.jpg``  pre-resized cache (what training reads)
- ``OUT/manifest.csv``         one row per kept image
- ``OUT/quarantine.csv``       files that are not usable images, with the reason
- ``OUT/duplicates.csv``       byte-identical copies removed within a class
- ``OUT/label_conflicts.csv``  images found (exactly or nearly) in more than one class: dropped
- ``OUT/curation_report.json`` counts, settings and the leakage check
"""

from __future__ import annotations

import io
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageStat

from nsfw_lab.data.dedup import NearIndex, exact_duplicates, label_conflicts, placeholder_nodes, split_units
from nsfw_lab.data.groups import load_known_groups
from nsfw_lab.data.hashing import near_duplicate_nodes, phash_hex, sha256_hex
from nsfw_lab.data.imageio import MAX_PIXELS_DEFAULT, ImageLoadError, decode_image_bytes
from nsfw_lab.data.leakage import leakage_check
from nsfw_lab.data.split import SPLITS, group_stratified_split, max_proportion_gap, split_table
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_bytes, atomic_write_json, read_json, staged_dir, write_csv
from nsfw_lab.utils.parallel import imap_ordered

PLACEHOLDER_RADIUS = 4  # pHash bits within which repeated copies count as one placeholder card
MAX_PHASH_THRESHOLD = 16  # beyond this, pHash "near" pairs are mostly unrelated images
IGNORED_DIRS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})
IGNORED_SUFFIXES = frozenset(
    {
        ".txt",
        ".csv",
        ".json",
        ".md",
        ".html",
        ".htm",
        ".log",
        ".py",
        ".sh",
        ".yml",
        ".yaml",
        ".db",
        ".sqlite",
        ".parquet",
    }
)
"""Metadata next to images (the scraper's ``urls_<class>.txt``, manifests): counted, not validated.
An HTML page saved as ``.jpg`` is still caught, because its extension is not in this list."""

MANIFEST_COLUMNS = (
    "split",
    "class",
    "group",
    "source_group",
    "near_dup_cluster",
    "sha256",
    "phash",
    "source_path",
    "cached_path",
    "width",
    "height",
    "cache_width",
    "cache_height",
)
REPORT_NAME = "curation_report.json"


def read_report(curated: Path | str) -> dict[str, Any]:
    """A curated folder's report, or a one-line error when the folder is not a curated dataset."""
    curated = Path(curated)
    report = read_json(curated / REPORT_NAME)
    if report is None:
        raise NsfwLabError(f"{curated}: not a curated dataset (no {REPORT_NAME}); run `nsfw-lab curate SRC {curated}`")
    return report


@dataclass(frozen=True)
class CurateConfig:
    """Settings of one curation; the report records them."""

    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    short_side: int = 256
    phash_threshold: int = 8  # max Hamming distance (of 64 bits) for a near-duplicate
    min_side: int = 32  # smaller images are quarantined (icons, tracking pixels)
    max_pixels: int = MAX_PIXELS_DEFAULT
    jpeg_quality: int = 95
    groups: str | None = None  # CSV with a group column (and file or sha256); default: SRC/manifest.csv
    blank_std: float = 2.0  # grey-level standard deviation under which an image is blank
    placeholder_copies: int = 10  # this many near-identical files (any classes) = a host's "removed" card

    def validate(self) -> None:
        """Raise NsfwLabError naming the first invalid setting (checked before any work)."""
        checks = [
            (
                0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1,
                f"--val and --test must be >= 0 with val + test < 1 (got {self.val}, {self.test})",
            ),
            (16 <= self.short_side <= 4096, f"--short-side must be in 16..4096 (got {self.short_side})"),
            (
                0 <= self.phash_threshold <= MAX_PHASH_THRESHOLD,
                f"--phash-threshold must be in 0..{MAX_PHASH_THRESHOLD} (got {self.phash_threshold})",
            ),
            (1 <= self.min_side <= 4096, f"--min-side must be in 1..4096 (got {self.min_side})"),
            (self.max_pixels >= 1, f"max_pixels must be positive (got {self.max_pixels})"),
            (1 <= self.jpeg_quality <= 100, f"jpeg_quality must be in 1..100 (got {self.jpeg_quality})"),
            (self.blank_std >= 0, f"blank_std must be >= 0 (got {self.blank_std})"),
            (self.placeholder_copies >= 2, f"--placeholder-copies must be >= 2 (got {self.placeholder_copies})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise NsfwLabError(msg)


@dataclass
class _Rec:
    rel: str
    cls: str
    ok: bool = False
    reason: str = ""
    detail: str = ""
    sha256: str = ""
    phash: str = ""
    width: int = 0
    height: int = 0
    cache_w: int = 0
    cache_h: int = 0


def scan(src: Path) -> tuple[list[str], list[tuple[str, str]], int]:
    """Class names, (relative path, class) of every candidate file in sorted order, and ignored count."""
    classes = sorted(
        p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_DIRS
    )
    files: list[tuple[str, str]] = []
    ignored = 0
    for cls in classes:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(src / cls):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in IGNORED_DIRS)
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                if Path(name).suffix.lower() in IGNORED_SUFFIXES:
                    ignored += 1
                    continue
                found.append((Path(dirpath) / name).relative_to(src).as_posix())
        files += [(rel, cls) for rel in sorted(found)]
    return classes, files, ignored


def cache_image(img: Image.Image, short_side: int, quality: int) -> bytes:
    """Resize so the short side is at most ``short_side`` (aspect kept, never upscaled); JPEG bytes."""
    w, h = img.size
    s = min(w, h)
    if s > short_side:
        img = img.resize(
            (max(1, round(w * short_side / s)), max(1, round(h * short_side / s))),
            Image.Resampling.LANCZOS,
            reducing_gap=3.0,
        )
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _inspect(args: tuple[Path, str, str, Path, CurateConfig]) -> _Rec:
    """Worker: validate one file, hash it and stage its cached copy as ``staging/<sha256>.jpg``."""
    src, rel, cls, staging, cfg = args
    rec = _Rec(rel, cls)
    path = src / rel
    try:
        data = path.read_bytes()
        img = decode_image_bytes(data, path, max_pixels=cfg.max_pixels, min_side=cfg.min_side)
    except ImageLoadError as exc:
        rec.reason, rec.detail = exc.reason, exc.detail
        return rec
    except OSError as exc:
        rec.reason, rec.detail = "unreadable", f"cannot read file ({exc.strerror or exc})"
        return rec
    rec.sha256 = sha256_hex(data)
    rec.width, rec.height = img.size
    std = ImageStat.Stat(img.convert("L").reduce(max(1, min(img.size) // 64))).stddev[0]
    if std < cfg.blank_std:
        rec.reason, rec.detail = "blank", f"blank image (grey-level spread {std:.2f} < {cfg.blank_std})"
        return rec
    cached = cache_image(img, cfg.short_side, cfg.jpeg_quality)
    target = staging / f"{rec.sha256}.jpg"
    if not target.exists():
        atomic_write_bytes(target, cached, fsync=False)  # inside the staged OUT: its rename commits it
    with Image.open(io.BytesIO(cached)) as back:  # hash what training will read
        back.load()
        rec.cache_w, rec.cache_h = back.size
        rec.phash = phash_hex(back)
    rec.ok = True
    return rec


def _check_paths(src: Path, out: Path) -> None:
    if not src.is_dir():
        raise NsfwLabError(f"{src}: not a folder (expected SRC/<class>/<images>)")
    if out == src or src in out.parents:
        raise NsfwLabError(f"{out}: OUT must not be inside SRC (curation never writes under SRC)")
    if out in src.parents:
        raise NsfwLabError(f"{out}: OUT must not contain SRC")


def curate(
    src: Path,
    out: Path,
    cfg: CurateConfig = CurateConfig(),
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Curate ``src`` into ``out`` and return the report (also written to ``out/curation_report.json``)."""
    src, out = Path(src).resolve(), Path(out).resolve()
    _check_paths(src, out)
    cfg.validate()
    if (src / REPORT_NAME).is_file():
        raise NsfwLabError(f"{src}: is already a curated dataset (it has {REPORT_NAME}); use it as it is")
    classes, files, ignored = scan(src)
    if not files:
        raise NsfwLabError(f"{src}: no files found in class folders (expected SRC/<class>/<images>)")
    groups_path = Path(cfg.groups) if cfg.groups else (src / "manifest.csv")
    by_sha, by_rel = load_known_groups(groups_path, src) if groups_path.is_file() else ({}, {})
    if cfg.groups and not groups_path.is_file():
        raise NsfwLabError(f"{groups_path}: group manifest not found")
    with staged_dir(out, overwrite=overwrite, owned_marker=REPORT_NAME) as tmp:
        staging = tmp / ".staging"
        staging.mkdir()
        recs = list(
            imap_ordered(
                _inspect,
                ((src, rel, cls, staging, cfg) for rel, cls in files),
                total=len(files),
                workers=workers,
                desc="validate+hash",
                progress=progress,
            )
        )
        report = _finish(src, tmp, staging, recs, classes, ignored, by_sha, by_rel, cfg, workers, progress)
        report["groups_manifest"] = str(groups_path) if (by_sha or by_rel) else None
        shutil.rmtree(staging)
        atomic_write_json(tmp / REPORT_NAME, report)
    return report


def _finish(
    src: Path,
    tmp: Path,
    staging: Path,
    recs: list[_Rec],
    classes: list[str],
    ignored: int,
    by_sha: dict[str, str],
    by_rel: dict[str, str],
    cfg: CurateConfig,
    workers: int | None,
    progress: bool,
) -> dict:
    # One near-duplicate search over every usable file serves the placeholder, conflict and group steps.
    ok = [r for r in recs if r.ok]
    nodes, node_pairs = near_duplicate_nodes([r.phash for r in ok], max(cfg.phash_threshold, PLACEHOLDER_RADIUS))
    index = NearIndex(nodes, node_pairs)
    node_of = {id(r): u for r, u in zip(ok, nodes, strict=True)}
    # 0. placeholders: a card repeated many times (re-encodings included) is a host's "image removed" image
    flagged = placeholder_nodes(index, PLACEHOLDER_RADIUS, cfg.placeholder_copies)
    for r in ok:
        n = flagged.get(node_of[id(r)])
        if n is not None:
            r.ok, r.reason = False, "placeholder"
            r.detail = (
                f"{n} files within {PLACEHOLDER_RADIUS} bits of pHash {r.phash} "
                f"(>= {cfg.placeholder_copies}): a repeated placeholder image"
            )
    bad = [r for r in recs if not r.ok]
    write_csv(
        tmp / "quarantine.csv",
        ("source_path", "class", "reason", "detail"),
        ((r.rel, r.cls, r.reason, r.detail) for r in bad),
    )
    # 1. byte-identical copies within a class: keep the first path
    usable = [r for r in recs if r.ok]
    first_idx, dups = exact_duplicates([r.cls for r in usable], [r.rel for r in usable], [r.sha256 for r in usable])
    write_csv(tmp / "duplicates.csv", ("source_path", "class", "duplicate_of", "sha256"), dups)
    cand = [usable[i] for i in first_idx]
    # 2. near-duplicates over the whole set; a match across classes is a label conflict (dropped)
    cand_nodes = [node_of[id(r)] for r in cand]
    present = set(cand_nodes)
    near_pairs = [p for p in index.within(cfg.phash_threshold) if p[0] in present and p[1] in present]
    conflicts = label_conflicts(cand_nodes, near_pairs, [r.cls for r in cand], [r.rel for r in cand])
    write_csv(
        tmp / "label_conflicts.csv",
        ("source_path", "class", "also_in", "matches", "sha256", "phash"),
        (
            (cand[i].rel, cand[i].cls, " ".join(sorted(o)), o[min(o)], cand[i].sha256, cand[i].phash)
            for i, o in sorted(conflicts.items())
        ),
    )
    kept = [r for i, r in enumerate(cand) if i not in conflicts]
    if not kept:
        raise NsfwLabError(f"{src}: no usable image left after curation (see the quarantine reasons)")
    # 3. split units: near-duplicate clusters merged with known galleries
    kept_nodes = [node_of[id(r)] for r in kept]
    present = set(kept_nodes)
    known = [by_sha.get(r.sha256) or by_rel.get(r.rel) or "" for r in kept]
    units = split_units(kept_nodes, [p for p in near_pairs if p[0] in present and p[1] in present], known)
    if (by_sha or by_rel) and not units.known_groups and cfg.groups:
        raise NsfwLabError(f"{cfg.groups}: no group id matched any file (check its sha256/file columns)")
    dup_cluster = units.dup_cluster
    cluster_sizes = Counter(dup_cluster)
    unit_name = {u: f"u{n:06d}" for n, u in enumerate(sorted(set(units.unit)))}
    labels = [r.cls for r in kept]
    present_classes = set(labels)
    empty = [c for c in classes if c not in present_classes]
    classes = [c for c in classes if c in present_classes]
    splits = group_stratified_split(labels, units.unit, cfg.val, cfg.test, cfg.seed)
    # 4. move the staged cache into place and write the manifest
    for s in SPLITS:
        for c in classes:
            (tmp / s / c).mkdir(parents=True, exist_ok=True)
    rows = []
    for k, r in enumerate(kept):
        cached = f"{splits[k]}/{r.cls}/{r.sha256[:20]}.jpg"
        os.replace(staging / f"{r.sha256}.jpg", tmp / cached)
        cl = dup_cluster[k]
        rows.append(
            (
                splits[k],
                r.cls,
                unit_name[units.unit[k]],
                known[k],
                f"d{cl:06d}" if cluster_sizes[cl] > 1 else "",
                r.sha256,
                r.phash,
                r.rel,
                cached,
                r.width,
                r.height,
                r.cache_w,
                r.cache_h,
            )
        )
    rows.sort(key=lambda row: (SPLITS.index(row[0]), row[1], row[8]))
    write_csv(tmp / "manifest.csv", MANIFEST_COLUMNS, rows)
    leakage = leakage_check(tmp, rows, cfg.phash_threshold, workers, progress)
    if not leakage["passed"]:
        raise NsfwLabError(f"{src}: leakage check failed after splitting ({leakage}); nothing written")
    reasons = Counter(r.reason for r in bad)
    table = split_table(labels, splits)
    gap = max_proportion_gap(labels, splits)
    warnings = [f"class folder {c!r} has no usable image and was left out" for c in empty]
    warnings += [
        f"class {c!r} has no image in {s}"
        for c in classes
        for s in SPLITS
        if table[c][s] == 0 and {"val": cfg.val, "test": cfg.test, "train": 1}[s] > 0
    ]
    if gap > 0.05:
        warnings.append(
            f"class proportions differ by up to {gap:.1%} between splits (groups too large for "
            "the dataset size); treat per-split metrics with care"
        )
    return {
        "warnings": warnings,
        "source": str(src),
        "classes": classes,
        "settings": asdict(cfg),
        "files_seen": len(recs),
        "metadata_files_ignored": ignored,
        "quarantined": len(bad),
        "quarantined_by_reason": dict(sorted(reasons.items())),
        "exact_duplicates_removed": len(dups),
        "near_duplicate_pairs": units.near_pairs,
        "near_duplicate_clusters": sum(1 for n in cluster_sizes.values() if n > 1),
        "label_conflicts_dropped": len(conflicts),
        "kept": len(kept),
        "groups": len(unit_name),
        "known_groups": units.known_groups,
        "counts": table,
        "max_class_proportion_gap": round(gap, 4),
        "leakage_check": leakage,
    }
