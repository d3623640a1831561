"""The scraper's URL lists: read, normalise, reject what is not an http(s) URL, and derive gallery ids.

``RAW_DATA_DIR/<class>/urls_<class>.txt`` (nsfw_data_scraper's layout): one URL per line; blank lines and
lines starting with ``#`` are ignored; ``&amp;`` (HTML-escaped query strings, found in the scraper's lists)
is decoded. A line listed twice in one class is one entry.

Group ids (:func:`group_id`) name the gallery or album a URL belongs to where the host encodes it in the
URL, so that curation keeps a gallery in one split (``nsfw-lab curate --groups OUT/manifest.csv``). The
rules, tried in order; the first that matches wins, and a URL that none matches has no group:

1. ``pornpics``: ``.../<gallery>_<n>big.jpg`` and ``.../<gallery>/<gallery>_<n>_<hash>.jpg`` on
   ``*.pornpics.com`` -> ``pornpics/<gallery>`` (most of ``porn``: ~3,600 galleries of ~15 images).
2. ``tumblr``: ``tumblr_<post>o<k>_<size>.jpg`` -> ``tumblr/<post>`` (the photos of one photoset).
3. ``imgur``: ``i.imgur.com/<id>[sbtmlh].ext`` -> ``imgur/<id>``: an image and its resized variants
   (Imgur ids are 5 or 7 characters; one more letter is a size suffix). Direct links carry no album.
4. ``discord``: ``cdn.discordapp.com/attachments/<channel>/<message>/...`` -> ``discord/<message>``.
5. a numbered series: a file name ending in a 1-3 digit index after a separator (``-17``, ``_05big``,
   or the bare ``14``) -> ``series/<host>/<folder>/<name with the index replaced by #>``, i.e. the
   sequentially numbered files of one folder (how galleries are laid out on most sites).

Reddit (``i.redd.it``, ``i.redditmedia.com``) and other random-id names get no group: near-duplicate
search in curation still links their reposts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from nsfw_lab.errors import NsfwLabError

LIST_NAME = "urls_{cls}.txt"
_SAFE_PATH = "/%!$&'()*+,;=:@-._~"
_SAFE_QUERY = _SAFE_PATH + "?"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class UrlEntry:
    """One distinct URL of one class's list."""

    cls: str
    url: str  # as listed (stripped)
    line: int  # first line it appears on
    request_url: str | None  # the normalised URL to fetch; None when rejected
    reject_reason: str = ""  # why it is not fetched (empty when it is)
    group_id: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(class, url): what the manifest records once."""
        return self.cls, self.url


@dataclass
class ListStats:
    """What reading one class's list found."""

    lines: int = 0
    blank_or_comment: int = 0
    repeated: int = 0  # lines repeating a URL already listed in the class
    entries: int = 0
    rejected: int = 0
    hosts: Counter = field(default_factory=Counter)


def normalise_url(text: str) -> tuple[str | None, str]:
    """``(url to request, "")`` for an http(s) URL, else ``(None, reason)``.

    The host is IDNA-encoded, path and query are percent-encoded where needed, the fragment is dropped.
    """
    s = text.strip().replace("&amp;", "&")
    if _CONTROL.search(s):
        return None, "not an http(s) URL (contains whitespace or control characters)"
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError as exc:
        return None, f"malformed URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return None, f"not an http(s) URL (scheme {scheme!r})" if scheme else "not an http(s) URL (no scheme)"
    if parts.username is not None or parts.password is not None:
        return None, "URL carries credentials (user:password@host)"
    host = (parts.hostname or "").rstrip(".")
    if not host:
        return None, "not an http(s) URL (no host)"
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host.lower()
    except UnicodeError:
        return None, f"malformed host name {host!r}"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_SAFE_PATH)
    query = quote(parts.query, safe=_SAFE_QUERY)
    return f"{scheme}://{netloc}{path}{'?' + query if query else ''}", ""


def host_of(url: str) -> str:
    """Lower-case host name of a normalised URL."""
    return (urlsplit(url).hostname or "").lower()


