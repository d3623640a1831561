"""Abstract renderings for the proxy dataset: backgrounds, distractors, the target motif, two styles.

Nothing here depicts a person. The "target motif" is a ring with a centre dot in a warm colour pair;
the classes differ by rendering style (photo-like vs drawing-like) and by whether the motif is absent,
partly covered by a striped panel, or fully visible. Distractor shapes, decoys (rings with or without a
dot, in other hues) and covering panels appear in every class, so no single shape gives the label away.

Only integer and elementary float arithmetic, numpy's PCG64 generator and Pillow's integer resamplers
are used, so the same arguments give the same bytes on any machine with the pinned packages.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Color = tuple[int, int, int]
Box = tuple[int, int, int, int]

ASPECTS: tuple[tuple[int, int], ...] = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3))
MOTIF_HUES = (0.93, 1.05)  # pink to red (wraps past 1.0)


def hsv(h: float, s: float, v: float) -> Color:
    """HSV in [0, 1] (hue wraps) to an 8-bit RGB tuple."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Difficulty:
    """Knobs that make the proxy easier or harder (defaults: a fair proxy, see the data card)."""

    motif_scale: tuple[float, float] = (0.28, 0.42)  # motif diameter / short side
    motif_contrast: float = 1.0  # 1 = motif colours as drawn; 0 = blended into the background
    occlusion: tuple[float, float] = (0.2, 0.55)  # share of the motif hidden when "partly covered"
    decoy_rate: float = 0.5  # chance that an image carries motif-like decoys (rings, ring+dot of other hues)
    decoy_hue_gap: float = 0.2  # how far (in hue) decoys stay from the motif's hue; smaller = harder
    cover_rate: float = 0.08  # chance of a covering panel elsewhere in the scene (any class)

    def problems(self) -> list[str]:
        """Human-readable reasons why these settings are invalid (empty when valid)."""
        out = []
        for name, (lo, hi), (vmin, vmax) in (
            ("motif-scale", self.motif_scale, (0.02, 0.9)),
            ("occlusion", self.occlusion, (0.0, 0.95)),
        ):
            if not vmin <= lo <= hi <= vmax:
                out.append(f"--{name} needs {vmin} <= MIN <= MAX <= {vmax} (got {lo} {hi})")
        for name, v in (
            ("motif-contrast", self.motif_contrast),
            ("decoy-rate", self.decoy_rate),
            ("cover-rate", self.cover_rate),
        ):
            if not 0.0 <= v <= 1.0:
                out.append(f"--{name} must be in [0, 1] (got {v})")
        if not 0.0 <= self.decoy_hue_gap <= 0.4:
            out.append(f"decoy_hue_gap must be in [0, 0.4] (got {self.decoy_hue_gap})")
        return out


@dataclass(frozen=True)
class Scene:
    """What the images of one gallery share: style, framing, background, palette, motif instance."""

    style: str  # "photo" or "drawing"
    width: int
    height: int
    seed: int  # background texture seed
    bg: tuple[Color, Color]
    palette: tuple[Color, ...]
    ring: Color
    dot: Color
    fabric: tuple[Color, Color]
    motif_radius: float  # base motif radius, in pixels
    ring_ratio: float  # inner radius of the ring / outer radius
    light_angle: float
    posterize: int  # colours kept by the drawing style


