"""``nsfw-lab prepare``: make the data a profile needs, redoing a step only when its inputs changed.

Default (offline): generate the synthetic proxy into ``data/raw/proxy-<profile>`` and curate it into
``data/processed/proxy-<profile>``. With ``--data DIR``: use DIR if it is already curated, otherwise
curate it (a scraper ``raw_data`` copy, ``data/train``, any ImageFolder) into ``data/processed/``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

from nsfw_lab import config
from nsfw_lab.data.curate import REPORT_NAME, CurateConfig, curate, read_report
from nsfw_lab.data.synth import SynthConfig, generate
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_json, read_json


def _same(path: Path, expected: dict) -> bool:
    """True when the JSON at ``path`` has every key of ``expected`` with the same value."""
    try:
        have = read_json(path) or {}
    except (OSError, NsfwLabError):
        return False
    expected = json.loads(json.dumps(expected))
    return all(have.get(k) == v for k, v in expected.items())


STAMP = ".prepare_stamp.json"


def source_fingerprint(src: Path) -> str:
    """SHA-256 over every file's path, size and modification time under ``src`` (cheap: no reads)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.stat()
            h.update(f"{p.relative_to(src).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ensure_proxy(raw: Path, cfg: SynthConfig, progress: bool = True) -> Path:
    """Generate the proxy ``cfg`` into ``raw`` unless ``raw`` already holds exactly that; returns ``raw``."""
    if not _same(raw / "synth_config.json", asdict(cfg)):
        generate(raw, cfg, overwrite=raw.exists(), progress=progress)
    return raw


def ensure_curated(src: Path, out: Path, cfg: CurateConfig, progress: bool = True) -> dict:
    """Curate ``src`` into ``out`` unless ``out`` already holds a curation of the same files with ``cfg``.

    "The same files" means the same paths, sizes and modification times (recorded in ``out/.prepare_stamp.json``).
    """
    src = src.resolve()
    expected = {"source": str(src), "settings": asdict(cfg), "fingerprint": source_fingerprint(src)}
    if (out / REPORT_NAME).is_file() and _same(out / STAMP, expected):
        return read_report(out)
    report = curate(src, out, cfg, overwrite=out.exists(), progress=progress)
    atomic_write_json(out / STAMP, expected)
    return report


def prepare(
    profile_name: str = config.DEFAULT_PROFILE, data: Path | None = None, seed: int = 0, progress: bool = True
) -> Path:
    """Make the curated dataset for ``profile_name``; returns its folder."""
    profile = config.get_profile(profile_name)
    ccfg = CurateConfig(seed=seed, short_side=profile.short_side, val=profile.val_fraction, test=profile.test_fraction)
    if data is None:
        raw = config.proxy_raw_dir(profile)
        scfg = SynthConfig(per_class=profile.per_class, size=profile.proxy_px, seed=seed)
        ensure_proxy(raw, scfg, progress)
        out = config.proxy_curated_dir(profile)
        report = ensure_curated(raw, out, ccfg, progress)
    else:
        data = Path(data).expanduser().resolve()
        if (data / REPORT_NAME).is_file():
            out, report = data, read_report(data)
        else:
            out = config.PROCESSED_DIR / f"{data.name}-{profile.name}"
            report = ensure_curated(data, out, ccfg, progress)
    atomic_write_json(config.METRICS_DIR / f"data_{out.name}.json", {"curated_dir": str(out), **report})
    return out


def prepare_shortcut(
    profile_name: str = config.DEFAULT_PROFILE, seed: int = 0, progress: bool = True
) -> tuple[Path, Path]:
    """The shortcut experiment's data: a proxy generated with ``--shortcut`` (a corner badge on most ``porn``
    images and a few others), curated, and its *twin*: the same files rendered without any badge (not
    curated; the badge-free counterfactual of each test image is read from it). Returns (curated, twin)."""
    profile = config.get_profile(profile_name)
    base = SynthConfig(per_class=profile.per_class, size=profile.proxy_px, seed=seed, shortcut=True)
    raw = config.RAW_DIR / f"proxy-{profile.name}-shortcut"
    twin = config.RAW_DIR / f"proxy-{profile.name}-shortcut-twin"
    for folder, scfg in ((raw, base), (twin, replace(base, draw_watermarks=False))):
        ensure_proxy(folder, scfg, progress)
    out = config.PROCESSED_DIR / f"proxy-{profile.name}-shortcut"
    ensure_curated(
        raw,
        out,
        CurateConfig(seed=seed, short_side=profile.short_side, val=profile.val_fraction, test=profile.test_fraction),
        progress,
    )
    return out, twin


def prepare_clips(profile_name: str = config.DEFAULT_PROFILE, seed: int = 0, progress: bool = True) -> Path:
    """The animated proxy (:mod:`nsfw_lab.data.synth.clips`) a profile's notebook 07 judges: val and test clips of
    ``course.clip_per_class`` per class at the profile's cache size, in ``data/raw/clips-<profile>`` (made once)."""
    from nsfw_lab.data.synth.clips import ClipConfig, generate_clips

    profile = config.get_profile(profile_name)
    cfg = ClipConfig(per_class=profile.course.clip_per_class, size=profile.short_side, seed=seed)
    out = config.RAW_DIR / f"clips-{profile.name}"
    if not _same(out / "clips_config.json", asdict(cfg)):
        generate_clips(out, cfg, overwrite=out.exists(), progress=progress)
    return out
