"""The data stage's commands: ``synth``, ``curate``, ``download`` (:mod:`nsfw_lab.data.download.cli`),
``prepare`` and ``check``. Defaults come from the config dataclasses."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nsfw_lab import config
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.cli import Subparsers, from_args


def _synth(a: argparse.Namespace) -> None:
    from nsfw_lab.data.synth import Difficulty, SynthConfig, generate

    cfg = from_args(SynthConfig, a, difficulty=from_args(Difficulty, a))
    manifest = generate(Path(a.out), cfg, workers=a.workers, overwrite=a.overwrite)
    print(f"wrote {manifest}")


def _curate(a: argparse.Namespace) -> None:
    from nsfw_lab.data.curate import CurateConfig, curate

    r = curate(Path(a.src), Path(a.out), from_args(CurateConfig, a), workers=a.workers, overwrite=a.overwrite)
    print_summary(Path(a.out), r)


def print_summary(out: Path, r: dict) -> None:
    """The curation summary and its per-class table (warnings on standard error)."""
    print(
        f"curated {r['kept']} images into {out} ({r['quarantined']} quarantined, "
        f"{r['exact_duplicates_removed']} duplicates removed, {r['label_conflicts_dropped']} label conflicts "
        f"dropped, {r['groups']} groups, leakage check {'passed' if r['leakage_check']['passed'] else 'FAILED'})"
    )
    print(f"{'class':<12}{'train':>7}{'val':>7}{'test':>7}")
    for c, n in r["counts"].items():
        print(f"{c:<12}{n['train']:>7}{n['val']:>7}{n['test']:>7}")
    for w in r.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)


def _prepare(a: argparse.Namespace) -> None:
    from nsfw_lab.data.curate import read_report
    from nsfw_lab.data.prepare import prepare

    out = prepare(a.profile, Path(a.data) if a.data else None, seed=a.seed)
    r = read_report(out)
    print_summary(out, r)


def _check(a: argparse.Namespace) -> None:
    from nsfw_lab.data.imageio import ImageLoadError, load_image

    bad = 0
    for f in a.files:
        try:
            im = load_image(f)
            print(f"ok    {f}: {im.size[0]}x{im.size[1]}")
        except ImageLoadError as exc:
            bad += 1
            print(f"bad   {exc} [{exc.reason}]")
    if bad:
        raise NsfwLabError(f"{bad} of {len(a.files)} files are not usable images")


def add_parser(sub: Subparsers) -> None:
    """Register ``synth``, ``curate``, ``download``, ``prepare`` and ``check``."""
    from nsfw_lab.data.curate import CurateConfig
    from nsfw_lab.data.download.cli import add_parser as add_download
    from nsfw_lab.data.synth import Difficulty, SynthConfig

    S, D, C = SynthConfig(), Difficulty(), CurateConfig()
    s = sub.add_parser("synth", help="generate the synthetic proxy dataset (abstract renderings)")
    s.add_argument("out", help="output folder: OUT/<class>/*.jpg and OUT/manifest.csv")
    s.add_argument("--per-class", type=int, default=S.per_class, help="images per class (default %(default)s)")
    s.add_argument("--size", type=int, default=S.size, help="short side in pixels (default %(default)s)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shortcut", action="store_true", help="add a fixed-position watermark badge to most of one class")
    s.add_argument("--shortcut-class", default="porn")
    s.add_argument("--shortcut-rate", type=float, default=S.shortcut_rate, help="share of that class watermarked")
    s.add_argument("--shortcut-leak", type=float, default=S.shortcut_leak, help="share of other classes watermarked")
    s.add_argument("--gallery-size", type=int, nargs=2, default=S.gallery_size, metavar=("MIN", "MAX"))
    s.add_argument("--near-dup-rate", type=float, default=S.near_dup_rate)
    s.add_argument(
        "--exact-dup-rate", type=float, default=S.exact_dup_rate, help="byte-identical reposts within a class"
    )
    s.add_argument("--conflict-rate", type=float, default=S.conflict_rate, help="reposts into the confusable class")
    s.add_argument("--corrupt-rate", type=float, default=S.corrupt_rate, help="broken downloads added per class")
    s.add_argument("--placeholder-rate", type=float, default=S.placeholder_rate, help="'image removed' cards per class")
    s.add_argument("--label-noise", type=float, default=S.label_noise)
    s.add_argument(
        "--motif-scale",
        type=float,
        nargs=2,
        default=D.motif_scale,
        metavar=("MIN", "MAX"),
        help="motif diameter as a share of the short side",
    )
    s.add_argument("--motif-contrast", type=float, default=D.motif_contrast, help="1 = full, lower = fainter motif")
    s.add_argument(
        "--occlusion",
        type=float,
        nargs=2,
        default=D.occlusion,
        metavar=("MIN", "MAX"),
        help="share of the motif covered in 'partly covered' images",
    )
    s.add_argument("--decoy-rate", type=float, default=D.decoy_rate)
    s.add_argument("--cover-rate", type=float, default=D.cover_rate)
    s.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_synth)

    c = sub.add_parser(
        "curate",
        help="validate, deduplicate, split (group-aware) and cache an ImageFolder",
        description="Quarantines bad, blank and placeholder files, drops exact duplicates and cross-class conflicts, "
        "clusters near-duplicates (pHash), splits group-aware (galleries and clusters never straddle splits), "
        "writes a pre-resized cache and curation_report.json with a leakage check (data/README.md). Outputs appear "
        "only when complete; --overwrite replaces only a folder nsfw-lab made.",
    )
    c.add_argument("src", help="SRC/<class>/... (nested folders and any extension allowed)")
    c.add_argument("out")
    c.add_argument("--val", type=float, default=C.val)
    c.add_argument("--test", type=float, default=C.test)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--short-side", type=int, default=C.short_side, help="short side of the cache (default %(default)s)")
    c.add_argument(
        "--phash-threshold", type=int, default=C.phash_threshold, help="Hamming distance for near-duplicates (0..16)"
    )
    c.add_argument("--min-side", type=int, default=C.min_side, help="quarantine smaller images")
    c.add_argument(
        "--placeholder-copies",
        type=int,
        default=C.placeholder_copies,
        help="this many near-identical files (pHash within 4 bits, any class) are quarantined as placeholders",
    )
    c.add_argument(
        "--groups",
        help="CSV with group ids (group or group_id, + file or sha256), e.g. a download's manifest.csv; "
        "default SRC/manifest.csv",
    )
    c.add_argument("--workers", type=int, default=None)
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=_curate)

    add_download(sub)

    r = sub.add_parser(
        "prepare",
        help="make the curated data a profile needs (what `make study` runs)",
        description="Generates the profile's proxy and curates it (or curates --data); a step is redone only when "
        "its settings or its source files (paths, sizes, times) changed.",
    )
    r.add_argument("--profile", default=config.DEFAULT_PROFILE, choices=sorted(config.PROFILES))
    r.add_argument("--data", help="a curated folder, or an ImageFolder to curate (default: the proxy)")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_prepare)

    k = sub.add_parser("check", help="validate image files with the robust loader")
    k.add_argument("files", nargs="+")
    k.set_defaults(func=_check)