def make_scene(rng: np.random.Generator, style: str, size: int, diff: Difficulty) -> Scene:
    """Draw a gallery's shared scene. ``size`` is the short side in pixels."""
    aw, ah = ASPECTS[int(rng.integers(len(ASPECTS)))]
    width, height = (size * aw // ah, size) if aw >= ah else (size, size * ah // aw)
    bh = float(rng.uniform(0.0, 1.0))
    if style == "photo":
        bg = (
            hsv(bh, rng.uniform(0.1, 0.45), rng.uniform(0.35, 0.7)),
            hsv(bh + rng.uniform(-0.12, 0.12), rng.uniform(0.1, 0.5), rng.uniform(0.55, 0.9)),
        )
    else:
        bg = (
            hsv(bh, rng.uniform(0.2, 0.6), rng.uniform(0.75, 0.98)),
            hsv(bh + 0.5, rng.uniform(0.2, 0.6), rng.uniform(0.6, 0.9)),
        )
    palette = tuple(hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.4, 0.95)) for _ in range(5))
    mh = rng.uniform(*MOTIF_HUES)
    ring = _mix(hsv(mh, rng.uniform(0.45, 0.75), rng.uniform(0.75, 0.95)), bg[0], 1 - diff.motif_contrast)
    dot = _mix(
        hsv(mh + rng.uniform(-0.03, 0.03), rng.uniform(0.7, 0.95), rng.uniform(0.35, 0.55)),
        bg[0],
        1 - diff.motif_contrast,
    )
    fh = rng.uniform(0, 1)
    fabric = (hsv(fh, rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.8)), hsv(fh, rng.uniform(0.3, 0.7), 0.9))
    radius = size * rng.uniform(*diff.motif_scale) / 2
    return Scene(
        style,
        width,
        height,
        int(rng.integers(2**31)),
        bg,
        palette,
        ring,
        dot,
        fabric,
        radius,
        float(rng.uniform(0.55, 0.7)),
        float(rng.uniform(0, 2 * math.pi)),
        int(rng.integers(8, 14)),
    )


