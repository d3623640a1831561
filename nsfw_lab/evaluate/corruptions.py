"""Natural corruptions at graded severities, seeded: what happens to an image between upload and the model.

Each corruption maps a PIL RGB image to another at severity 1..5 (:data:`SEVERITIES`), before the model's
eval transform, so the model sees what it would see in deployment. The list follows what users of NSFW
classifiers report (re-saving at a low JPEG quality changes the verdict, thumbnails, screenshots, crops,
stretched uploads) and the usual common-corruption families:

- ``jpeg``: re-encoded at quality 90, 70, 50, 30, 10 (Pillow's libjpeg);
- ``downscale``: shrunk to 1/2, 1/3, 1/4, 1/6, 1/8 of its size and scaled back (a thumbnail shared on);
- ``crop_centre`` / ``crop_offcentre``: a crop keeping 90 ... 50% of each side, centred or at a seeded corner;
- ``squash``: the article's ``Resize((256, 256))`` generalised: one side stretched 1.25 ... 2.5 times;
- ``letterbox``: padded to a square with a black border of 10 ... 50% of the long side;
- ``grayscale``: blended towards gray, 20 ... 100%;
- ``blur``: Gaussian, sigma 0.5 ... 3% of the short side;
- ``noise``: Gaussian pixel noise, sigma 4 ... 40 grey levels;
- ``brightness`` / ``contrast``: factors 0.8 ... 0.3 (darker, flatter);
- ``screenshot``: the image scaled to 90 ... 50% on a light canvas with a caption bar and overlaid text.

The adversarial line (FGSM) needs the model's gradients and lives in :mod:`nsfw_lab.evaluate.robustness`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

SEVERITIES = (1, 2, 3, 4, 5)


def _jpeg(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=(90, 70, 50, 30, 10)[s - 1])
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _downscale(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    f = (2, 3, 4, 6, 8)[s - 1]
    small = im.resize((max(1, im.width // f), max(1, im.height // f)), Image.Resampling.BILINEAR)
    return small.resize(im.size, Image.Resampling.BILINEAR)


def _crop(im: Image.Image, s: int, rng: np.random.Generator, centre: bool) -> Image.Image:
    keep = (0.9, 0.8, 0.7, 0.6, 0.5)[s - 1]
    w, h = max(1, round(im.width * keep)), max(1, round(im.height * keep))
    if centre:
        x, y = (im.width - w) // 2, (im.height - h) // 2
    else:
        x, y = [(0, 0), (im.width - w, 0), (0, im.height - h), (im.width - w, im.height - h)][int(rng.integers(4))]
    return im.crop((x, y, x + w, y + h))


def _squash(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    f = (1.25, 1.5, 1.75, 2.0, 2.5)[s - 1]
    return im.resize((round(im.width * f), im.height), Image.Resampling.BILINEAR)


def _letterbox(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    border = round(max(im.size) * (0.1, 0.2, 0.3, 0.4, 0.5)[s - 1])
    side = max(im.size) + 2 * border
    canvas = Image.new("RGB", (side, side))
    canvas.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return canvas


def _grayscale(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    return Image.blend(im, ImageOps.grayscale(im).convert("RGB"), (0.2, 0.4, 0.6, 0.8, 1.0)[s - 1])


def _blur(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    sigma = (0.005, 0.01, 0.015, 0.02, 0.03)[s - 1] * min(im.size)
    return im.filter(ImageFilter.GaussianBlur(sigma))


def _noise(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(im, np.float32) + rng.normal(0, (4, 8, 16, 28, 40)[s - 1], (im.height, im.width, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _brightness(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance((0.8, 0.65, 0.5, 0.4, 0.3)[s - 1])


def _contrast(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(im).enhance((0.8, 0.65, 0.5, 0.4, 0.3)[s - 1])


def _screenshot(im: Image.Image, s: int, rng: np.random.Generator) -> Image.Image:
    scale = (0.9, 0.8, 0.7, 0.6, 0.5)[s - 1]
    inner = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", im.size, (238, 238, 238))
    bar = max(4, im.height // 12)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, im.width, bar), fill=(60, 60, 70))
    canvas.paste(inner, ((im.width - inner.width) // 2, bar + (im.height - bar - inner.height) // 2))
    for k in range(3):  # a caption and an overlaid watermark-like line
        y = int(rng.integers(bar, max(bar + 1, im.height - 10)))
        draw.text((int(rng.integers(0, max(1, im.width // 3))), y), f"posted {k + 1}h ago  #{rng.integers(1e4)}",
                  fill=(20, 20, 20))  # fmt: skip
    return canvas


CORRUPTIONS: dict[str, Callable[[Image.Image, int, np.random.Generator], Image.Image]] = {
    "jpeg": _jpeg,
    "downscale": _downscale,
    "crop_centre": lambda im, s, rng: _crop(im, s, rng, True),
    "crop_offcentre": lambda im, s, rng: _crop(im, s, rng, False),
    "squash": _squash,
    "letterbox": _letterbox,
    "grayscale": _grayscale,
    "blur": _blur,
    "noise": _noise,
    "brightness": _brightness,
    "contrast": _contrast,
    "screenshot": _screenshot,
}


def corrupt(im: Image.Image, name: str, severity: int, seed: int = 0) -> Image.Image:
    """``im`` (RGB) under corruption ``name`` at ``severity`` 1..5, drawn from a generator seeded by ``seed``."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, not {severity}")
    return CORRUPTIONS[name](im.convert("RGB"), severity, np.random.default_rng(seed))
