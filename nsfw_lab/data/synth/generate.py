"""``nsfw-lab synth``: write the synthetic proxy as ``OUT/<class>/*.jpg`` plus ``OUT/manifest.csv``.

The proxy copies the *structure* of the nsfw_data_scraper data (five class folders, galleries of
related images, near-duplicate reposts, cross-class reposts, a few broken downloads, an optional
single-site watermark) with abstract renderings, and records the ground truth the real data lacks:
gallery ids, the evidence box of each image, which file is a near-duplicate of which, watermarks and
label noise.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nsfw_lab.config import CLASSES
from nsfw_lab.data.synth.render import Box, Difficulty, make_scene, render
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_json, staged_dir, write_csv
from nsfw_lab.utils.parallel import imap_ordered

CLASS_FACTORS: dict[str, tuple[str, str]] = {
    "neutral": ("photo", "absent"),
    "sexy": ("photo", "partial"),
    "porn": ("photo", "visible"),
    "drawings": ("drawing", "absent"),
    "hentai": ("drawing", "visible"),
}
"""class -> (rendering style, target motif). The real taxonomy's structure as two factors."""

CONFUSABLE: dict[str, str] = {
    "porn": "sexy",
    "sexy": "porn",
    "hentai": "drawings",
    "drawings": "hentai",
    "neutral": "sexy",
}
"""Where label noise and cross-class reposts go: the confusions users report on the real data."""

MANIFEST_COLUMNS = (
    "file",
    "class",
    "group",
    "sha256",
    "evidence_box",
    "near_duplicate_of",
    "watermark",
    "kind",
    "true_class",
    "style",
    "motif",
    "width",
    "height",
)


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the proxy; equal configs give byte-identical output."""

    per_class: int = 200
    size: int = 128  # short side of each image, pixels
    seed: int = 0
    shortcut: bool = False
    shortcut_class: str = "porn"
    shortcut_rate: float = 0.6  # share of shortcut_class images carrying the watermark
    shortcut_leak: float = 0.02  # share of every other class carrying it
    draw_watermarks: bool = True  # False: plan them as usual, draw none (the shortcut proxy's badge-free twin)
    gallery_size: tuple[int, int] = (1, 12)  # images per gallery, inclusive range
    near_dup_rate: float = 0.08  # share of each class that are near-duplicates of a gallery sibling
    exact_dup_rate: float = 0.01  # share of each class that are byte-identical reposts within the class
    conflict_rate: float = 0.005  # share of each class reposted into the confusable class
    corrupt_rate: float = 0.01  # broken "downloads" added per class (HTML, truncated, empty)
    placeholder_rate: float = 0.01  # "image removed" cards added per class (one fixed image, re-encoded)
    label_noise: float = 0.0  # share of images rendered as the confusable class
    difficulty: Difficulty = field(default_factory=Difficulty)

    def validate(self) -> None:
        """Raise NsfwLabError for out-of-range settings."""
        if self.per_class < 1:
            raise NsfwLabError(f"--per-class must be at least 1 (got {self.per_class})")
        if self.size < 32:
            raise NsfwLabError(f"--size must be at least 32 px (got {self.size})")
        if self.shortcut_class not in CLASSES:
            raise NsfwLabError(f"--shortcut-class must be one of {', '.join(CLASSES)}")
        for name in (
            "shortcut_rate",
            "shortcut_leak",
            "near_dup_rate",
            "exact_dup_rate",
            "conflict_rate",
            "corrupt_rate",
            "placeholder_rate",
            "label_noise",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise NsfwLabError(f"--{name.replace('_', '-')} must be in [0, 1] (got {v})")
        lo, hi = self.gallery_size
        if not 1 <= lo <= hi:
            raise NsfwLabError(f"--gallery-size must be 1 <= MIN <= MAX (got {lo} {hi})")
        if sum(_copy_counts(self)) >= self.per_class:
            raise NsfwLabError("the duplicate and repost rates leave no original images; lower them")
        problems = self.difficulty.problems()
        if problems:
            raise NsfwLabError("; ".join(problems))


@dataclass(frozen=True)
class _Job:
    file: str
    cls: str
    true_cls: str
    group: str
    scene_seed: int
    image_seed: int
    watermark: bool


def _render_job(args: tuple[_Job, SynthConfig]) -> tuple[bytes, Box | None, tuple[int, int]]:
    job, cfg = args
    style, motif = CLASS_FACTORS[job.true_cls]
    scene = make_scene(np.random.default_rng(job.scene_seed), style, cfg.size, cfg.difficulty)
    rng = np.random.default_rng(job.image_seed)
    img, box = render(scene, motif, rng, cfg.difficulty, watermark=job.watermark and cfg.draw_watermarks)
    quality = int(rng.integers(80, 96))
    return _jpeg(img, quality), box, img.size


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _file_numbers(cfg: SynthConfig, cls: str) -> np.ndarray:
    """Shuffled file numbers of a class, so that galleries are not contiguous in a listing."""
    return np.random.default_rng([cfg.seed, 10, CLASSES.index(cls)]).permutation(cfg.per_class)


def _plan(cfg: SynthConfig) -> list[_Job]:
    """Assign every original image to a class, gallery, seeds and watermark flag."""
    rng = np.random.default_rng([cfg.seed, 1])
    jobs: list[_Job] = []
    gid = 0
    for cls in CLASSES:
        n_orig = max(1, cfg.per_class - sum(_copy_counts(cfg)))
        names = _file_numbers(cfg, cls)
        k = 0
        while k < n_orig:
            size = min(int(rng.integers(cfg.gallery_size[0], cfg.gallery_size[1] + 1)), n_orig - k)
            group = f"g{gid:05d}"
            gid += 1
            true_cls = CONFUSABLE[cls] if rng.random() < cfg.label_noise else cls
            scene_seed = int(rng.integers(2**62))
            for _ in range(size):
                share = cfg.shortcut_rate if cls == cfg.shortcut_class else cfg.shortcut_leak
                wm = bool(cfg.shortcut and rng.random() < share)
                jobs.append(
                    _Job(
                        f"{cls}/{cls}_{int(names[k]):05d}.jpg",
                        cls,
                        true_cls,
                        group,
                        scene_seed,
                        int(rng.integers(2**62)),
                        wm,
                    )
                )
                k += 1
    return jobs


def _near_duplicate(
    data: bytes, box: Box | None, rng: np.random.Generator
) -> tuple[bytes, Box | None, tuple[int, int]]:
    """Re-encoded, rescaled and slightly cropped copy; the evidence box follows the transform."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    cl, ct, cr, cb = (int(rng.integers(0, max(1, int(d * 0.04)) + 1)) for d in (w, h, w, h))
    img = img.crop((cl, ct, w - cr, h - cb))
    s = float(rng.uniform(0.7, 1.3))
    nw, nh = max(8, round(img.width * s)), max(8, round(img.height * s))
    sx, sy = nw / img.width, nh / img.height
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    new_box = None
    if box is not None:
        x0, y0, x1, y1 = box
        new_box = (
            max(0, int((x0 - cl) * sx)),
            max(0, int((y0 - ct) * sy)),
            min(nw, round((x1 - cl) * sx)),
            min(nh, round((y1 - ct) * sy)),
        )
    return _jpeg(img, int(rng.integers(55, 90))), new_box, (nw, nh)