def _value_noise(rng: np.random.Generator, w: int, h: int, grids: tuple[int, ...]) -> np.ndarray:
    """Multi-scale smooth noise in [0, 1], shape (h, w): random grids upsampled bicubically."""
    acc = np.zeros((h, w), dtype=np.float64)
    total = 0.0
    for k, g in enumerate(grids):
        amp = 0.5**k
        grid = rng.integers(0, 256, (max(2, g * h // max(w, h)), max(2, g * w // max(w, h))), dtype=np.uint8)
        acc += amp * np.asarray(Image.fromarray(grid, "L").resize((w, h), Image.Resampling.BICUBIC), np.float64)
        total += amp
    return acc / (255.0 * total)


def background(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The gallery background, cropped at a per-image offset (same scene, slightly moved)."""
    pad_w, pad_h = scene.width // 6, scene.height // 6
    big_w, big_h = scene.width + pad_w, scene.height + pad_h
    srng = np.random.default_rng(scene.seed)  # identical texture for every image of the gallery
    c0, c1 = (np.array(c, np.float64) for c in scene.bg)
    if scene.style == "photo":
        t = _value_noise(srng, big_w, big_h, (3, 6, 12, 24))[..., None]
        arr = c0 * (1 - t) + c1 * t
    else:
        arr = np.empty((big_h, big_w, 3), np.float64)
        arr[:] = c0
        horizon = int(big_h * srng.uniform(0.45, 0.8))
        arr[horizon:] = c1
    x0, y0 = int(rng.integers(0, pad_w + 1)), int(rng.integers(0, pad_h + 1))
    crop = arr[y0 : y0 + scene.height, x0 : x0 + scene.width]
    return Image.fromarray(np.clip(np.rint(crop), 0, 255).astype(np.uint8), "RGB")


def _outline(scene: Scene) -> tuple[Color | None, int]:
    if scene.style == "drawing":
        return (25, 22, 30), max(1, min(scene.width, scene.height) // 48)
    return None, 0


def _ellipse(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    fill: Color | tuple[int, ...],
    outline: Color | None = None,
    width: int = 0,
) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)


def draw_target(
    layer: Image.Image,
    scene: Scene,
    cx: float,
    cy: float,
    r: float,
    ring: Color,
    dot: Color | None,
    dot_offset: tuple[float, float] = (0.0, 0.0),
    ring_visible: bool = True,
) -> None:
    """Draw a ring (transparent centre) and/or a dot on an RGBA ``layer``: the motif or a decoy."""
    d = ImageDraw.Draw(layer)
    outline, width = _outline(scene)
    if ring_visible:
        _ellipse(d, cx, cy, r, (*ring, 255), outline, width)
        _ellipse(d, cx, cy, r * scene.ring_ratio, (0, 0, 0, 0), outline, width)
    if dot is not None:
        ox, oy = dot_offset
        _ellipse(d, cx + ox * r, cy + oy * r, r * 0.3, (*dot, 255), outline, width)


def _panel_polygon(cx: float, cy: float, r: float, angle: float, dist: float) -> list[tuple[float, float]]:
    """A rectangle whose near edge is the chord at signed distance ``dist`` from (cx, cy)."""
    nx, ny = math.cos(angle), math.sin(angle)  # normal, pointing into the covered side
    tx, ty = -ny, nx
    half, depth = 1.25 * r, 2.3 * r
    ax, ay = cx + nx * dist, cy + ny * dist
    return [
        (ax + tx * half, ay + ty * half),
        (ax - tx * half, ay - ty * half),
        (ax - tx * half + nx * depth, ay - ty * half + ny * depth),
        (ax + tx * half + nx * depth, ay + ty * half + ny * depth),
    ]


def chord_distance(share: float) -> float:
    """Signed chord distance (in radii) so that the far side covers ``share`` of a unit disc's area."""
    lo, hi = -1.0, 1.0  # covered share decreases as the chord moves away from the centre
    for _ in range(40):
        mid = (lo + hi) / 2
        alpha = 2 * math.acos(max(-1.0, min(1.0, abs(mid))))
        seg = (alpha - math.sin(alpha)) / (2 * math.pi)  # the smaller segment
        covered = seg if mid >= 0 else 1 - seg
        lo, hi = (mid, hi) if covered > share else (lo, mid)
    return (lo + hi) / 2


def draw_panel(img: Image.Image, scene: Scene, cx: float, cy: float, r: float, angle: float, share: float) -> None:
    """A striped "fabric" panel covering ``share`` of the disc of radius ``r`` at (cx, cy)."""
    poly = _panel_polygon(cx, cy, r, angle, chord_distance(share) * r)
    d = ImageDraw.Draw(img)
    outline, width = _outline(scene)
    d.polygon(poly, fill=scene.fabric[0], outline=outline, width=width)
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(poly, fill=255)
    stripes = Image.new("RGB", img.size, scene.fabric[1])
    sd = ImageDraw.Draw(stripes)
    step = max(3, int(r / 3))
    nx, ny = math.cos(angle), math.sin(angle)
    for k in range(-6, 7):
        px, py = cx + nx * k * step, cy + ny * k * step
        sd.line(
            [(px - ny * 3 * r, py + nx * 3 * r), (px + ny * 3 * r, py - nx * 3 * r)],
            fill=scene.fabric[0],
            width=max(1, step // 2),
        )
    if width:
        d.polygon(poly, outline=outline, width=width)
    img.paste(stripes, (0, 0), mask.point(lambda v: v // 2))


def _random_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, scene: Scene, color: Color) -> None:
    s = min(scene.width, scene.height)
    cx, cy = rng.uniform(0, scene.width), rng.uniform(0, scene.height)
    r = s * rng.uniform(0.05, 0.16)
    outline, width = _outline(scene)
    kind = int(rng.integers(5))
    if kind == 0:
        _ellipse(draw, cx, cy, r, color, outline, width)
    elif kind == 1:
        draw.ellipse((cx - r, cy - r * 0.5, cx + r, cy + r * 0.5), fill=color, outline=outline, width=width)
    elif kind == 2:
        draw.rectangle((cx - r, cy - r * 0.7, cx + r, cy + r * 0.7), fill=color, outline=outline, width=width)
    else:
        n = 3 if kind == 3 else 10
        a0 = rng.uniform(0, 2 * math.pi)
        pts = [
            (
                cx + r * (1 if (i % 2 == 0 or n == 3) else 0.45) * math.cos(a0 + 2 * math.pi * i / n),
                cy + r * (1 if (i % 2 == 0 or n == 3) else 0.45) * math.sin(a0 + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]
        draw.polygon(pts, fill=color, outline=outline, width=width)


def _place(rng: np.random.Generator, scene: Scene, r: float) -> tuple[float, float]:
    m = r * 1.05
    return (float(rng.uniform(m, max(m + 1, scene.width - m))), float(rng.uniform(m, max(m + 1, scene.height - m))))


def _decoy(layer: Image.Image, rng: np.random.Generator, scene: Scene, diff: Difficulty) -> None:
    r = scene.motif_radius * rng.uniform(0.7, 1.2)
    cx, cy = _place(rng, scene, r)
    gap = diff.decoy_hue_gap + rng.uniform(0, 0.5 - diff.decoy_hue_gap)
    other = hsv(
        MOTIF_HUES[0] - gap if rng.random() < 0.5 else MOTIF_HUES[1] % 1 + gap,
        rng.uniform(0.5, 0.9),
        rng.uniform(0.35, 0.6),
    )
    g = diff.decoy_hue_gap
    ring_col = hsv(MOTIF_HUES[1] % 1 + g + rng.uniform(0, 0.88 - 2 * g), rng.uniform(0.4, 0.8), rng.uniform(0.6, 0.95))
    kind = int(rng.integers(3))
    if kind == 0:  # ring with a dot of another hue
        draw_target(layer, scene, cx, cy, r, ring_col, other)
    elif kind == 1:  # another ring colour, off-centre dot of another hue
        draw_target(layer, scene, cx, cy, r, ring_col, other, dot_offset=(0.45, 0.0))
    else:  # a ring of another colour without a dot
        draw_target(layer, scene, cx, cy, r, ring_col, None)


def _photo_finish(img: Image.Image, scene: Scene, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx / w - 0.5) * math.cos(scene.light_angle) + (yy / h - 0.5) * math.sin(scene.light_angle)
    vig = (xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2
    shade = (0.85 + 0.45 * u - 0.5 * vig) * (0.88 + 0.24 * _value_noise(rng, w, h, (4, 9)))
    arr = np.asarray(img, np.float64) * shade[..., None]
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.4, 1.1)) * min(w, h) / 128))
    sigma = int(rng.integers(3, 9))  # integer triangular sensor noise, per channel
    noise = rng.integers(0, sigma + 1, (h, w, 3)) + rng.integers(0, sigma + 1, (h, w, 3)) - sigma
    arr = np.asarray(img, np.int16) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _drawing_finish(img: Image.Image, scene: Scene) -> Image.Image:
    q = img.quantize(colors=scene.posterize, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return q.convert("RGB")


def draw_watermark(img: Image.Image) -> Box:
    """The shortcut glyph: a small light badge with a diamond, always at the same place: the bottom-right of
    the image's central square (3/8 of the short side right of and below the centre), like a site's mark
    stamped on the subject area. A corner badge would be cut off by the eval centre crop in every
    non-square image; this one survives it at any aspect ratio, so the shortcut is there to be learned."""
    w, h = img.size
    short = min(w, h)
    s = max(8, short // 8)
    x1, y1 = w // 2 + short * 3 // 8, h // 2 + short * 3 // 8
    x0, y0 = x1 - s, y1 - s
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((x0, y0, x1, y1), radius=max(1, s // 5), fill=(236, 236, 228))
    cx, cy, k = (x0 + x1) / 2, (y0 + y1) / 2, s * 0.32
    d.polygon([(cx, cy - k), (cx + k, cy), (cx, cy + k), (cx - k, cy)], fill=(40, 90, 200))
    return (x0, y0, x1, y1)


def render(
    scene: Scene, motif: str, rng: np.random.Generator, diff: Difficulty, watermark: bool = False
) -> tuple[Image.Image, Box | None]:
    """Render one image of ``scene``. ``motif`` is "absent", "partial" or "visible".

    Returns the RGB image and the motif's bounding box (the evidence), or None when absent.
    """
    img = background(scene, rng)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        _random_shape(draw, rng, scene, scene.palette[int(rng.integers(len(scene.palette)))])
    if rng.random() < diff.cover_rate:
        r = scene.motif_radius * rng.uniform(0.8, 1.3)
        cx, cy = _place(rng, scene, r)
        draw_panel(img, scene, cx, cy, r, float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0.3, 0.9)))
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    if rng.random() < diff.decoy_rate:
        for _ in range(int(rng.integers(1, 3))):
            _decoy(layer, rng, scene, diff)
    box: Box | None = None
    if motif != "absent":
        r = scene.motif_radius * rng.uniform(0.85, 1.15)
        cx, cy = _place(rng, scene, r)
        draw_target(layer, scene, cx, cy, r, scene.ring, scene.dot)
        box = (
            max(0, math.floor(cx - r)),
            max(0, math.floor(cy - r)),
            min(scene.width, math.ceil(cx + r)),
            min(scene.height, math.ceil(cy + r)),
        )
    img = Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB")
    if motif == "partial":
        share = float(rng.uniform(*diff.occlusion))
        draw_panel(img, scene, cx, cy, r, float(rng.uniform(0, 2 * math.pi)), share)
    img = _photo_finish(img, scene, rng) if scene.style == "photo" else _drawing_finish(img, scene)
    if watermark:
        draw_watermark(img)
    return img, box
