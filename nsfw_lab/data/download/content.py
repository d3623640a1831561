"""What a fetched body is, judged from its bytes (never from the Content-Type header): an image that
decodes, an error page or broken file (``dead``), or a host's "image removed" placeholder.

Placeholders are recognised by the signatures in ``placeholders.toml`` (final URL, host, SHA-256, format,
size in pixels and bytes, pHash; documented in that file) plus any ``--placeholders FILE`` adds.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from nsfw_lab.data.hashing import hamming, phash_hex
from nsfw_lab.data.imageio import ImageLoadError, decode_with_format
from nsfw_lab.errors import NsfwLabError

WEB_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")
"""What a downloaded body may decode as: web image formats only (never EPS, which Pillow hands to
Ghostscript, nor the long tail of formats a host has no reason to serve)."""
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}
_FIELDS = {
    "name": str, "final_url_regex": str, "host_regex": str, "sha256": list, "format": str, "width": int,
    "height": int, "max_bytes": int, "max_side": int, "phash": str, "phash_radius": int,
}  # fmt: skip


@dataclass(frozen=True)
class Signature:
    """One way of recognising a placeholder; every field that is set must match."""

    name: str
    final_url_regex: str | None = None
    host_regex: str | None = None
    sha256: tuple[str, ...] = ()
    format: str | None = None
    width: int | None = None
    height: int | None = None
    max_bytes: int | None = None
    max_side: int | None = None
    phash: str | None = None
    phash_radius: int = 4

    def url_only(self) -> bool:
        """True when the final URL alone decides (no download needed)."""
        return self.final_url_regex is not None and not any(
            (self.host_regex, self.sha256, self.format, self.width, self.height, self.max_bytes, self.max_side,
             self.phash))  # fmt: skip

    def matches(self, url: str, sha: str, size: int, fmt: str, w: int, h: int, phash: str | None) -> bool:
        """Does a body with these properties match?"""
        host = (urlsplit(url).hostname or "").lower()
        tests = [
            self.final_url_regex is None or re.fullmatch(self.final_url_regex, url) is not None,
            self.host_regex is None or re.search(self.host_regex, host) is not None,
            not self.sha256 or sha in self.sha256,
            self.format is None or fmt == self.format.upper(),
            self.width is None or w == self.width,
            self.height is None or h == self.height,
            self.max_bytes is None or size <= self.max_bytes,
            self.max_side is None or max(w, h) <= self.max_side,
            self.phash is None or (phash is not None and hamming(phash, self.phash) <= self.phash_radius),
        ]
        return all(tests)


def _parse(raw: dict, source: str) -> list[Signature]:
    """Signatures of one TOML document (``[[placeholder]]`` tables), each field checked; one-line errors."""
    entries = raw.get("placeholder", [])
    if set(raw) - {"placeholder"} or not isinstance(entries, list):
        raise NsfwLabError(f"{source}: expected only [[placeholder]] tables")
    out = []
    for k, e in enumerate(entries, start=1):
        bad = sorted(set(e) - set(_FIELDS))
        if bad:
            raise NsfwLabError(f"{source}: placeholder {k}: unknown field {', '.join(bad)}")
        wrong = [f for f, v in e.items() if not isinstance(v, _FIELDS[f]) or isinstance(v, bool)]
        if wrong or "name" not in e or len(e) < 2:
            raise NsfwLabError(
                f"{source}: placeholder {k}: "
                + (f"wrong type for {', '.join(wrong)}" if wrong else "needs a name and at least one test")
            )
        for f in ("final_url_regex", "host_regex"):
            if f in e:
                try:
                    re.compile(e[f])
                except re.error as exc:
                    raise NsfwLabError(f"{source}: placeholder {k}: {f} is not a regular expression ({exc})") from None
        e = {**e, "sha256": tuple(str(x).lower() for x in e.get("sha256", ()))}
        out.append(Signature(**e))
    return out


def load_signatures(extra: str | Path | None = None) -> list[Signature]:
    """The packaged signatures, plus those of ``extra`` (a TOML file in the same format)."""
    text = resources.files("nsfw_lab.data.download").joinpath("placeholders.toml").read_text(encoding="utf-8")
    sigs = _parse(tomllib.loads(text), "placeholders.toml")
    if extra:
        path = Path(extra)
        try:
            sigs += _parse(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise NsfwLabError(f"{path}: cannot read placeholder signatures ({exc})") from None
    return sigs


@dataclass(frozen=True)
class Verdict:
    """The judgement on one body."""

    status: str  # ok | dead | placeholder
    format: str = ""
    ext: str = ""
    width: int = 0
    height: int = 0
    error: str = ""


def judge(data: bytes, final_url: str, sha: str, signatures: list[Signature]) -> Verdict:
    """Decode ``data`` fully (a file is saved only if it decodes) and check the placeholder signatures."""
    try:
        img, fmt = decode_with_format(data, final_url, formats=WEB_FORMATS)
    except ImageLoadError as exc:
        return Verdict("dead", error=f"{exc.detail} [{exc.reason}]")
    w, h = img.size
    need_phash = any(s.phash for s in signatures)
    ph = phash_hex(img) if need_phash else None
    ext = EXTENSIONS.get(fmt, fmt.lower() or "img")
    for s in signatures:
        if s.matches(final_url, sha, len(data), fmt, w, h, ph):
            return Verdict("placeholder", fmt, ext, w, h, f"matches placeholder signature {s.name!r}")
    return Verdict("ok", fmt, ext, w, h)