_PORNPICS = re.compile(r"^(\d{3,})_\d{1,3}(?:big|_[0-9a-f]+)?$")
_TUMBLR = re.compile(r"^tumblr_([A-Za-z0-9]+)o\d{1,2}(?:_r\d+)?_\d+$")
_IMGUR = re.compile(r"^([A-Za-z0-9]{5}|[A-Za-z0-9]{7})[sbtmlh]?$")
_SERIES = re.compile(r"^(?P<pre>(?:.*[-_ .])?)(?P<n>\d{1,3})(?P<post>[A-Za-z]{0,5})$")
_NO_SERIES_HOSTS = ("imgur.com", "redd.it", "redditmedia.com", "tumblr.com", "discordapp.com", "discordapp.net")


def group_id(url: str) -> str:
    """The gallery id encoded in ``url`` (a normalised http(s) URL), or "" (rules in the module docstring)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = PurePosixPath(parts.path)
    stem, segs = path.stem, [s for s in path.parts if s != "/"]
    if host.endswith("pornpics.com"):
        m = _PORNPICS.match(stem)
        if m:
            return f"pornpics/{m.group(1)}"
    if host.endswith("tumblr.com"):
        m = _TUMBLR.match(stem)
        return f"tumblr/{m.group(1)}" if m else ""
    if host.endswith("imgur.com") and len(segs) == 1:
        m = _IMGUR.match(stem)
        return f"imgur/{m.group(1)}" if m else ""
    if host.endswith(("discordapp.com", "discordapp.net")) and len(segs) >= 4 and segs[0] == "attachments":
        return f"discord/{segs[2]}"
    if host.endswith(_NO_SERIES_HOSTS) or not segs:
        return ""
    m = _SERIES.match(stem)
    if m:
        folder = "/".join(segs[:-1])
        return f"series/{host}/{folder}/{m.group('pre')}#{m.group('post')}".replace("//", "/")
    return ""


def find_lists(raw: Path) -> dict[str, Path]:
    """``{class: urls file}`` for every ``raw/<class>/urls_<class>.txt``, sorted by class."""
    if not raw.is_dir():
        raise NsfwLabError(f"{raw}: not a folder (expected the scraper's raw_data/<class>/urls_<class>.txt)")
    found = {
        d.name: d / LIST_NAME.format(cls=d.name)
        for d in sorted(raw.iterdir())
        if d.is_dir() and not d.name.startswith(".") and (d / LIST_NAME.format(cls=d.name)).is_file()
    }
    if not found:
        raise NsfwLabError(f"{raw}: no <class>/urls_<class>.txt found (expected the scraper's raw_data folder)")
    return found


def read_list(path: Path, cls: str) -> tuple[list[UrlEntry], ListStats]:
    """Entries of one class's URL list, in file order, with what reading it found."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise NsfwLabError(f"{path}: cannot read URL list ({exc.strerror or exc})") from None
    stats = ListStats()
    seen: set[str] = set()
    out: list[UrlEntry] = []
    for n, raw_line in enumerate(text.splitlines(), start=1):
        stats.lines += 1
        line = raw_line.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            stats.blank_or_comment += 1
            continue
        if line in seen:
            stats.repeated += 1
            continue
        seen.add(line)
        req, reason = normalise_url(line)
        if req is None:
            stats.rejected += 1
            out.append(UrlEntry(cls, line, n, None, reason))
            continue
        stats.hosts[host_of(req)] += 1
        out.append(UrlEntry(cls, line, n, req, "", group_id(req)))
    stats.entries = len(out)
    return out, stats


def read_lists(raw: Path, classes: tuple[str, ...] | None = None) -> tuple[list[UrlEntry], dict[str, ListStats]]:
    """Entries of the chosen classes' lists (all by default), class by class, and per-class stats."""
    lists = find_lists(raw)
    if classes:
        unknown = [c for c in classes if c not in lists]
        if unknown:
            raise NsfwLabError(f"{raw}: no URL list for class {', '.join(unknown)} (have {', '.join(lists)})")
        lists = {c: lists[c] for c in sorted(set(classes))}
    entries: list[UrlEntry] = []
    stats: dict[str, ListStats] = {}
    for cls, path in lists.items():
        e, s = read_list(path, cls)
        entries += e
        stats[cls] = s
    return entries, stats
