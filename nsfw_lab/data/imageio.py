"""Open any path as an RGB image, or fail with a typed error and a one-line reason.

Handles what scraped image folders contain: EXIF-rotated photos; palette, alpha, CMYK, grayscale,
16-bit and float images; animated GIF/WebP/PNG (first frame; :func:`load_frames`: frames sampled with a cap);
decompression bombs; and files that only pretend to be images (zero bytes, truncated, HTML or JSON error pages
saved as ``.jpg``, text, archives). A truncated JPEG is an error, never an image with a grey lower half.
"""

from __future__ import annotations

import functools
import io
import struct
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from nsfw_lab.errors import NsfwLabError

MAX_PIXELS_DEFAULT = 89_478_485  # Pillow's own default bomb limit (about 0.25 GiB of RGBA)
ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
_SNIFF = 512
ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})  # read as clips by load_frames (PNG: APNG)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".jfif"})  # folders
_PILLOW_LIMIT_LOCK = threading.Lock()
UNSAFE_FORMATS = frozenset({"EPS"})  # Pillow renders EPS with an external Ghostscript: never for our inputs


@functools.cache
def safe_formats() -> tuple[str, ...]:
    """Formats any loader here may open: every format Pillow reads, less :data:`UNSAFE_FORMATS`."""
    Image.init()
    return tuple(sorted(set(Image.OPEN) - UNSAFE_FORMATS))


class ImageLoadError(NsfwLabError):
    """A file that cannot be used as an image. ``reason`` is a short machine-friendly code."""

    reason = "unreadable"

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class MissingFile(ImageLoadError):
    reason = "missing"


class EmptyFile(ImageLoadError):
    reason = "empty"


class NotAnImage(ImageLoadError):
    reason = "not_an_image"


class TruncatedImage(ImageLoadError):
    reason = "truncated"


class CorruptImage(ImageLoadError):
    reason = "corrupt"


class DecompressionBomb(ImageLoadError):
    reason = "too_many_pixels"


class UnsupportedImage(ImageLoadError):
    reason = "unsupported"


class TooSmall(ImageLoadError):
    reason = "too_small"


def sniff_non_image(head: bytes) -> str | None:
    """Name the kind of a non-image file from its first bytes, or None if it may be an image."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<meta")):
        return "an HTML page, not an image"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "SVG/XML text, not a raster image" if b"<svg" in text else "an XML document, not an image"
    if text.startswith((b"{", b"[")):
        return "JSON text, not an image"
    if head.startswith(b"%PDF"):
        return "a PDF document, not an image"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!")):
        return "an archive, not an image"
    return None


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def magic_format(head: bytes) -> str | None:
    """The image format announced by the file's first bytes, if any."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 9 for b in head)


