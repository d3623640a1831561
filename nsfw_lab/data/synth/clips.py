"""Animated proxy samples: short clips whose class motif is visible in *some* frames only.

A clip is one scene (:func:`nsfw_lab.data.synth.render.make_scene`) rendered ``frames`` times. Its class sets
the style and, frame by frame, the motif: porn and hentai clips show the motif in 2 to ``frames - 1`` of their
frames (absent in the rest, which then look like neutral or drawings frames), sexy clips show it partly
covered in as many, and neutral and drawings clips never. So judging a clip needs the frames as a whole: one
frame can be motif-free in a porn clip, and any frame of an allowed clip can be misread.

``OUT/<split>/<class>/<id>.<gif|webp|png>`` (the three animated formats in turn; ``.png`` is APNG) and
``OUT/manifest.csv`` (file, split, class, format, frames, the frames showing the motif as a 0/1 string).
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nsfw_lab.config import CLASSES
from nsfw_lab.data.synth.generate import CLASS_FACTORS
from nsfw_lab.data.synth.render import Difficulty, make_scene, render
from nsfw_lab.errors import NsfwLabError
from nsfw_lab.utils.fsutil import atomic_write_json, staged_dir, write_csv
from nsfw_lab.utils.progress import tqdm

CLIP_FORMATS = ("gif", "webp", "png")
CLIP_COLUMNS = ("file", "split", "class", "format", "frames", "motif_frames")


@dataclass(frozen=True)
class ClipConfig:
    """What determines the clips; equal configs give identical files."""

    per_class: int = 20  # clips per class and split
    frames: int = 8
    size: int = 96  # short side, pixels
    seed: int = 0
    splits: tuple[str, ...] = ("val", "test")
    difficulty: Difficulty = field(default_factory=Difficulty)

    def validate(self) -> None:
        """A one-line error for impossible settings."""
        if self.per_class < 1 or self.frames < 3 or self.size < 16:
            raise NsfwLabError(f"clips need per_class >= 1, frames >= 3 and size >= 16 (got {self})")


def frame_motifs(cls: str, frames: int, rng: np.random.Generator) -> list[str]:
    """Each frame's motif state for a clip of ``cls``: the class's own state in 2 .. frames-1 random frames."""
    motif = CLASS_FACTORS[cls][1]
    if motif == "absent":
        return ["absent"] * frames
    shown = set(rng.choice(frames, size=int(rng.integers(2, frames)), replace=False).tolist())
    return [motif if k in shown else "absent" for k in range(frames)]


def render_clip(cls: str, cfg: ClipConfig, rng: np.random.Generator) -> tuple[list[Image.Image], list[str]]:
    """The frames of one clip of ``cls`` and each frame's motif state."""
    style = CLASS_FACTORS[cls][0]
    scene = make_scene(rng, style, cfg.size, cfg.difficulty)
    motifs = frame_motifs(cls, cfg.frames, rng)
    return [render(scene, m, rng, cfg.difficulty)[0] for m in motifs], motifs


def encode_clip(frames: list[Image.Image], fmt: str) -> bytes:
    """An animated GIF, WebP (lossless) or APNG of ``frames`` at 10 frames per second, looping."""
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "webp" else {}
    frames[0].save(buf, {"gif": "GIF", "webp": "WEBP", "png": "PNG"}[fmt], save_all=True,
                   append_images=frames[1:], duration=100, loop=0, **extra)  # fmt: skip
    return buf.getvalue()


def generate_clips(out: Path, cfg: ClipConfig, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the clips into ``out`` (built aside, moved into place when complete); returns the manifest path."""
    cfg.validate()
    rng = np.random.default_rng([cfg.seed, 7])
    rows = []
    jobs = [(split, cls, i) for split in cfg.splits for cls in CLASSES for i in range(cfg.per_class)]
    with staged_dir(Path(out), overwrite=overwrite, owned_marker="clips_config.json") as tmp:
        for n, (split, cls, i) in enumerate(tqdm(jobs, desc="clips", disable=not progress, unit="clip")):
            fmt = CLIP_FORMATS[n % len(CLIP_FORMATS)]
            frames, motifs = render_clip(cls, cfg, rng)
            file = f"{split}/{cls}/{split}_{cls}_{i:04d}.{fmt}"
            (tmp / file).parent.mkdir(parents=True, exist_ok=True)
            (tmp / file).write_bytes(encode_clip(frames, fmt))
            shown = "".join("0" if m == "absent" else "1" for m in motifs)
            rows.append((file, split, cls, fmt, cfg.frames, shown))
        write_csv(tmp / "manifest.csv", CLIP_COLUMNS, rows)
        atomic_write_json(tmp / "clips_config.json", {"generator": "nsfw_lab.synth.clips", **asdict(cfg)})
    return Path(out) / "manifest.csv"