_BROKEN = (
    ("html", b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>gone</body></html>\n"),
    ("json", b'{"data": {"error": "Imgur is temporarily over capacity"}, "success": false, "status": 503}\n'),
    ("empty", b""),
    ("truncated", None),
)


def _box_str(box: Box | None) -> str:
    return "" if box is None else " ".join(str(v) for v in box)


def generate(
    out: Path, cfg: SynthConfig, workers: int | None = None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Generate the proxy into ``out`` (built aside and moved into place when complete).

    Returns the manifest path. ``workers`` processes render in parallel (default: all cores);
    the output does not depend on it.
    """
    cfg.validate()
    jobs = _plan(cfg)
    rows: dict[str, dict] = {}
    with staged_dir(Path(out), overwrite=overwrite, owned_marker="synth_config.json") as tmp:
        for cls in CLASSES:
            (tmp / cls).mkdir()
        results = imap_ordered(
            _render_job, [(j, cfg) for j in jobs], total=len(jobs), workers=workers, desc="synth", progress=progress
        )
        for job, (data, box, (w, h)) in zip(jobs, results, strict=True):
            (tmp / job.file).write_bytes(data)
            rows[job.file] = _row(
                job.file,
                job.cls,
                job.group,
                data,
                box,
                "",
                job.watermark and cfg.draw_watermarks,
                "original",
                job.true_cls,
                w,
                h,
            )
        _add_copies(tmp, cfg, jobs, rows)
        _add_broken(tmp, cfg, rows)
        ordered = [rows[k] for k in sorted(rows)]
        write_csv(tmp / "manifest.csv", MANIFEST_COLUMNS, ([r[c] for c in MANIFEST_COLUMNS] for r in ordered))
        atomic_write_json(tmp / "synth_config.json", {"generator": "nsfw_lab.synth", **asdict(cfg)})
    return Path(out) / "manifest.csv"


def _row(
    file: str,
    cls: str,
    group: str,
    data: bytes,
    box: Box | None,
    dup_of: str,
    wm: bool,
    kind: str,
    true_cls: str,
    w: int,
    h: int,
) -> dict:
    style, motif = CLASS_FACTORS[true_cls]
    return {
        "file": file,
        "class": cls,
        "group": group,
        "sha256": hashlib.sha256(data).hexdigest(),
        "evidence_box": _box_str(box),
        "near_duplicate_of": dup_of,
        "watermark": int(wm),
        "kind": kind,
        "true_class": true_cls,
        "style": style,
        "motif": motif,
        "width": w,
        "height": h,
    }


def _parse_box(s: str) -> Box | None:
    return tuple(int(v) for v in s.split()) if s else None  # type: ignore[return-value]


def planted_count(per_class: int, rate: float) -> int:
    """How many planted files a rate gives per class: rounded, but at least one when the rate is not 0."""
    return max(1, round(per_class * rate)) if rate > 0 else 0


def _copy_counts(cfg: SynthConfig) -> tuple[int, int, int]:
    """Per class: near-duplicates, exact duplicates, cross-class reposts."""
    return (
        planted_count(cfg.per_class, cfg.near_dup_rate),
        planted_count(cfg.per_class, cfg.exact_dup_rate),
        planted_count(cfg.per_class, cfg.conflict_rate),
    )


def _add_copies(tmp: Path, cfg: SynthConfig, jobs: list[_Job], rows: dict[str, dict]) -> None:
    """Near-duplicates and byte-identical reposts inside each class, and reposts into the confusable
    class (label conflicts; half of them byte-identical)."""
    rng = np.random.default_rng([cfg.seed, 2])
    by_cls: dict[str, list[_Job]] = {c: [j for j in jobs if j.cls == c] for c in CLASSES}
    used = {c: len(v) for c, v in by_cls.items()}
    for cls in CLASSES:
        n_near, n_exact, n_conf = _copy_counts(cfg)
        names = _file_numbers(cfg, cls)
        for i in range(n_near + n_exact + n_conf):
            kind = "near_duplicate" if i < n_near else "exact_duplicate" if i < n_near + n_exact else "conflict_copy"
            src_cls = CONFUSABLE[cls] if kind == "conflict_copy" else cls
            src = by_cls[src_cls][int(rng.integers(len(by_cls[src_cls])))]
            srow = rows[src.file]
            data = (tmp / src.file).read_bytes()
            box = _parse_box(srow["evidence_box"])
            if kind == "exact_duplicate" or (kind == "conflict_copy" and rng.random() < 0.5):
                new, w, h = data, srow["width"], srow["height"]
            else:
                new, box, (w, h) = _near_duplicate(data, box, rng)
            if used[cls] >= cfg.per_class:
                break
            file = f"{cls}/{cls}_{int(names[used[cls]]):05d}.jpg"
            used[cls] += 1
            (tmp / file).write_bytes(new)
            rows[file] = _row(
                file, cls, src.group, new, box, src.file, bool(srow["watermark"]), kind, srow["true_class"], w, h
            )


def placeholder_image(size: int) -> Image.Image:
    """The proxy's "image removed" card: a grey card with a broken-picture glyph (abstract, no text)."""
    w, h = size * 3 // 2, size
    img = Image.new("RGB", (w, h), (222, 222, 222))
    d = ImageDraw.Draw(img)
    u = size // 8
    d.rectangle(
        (w // 2 - 2 * u, h // 2 - 1.5 * u, w // 2 + 2 * u, h // 2 + 1.5 * u),
        outline=(150, 150, 150),
        width=max(1, u // 3),
    )
    d.polygon(
        [(w // 2 - 1.5 * u, h // 2 + u), (w // 2 - 0.3 * u, h // 2 - 0.5 * u), (w // 2 + 0.6 * u, h // 2 + u)],
        fill=(170, 170, 170),
    )
    d.ellipse((w // 2 + 0.6 * u, h // 2 - u, w // 2 + 1.3 * u, h // 2 - 0.3 * u), fill=(170, 170, 170))
    return img


def _add_broken(tmp: Path, cfg: SynthConfig, rows: dict[str, dict]) -> None:
    """Files that only pretend to be images (dead downloads), and the host's "removed" placeholder card
    re-encoded in every class, as the scraper's dead Imgur links give."""
    rng = np.random.default_rng([cfg.seed, 3])
    n = planted_count(cfg.per_class, cfg.corrupt_rate)
    card = placeholder_image(cfg.size)
    for cls in CLASSES:
        originals = sorted(f for f, r in rows.items() if r["class"] == cls and r["kind"] == "original")
        for i in range(n):
            name, data = _BROKEN[int(rng.integers(len(_BROKEN)))]
            if data is None:
                src = (tmp / originals[int(rng.integers(len(originals)))]).read_bytes()
                data = src[: len(src) * 3 // 5]
            file = f"{cls}/broken_{i:03d}_{name}.jpg"
            (tmp / file).write_bytes(data)
            rows[file] = _broken_row(file, cls, data, f"corrupt_{name}")
        for i in range(planted_count(cfg.per_class, cfg.placeholder_rate)):
            data = _jpeg(card, int(rng.integers(70, 96)))
            file = f"{cls}/removed_{i:03d}.jpg"
            (tmp / file).write_bytes(data)
            rows[file] = _broken_row(file, cls, data, "placeholder") | {"width": card.width, "height": card.height}


def _broken_row(file: str, cls: str, data: bytes, kind: str) -> dict:
    return {
        "file": file,
        "class": cls,
        "group": "",
        "sha256": hashlib.sha256(data).hexdigest(),
        "evidence_box": "",
        "near_duplicate_of": "",
        "watermark": 0,
        "kind": kind,
        "true_class": "",
        "style": "",
        "motif": "",
        "width": 0,
        "height": 0,
    }