def _jpeg_is_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the first start-of-scan marker.

    Entropy-coded data cannot contain FF D9 (0xFF bytes are stuffed), and an EXIF thumbnail's EOI sits
    before the main image's first scan, so this tells a cut file from a complete one, while tolerating
    data appended after the image (motion photos, trailers).
    """
    sos = data.find(b"\xff\xda")
    return sos >= 0 and data.rfind(b"\xff\xd9") > sos


def _check_all_frames(im: Image.Image, path: Path | str) -> None:
    try:
        for k in range(getattr(im, "n_frames", 1)):
            im.seek(k)
            im.load()
    except (OSError, EOFError, ValueError) as exc:
        raise TruncatedImage(path, f"truncated GIF (frame {k} cannot be decoded: {exc})") from None


def _to_rgb(im: Image.Image, path: Path | str = "<bytes>") -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with correct scaling and alpha handling."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            except (ImageCms.PyCMSError, OSError):
                pass
        return im.convert("RGB")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("RGBA", "LA", "La", "RGBa", "RGBX"):
        if mode == "RGBX":
            return im.convert("RGB")
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        elif mode == "I":
            arr = arr / 257.0 if arr.max(initial=0) > 255 else arr
        else:  # float: [0, 1] images are scaled, others clipped to the 8-bit range
            arr = arr * 255.0 if arr.max(initial=0) <= 1.0 else arr
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnsupportedImage(path, f"cannot convert mode {mode} to RGB ({exc})") from None


def load_image(path: Path | str, max_pixels: int = MAX_PIXELS_DEFAULT, min_side: int = 1) -> Image.Image:
    """Open ``path`` as a fully decoded RGB ``PIL.Image``.

    EXIF orientation is applied; animated images give their first frame; transparency is composited
    on white. Raises a subclass of :class:`ImageLoadError` whose message names the file and the reason.

    Args:
        path: file to open (any extension, or none).
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).
        min_side: refuse images whose shorter side is smaller than this.
    """
    path = Path(path)
    return decode_image_bytes(_read(path), path, max_pixels=max_pixels, min_side=min_side)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFile(path, "no such file") from None
    except IsADirectoryError:
        raise NotAnImage(path, "is a directory, not a file") from None
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read file ({exc.strerror or exc})") from None


def sample_indices(n: int, cap: int) -> list[int]:
    """``min(n, cap)`` frame indices spread evenly over ``0..n-1``, the first and the last included."""
    if n <= cap:
        return list(range(n))
    return sorted({round(float(v)) for v in np.linspace(0, n - 1, cap)})


def load_frames(
    path: Path | str, cap: int = 16, max_pixels: int = MAX_PIXELS_DEFAULT
) -> tuple[list[Image.Image], list[int], int]:
    """The frames of an animated GIF, WebP or APNG, at most ``cap`` spread evenly (:func:`sample_indices`), as
    RGB images: ``(frames, their indices, the file's frame count)``. A still image (and any other format, MPO
    and multi-page TIFF included) is one frame, read as :func:`load_image` reads it. A frame that does not
    decode is skipped; a file with no decodable frame raises
    :class:`TruncatedImage` naming the file, as every unreadable file raises its :class:`ImageLoadError`."""
    path = Path(path)
    data = _read(path)
    try:
        im = _open_unlimited(data, None)
        n = int(getattr(im, "n_frames", 1)) if im.format in ANIMATED_FORMATS else 1  # not MPO, multi-page TIFF
    except Exception:  # decode_with_format below names the reason
        n = 1
    if n <= 1:
        return [decode_image_bytes(data, path, max_pixels=max_pixels)], [0], 1
    if im.size[0] * im.size[1] > max_pixels:
        raise DecompressionBomb(path, f"{im.size[0]}x{im.size[1]} exceeds the limit of {max_pixels:,} pixels")
    frames, kept = [], []
    for k in sample_indices(n, cap):
        try:
            im.seek(k)
            im.load()
            frames.append(_to_rgb(im.copy(), path))
            kept.append(k)
        except (OSError, EOFError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError):
            continue
    if not frames:
        raise TruncatedImage(path, f"none of its {n} frames decodes")
    return frames, kept, n


@functools.cache
def _known(formats: tuple[str, ...] | None) -> tuple[str, ...]:
    """``formats`` (default: :func:`safe_formats`) that Pillow has a reader for, all plugins loaded."""
    safe = safe_formats()  # also loads every plugin, so that Image.OPEN knows them all
    return safe if formats is None else tuple(f for f in formats if f in safe)


def _open_unlimited(data: bytes, formats: tuple[str, ...] | None) -> Image.Image:
    """``Image.open`` without Pillow's own pixel limit (the caller checks its explicit one right after,
    before decoding). The global limit is lifted only under a lock and restored at once, so threads can
    decode side by side without leaving Pillow's guard switched off."""
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data), formats=_known(formats))
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def decode_image_bytes(
    data: bytes,
    path: Path | str = "<bytes>",
    max_pixels: int = MAX_PIXELS_DEFAULT,
    min_side: int = 1,
    formats: tuple[str, ...] | None = None,
) -> Image.Image:
    """Like :func:`load_image` for bytes already in memory (``path`` only names them in errors).

    ``formats`` limits what Pillow may open (default: every format it reads except EPS, which it
    would hand to Ghostscript, an interpreter, for an untrusted file)."""
    return decode_with_format(data, path, max_pixels, min_side, formats)[0]


def decode_with_format(
    data: bytes,
    path: Path | str = "<bytes>",
    max_pixels: int = MAX_PIXELS_DEFAULT,
    min_side: int = 1,
    formats: tuple[str, ...] | None = None,
) -> tuple[Image.Image, str]:
    """:func:`decode_image_bytes`, plus the format Pillow read the bytes as (``JPEG``, ``MPO``, ``PNG``...)."""
    if len(data) == 0:
        raise EmptyFile(path, "empty file (0 bytes)")
    head = data[:_SNIFF]
    kind = sniff_non_image(head)
    if kind:
        raise NotAnImage(path, kind)
    fmt = magic_format(head)
    if fmt == "JPEG" and not _jpeg_is_complete(data):
        raise TruncatedImage(path, "truncated JPEG (no end-of-image marker)")
    try:
        im = _open_unlimited(data, formats)
        read_as = (im.format or "").upper()
        w, h = im.size
        if w * h > max_pixels:
            raise DecompressionBomb(path, f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}")
        if fmt == "PNG":  # CRC and chunk checks; verify() leaves the image unusable, so reopen
            _open_unlimited(data, formats).verify()
        if fmt == "GIF" and not data.rstrip(b"\x00").endswith(b";"):
            _check_all_frames(im, path)  # no trailer: complete only if every frame decodes
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        im.load()
        im = ImageOps.exif_transpose(im)
        rgb = _to_rgb(im, path)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        fmt = magic_format(head)
        if fmt:
            raise CorruptImage(path, f"corrupt {fmt} data (header cannot be parsed)") from None
        if _looks_like_text(head):
            raise NotAnImage(path, "plain text, not an image") from None
        raise NotAnImage(path, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:  # a later frame (GIF seek) over Pillow's own limit
        raise DecompressionBomb(path, f"decompression bomb refused by Pillow ({exc})") from None
    except SyntaxError as exc:  # Pillow reports broken PNG chunks/CRCs this way
        raise CorruptImage(path, f"corrupt image data ({exc})") from None
    except OSError as exc:
        msg = str(exc)
        if any(k in msg.lower() for k in ("truncated", "end of file", "broken data stream")):
            raise TruncatedImage(path, f"truncated image data ({msg})") from None
        raise CorruptImage(path, f"corrupt image data ({msg})") from None
    except (ValueError, TypeError, EOFError, struct.error) as exc:
        raise CorruptImage(path, f"corrupt image data ({exc})") from None
    if min(rgb.size) < min_side:
        raise TooSmall(path, f"{rgb.size[0]}x{rgb.size[1]} is smaller than the minimum side of {min_side}px")
    return rgb, read_as
