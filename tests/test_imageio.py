"""The robust loader on a generated corpus of malformed and unusual files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from nsfw_lab.data import imageio
from nsfw_lab.data.imageio import ImageLoadError, load_image


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _gradient(w: int = 48, h: int = 32) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 90)], -1), "RGB")


def _png_with_size(w: int, h: int) -> bytes:
    """A tiny valid PNG whose header claims ``w`` x ``h`` (a decompression bomb header)."""
    data = bytearray(_png(Image.new("L", (4, 4))))
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


BAD: dict[str, tuple[bytes | None, str]] = {}
GOOD: dict[str, tuple[bytes, tuple[int, int]]] = {}


def _build_corpus() -> None:
    g = _gradient()
    jpg, png = _jpeg(g), _png(g)
    BAD.update(
        {
            "zero.jpg": (b"", "empty"),
            "truncated.jpg": (jpg[: len(jpg) // 2], "truncated"),
            "truncated_progressive.jpg": (_jpeg(g, progressive=True)[:-300], "truncated"),
            "truncated.png": (png[: len(png) - 30], "truncated"),
            "html.jpg": (b"\n  <!DOCTYPE html><html><body>404</body></html>", "not_an_image"),
            "html_bom.jpg": (b"\xef\xbb\xbf<html><head></head></html>", "not_an_image"),
            "json.jpg": (b'{"error": "removed"}', "not_an_image"),
            "text.jpg": (b"this file was removed by the host\n", "not_an_image"),
            "svg.jpg": (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', "not_an_image"),
            "pdf.jpg": (b"%PDF-1.4\n%...", "not_an_image"),
            "zip.jpg": (b"PK\x03\x04" + b"\x00" * 40, "not_an_image"),
            "gzip.jpg": (b"\x1f\x8b\x08\x00" + b"\x00" * 40, "not_an_image"),
            "random.bin": (bytes(np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8)), "not_an_image"),
            "jpeg_header_only.jpg": (jpg[:20], "truncated"),
            "bad_crc.png": (png[:45] + bytes([png[45] ^ 0xFF]) + png[46:], "corrupt"),
            "bad_chunk.png": (png[:40] + bytes([png[40] ^ 0xFF]) + png[41:], "corrupt"),
            "bomb.png": (_png_with_size(30000, 30000), "too_many_pixels"),
            "tiny.png": (_png(Image.new("RGB", (1, 1))), "too_small"),
            "truncated.gif": (_gif()[:-40], "truncated"),
            "missing.jpg": (None, "missing"),
        }
    )
    GOOD.update(
        {
            "plain.jpg": (jpg, (48, 32)),
            "progressive.jpg": (_jpeg(g, progressive=True), (48, 32)),
            "png_as.jpg": (png, (48, 32)),
            "no_extension": (jpg, (48, 32)),
            "upper.JPEG": (jpg, (48, 32)),
            "exif_rotated.jpg": (_exif_rotated(g), (32, 48)),
            "palette.png": (_png(g.convert("P", palette=Image.Palette.ADAPTIVE)), (48, 32)),
            "palette_transparent.png": (_palette_transparent(), (40, 40)),
            "rgba.png": (_png(_rgba()), (40, 40)),
            "la.png": (_png(Image.new("LA", (40, 40), (120, 0))), (40, 40)),
            "gray.jpg": (_jpeg(g.convert("L")), (48, 32)),
            "bilevel.bmp": (_save(g.convert("1"), "BMP"), (48, 32)),
            "cmyk.jpg": (_jpeg(Image.new("CMYK", (40, 40), (0, 255, 255, 0))), (40, 40)),
            "cmyk_icc.jpg": (_cmyk_icc(), (40, 40)),
            "gray16.png": (_gray16(), (40, 40)),
            "float.tif": (_float_tiff(), (40, 40)),
            "animated.gif": (_gif(), (40, 40)),
            "animated.webp": (_animated_webp(), (40, 40)),
            "lossless.webp": (_save(g, "WEBP", lossless=True), (48, 32)),
            "image.tiff": (_save(g, "TIFF"), (48, 32)),
            "image.bmp": (_save(g, "BMP"), (48, 32)),
            "trailing_zeros.jpg": (jpg + b"\x00" * 16, (48, 32)),
        }
    )


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif_rotated(g: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    return _jpeg(g, exif=exif)


def _palette_transparent() -> bytes:
    im = Image.new("P", (40, 40), 0)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    im.paste(1, (0, 0, 20, 40))
    return _png(im, transparency=0)


def _rgba() -> Image.Image:
    im = Image.new("RGBA", (40, 40), (10, 20, 30, 0))
    im.paste((200, 30, 30, 255), (0, 0, 20, 40))
    return im


def _cmyk_icc() -> bytes:
    im = Image.new("CMYK", (40, 40), (0, 255, 255, 0))
    prof = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return _jpeg(im, icc_profile=prof)


def _gray16() -> bytes:
    arr = np.full((40, 40), 50000, dtype=np.uint16)
    arr[:, :20] = 1000
    return _png(Image.fromarray(arr))


def _float_tiff() -> bytes:
    arr = np.full((40, 40), 0.5, dtype=np.float32)
    return _save(Image.fromarray(arr, "F"), "TIFF")


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (40, 40), c) for c in ((220, 20, 20), (20, 220, 20), (20, 20, 220))]


def _gif() -> bytes:
    f = _frames()
    return _save(f[0], "GIF", save_all=True, append_images=f[1:], duration=50, loop=0)


def _animated_webp() -> bytes:
    f = _frames()
    return _save(f[0], "WEBP", save_all=True, append_images=f[1:], duration=50, lossless=True)


_build_corpus()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, (data, _) in {**BAD, **GOOD}.items():
        if data is not None:
            (root / name).write_bytes(data)
    return root


def test_corpus_is_large_enough() -> None:
    assert len(BAD) >= 15 and len(GOOD) >= 15 and len(BAD) + len(GOOD) >= 20


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_give_one_line_typed_errors(corpus: Path, name: str) -> None:
    expected = BAD[name][1]
    with pytest.raises(ImageLoadError) as info:
        load_image(corpus / name, min_side=8)
    err = info.value
    assert err.reason == expected, f"{name}: {err}"
    assert name in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_unusual_valid_files_load_as_rgb(corpus: Path, name: str) -> None:
    im = load_image(corpus / name)
    assert im.mode == "RGB"
    assert im.size == GOOD[name][1]


def test_exif_orientation_is_applied(corpus: Path) -> None:
    im = np.asarray(load_image(corpus / "exif_rotated.jpg"), dtype=int)
    # the gradient's red channel grows left→right; rotated 90° clockwise it grows top→bottom
    assert im[-1, :, 0].mean() > im[0, :, 0].mean() + 100
    assert abs(im[:, -1, 0].mean() - im[:, 0, 0].mean()) < 30


def test_transparency_is_composited_on_white(corpus: Path) -> None:
    for name in ("rgba.png", "palette_transparent.png"):
        arr = np.asarray(load_image(corpus / name), dtype=int)
        assert tuple(arr[20, 35]) == (255, 255, 255), name  # transparent half
        assert arr[20, 5, 0] > 180 and arr[20, 5, 1] < 60, name  # opaque red half


def test_cmyk_becomes_red(corpus: Path) -> None:
    for name in ("cmyk.jpg", "cmyk_icc.jpg"):
        r, g, b = np.asarray(load_image(corpus / name), dtype=int)[20, 20]
        assert r > 180 and g < 90 and b < 90, (name, r, g, b)


def test_16bit_is_scaled_not_clipped(corpus: Path) -> None:
    arr = np.asarray(load_image(corpus / "gray16.png"), dtype=int)
    assert arr[0, 0, 0] == round(1000 / 257)  # dark stays dark
    assert arr[0, 30, 0] == round(50000 / 257)  # bright is ~194, not clipped to 255


def test_float_image_is_scaled(corpus: Path) -> None:
    assert np.asarray(load_image(corpus / "float.tif"))[0, 0, 0] == 128


def test_animated_images_give_their_first_frame(corpus: Path) -> None:
    for name in ("animated.gif", "animated.webp"):
        r, g, b = np.asarray(load_image(corpus / name), dtype=int)[5, 5]
        assert r > 180 and g < 80 and b < 80, name


def test_bomb_limit_is_explicit(corpus: Path) -> None:
    assert load_image(corpus / "plain.jpg", max_pixels=48 * 32).size == (48, 32)
    with pytest.raises(imageio.DecompressionBomb, match="exceeds the limit"):
        load_image(corpus / "plain.jpg", max_pixels=48 * 32 - 1)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(imageio.NotAnImage, match="directory"):
        load_image(tmp_path)


def test_truncated_jpeg_is_not_half_grey(corpus: Path) -> None:
    """Pillow alone can decode a cut JPEG with LOAD_TRUNCATED_IMAGES; we must refuse it."""
    from PIL import ImageFile

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(imageio.TruncatedImage):
            load_image(corpus / "truncated.jpg")
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def test_data_after_the_image_is_tolerated(tmp_path: Path) -> None:
    """Motion photos and trailers append bytes after a complete JPEG; a GIF may lack only its trailer."""
    g = _gradient()
    (tmp_path / "motion.jpg").write_bytes(_jpeg(g) + b"\x00\x00\x00\x18ftypmp42" + b"\x11" * 5000)
    assert load_image(tmp_path / "motion.jpg").size == (48, 32)
    gif = _gif()
    assert gif.endswith(b";")
    (tmp_path / "no_trailer.gif").write_bytes(gif[:-1])
    assert load_image(tmp_path / "no_trailer.gif").size == (40, 40)


def test_our_pixel_limit_replaces_pillows(corpus: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as if Pillow's own limit were tiny
    assert load_image(corpus / "plain.jpg", max_pixels=10_000).size == (48, 32)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored afterwards


def test_threads_leave_pillows_pixel_limit_as_it_was() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from nsfw_lab.data.imageio import decode_image_bytes

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "PNG")
    data = buf.getvalue()
    before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(8) as pool:
        sizes = set(pool.map(lambda _: decode_image_bytes(data).size, range(400)))
    assert sizes == {(64, 48)} and before == Image.MAX_IMAGE_PIXELS


def test_eps_is_never_opened() -> None:
    from nsfw_lab.data.imageio import NotAnImage, decode_image_bytes

    with pytest.raises(NotAnImage):
        decode_image_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
