"""URL lists: normalisation, what is rejected, and the gallery ids derived from URLs (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nsfw_lab.data.download.content import Signature, load_signatures
from nsfw_lab.data.download.urls import group_id, normalise_url, read_list, read_lists
from nsfw_lab.errors import NsfwLabError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://i.imgur.com/4XNgwUq.jpg?1", "http://i.imgur.com/4XNgwUq.jpg?1"),
        ("  HTTPS://Example.COM/a b.jpg  ", None),  # inner space: not one URL
        ("https://i.redditmedia.com/x.jpg?w=768&amp;s=8f39", "https://i.redditmedia.com/x.jpg?w=768&s=8f39"),
        ("https://EXAMPLE.com:8443/p/ä.jpg#frag", "https://example.com:8443/p/%C3%A4.jpg"),
        ("https://bücher.example/x.jpg", "https://xn--bcher-kva.example/x.jpg"),
        ("http://[2606:4700::1111]/x.jpg", "http://[2606:4700::1111]/x.jpg"),
        ("http://example.com", "http://example.com/"),
        ("i.imgur.com/abc.jpg", None),
        ("ftp://example.com/x.jpg", None),
        ("javascript:alert(1)", None),
        ("http://user:pw@example.com/x.jpg", None),
        ("http://example.com:99999/x.jpg", None),
        ("http:///x.jpg", None),
    ],
)
def test_normalise_url(text: str, expected: str | None) -> None:
    url, reason = normalise_url(text)
    assert url == expected
    assert bool(reason) == (expected is None)


@pytest.mark.parametrize(
    ("url", "group"),
    [
        ("https://cdn.pornpics.com/pics/2011-03-18/5791_01big.jpg", "pornpics/5791"),
        ("https://cdn.pornpics.com/pics1/2016-10-10/370343_16big.jpg", "pornpics/370343"),
        ("https://cdni.pornpics.com/1280/7/54/21452396/21452396_016_3f3f.jpg", "pornpics/21452396"),
        ("http://41.media.tumblr.com/f0cb/tumblr_ngv7t6vxom1sdkqqqo5_400.jpg", "tumblr/ngv7t6vxom1sdkqqq"),
        ("http://41.media.tumblr.com/tumblr_ngv7t6vxom1sdkqqqo1_1280.jpg", "tumblr/ngv7t6vxom1sdkqqq"),
        ("https://i.imgur.com/G9JhVX9h.jpg", "imgur/G9JhVX9"),
        ("https://i.imgur.com/G9JhVX9.jpg", "imgur/G9JhVX9"),
        ("http://i.imgur.com/AlrTy.jpg", "imgur/AlrTy"),
        ("https://cdn.discordapp.com/attachments/3956/5243/c855efd.jpg", "discord/5243"),
        (
            "http://hardcoreimpact.com/tgp/af/090718/images/af-17.jpg",
            "series/hardcoreimpact.com/tgp/af/090718/images/af-#",
        ),
        (
            "http://content.example.com/imagedb/18816/i/h/830/14.jpg",
            "series/content.example.com/imagedb/18816/i/h/830/#",
        ),
        ("https://i.redd.it/0c095e7hb8h11.jpg", ""),
        ("http://i.testanev.com//Blonde-with-five.jpg", ""),
        ("http://3.bp.blogspot.com/-2a7Q/VjT1/AAAA/6dYv/s1600/babes%2B%252812%2529.jpg", ""),
    ],
)
def test_group_ids(url: str, group: str) -> None:
    assert group_id(normalise_url(url)[0] or "") == group


def test_galleries_are_kept_apart() -> None:
    a = group_id("https://cdn.pornpics.com/pics/2011-03-18/5791_01big.jpg")
    b = group_id("https://cdn.pornpics.com/pics/2011-03-18/5792_01big.jpg")
    c = group_id("http://example.com/set1/a-01.jpg")
    d = group_id("http://example.com/set1/b-01.jpg")
    e = group_id("http://other.example.com/set1/a-01.jpg")
    assert len({a, b, c, d, e}) == 5


def test_read_list_counts_and_rejects(tmp_path: Path) -> None:
    p = tmp_path / "urls_x.txt"
    p.write_bytes(
        b"\xef\xbb\xbfhttp://a.example/1.jpg\r\n# c\r\n\r\nhttp://a.example/1.jpg\nnot a url\n\xff\xfe broken\n"
    )
    entries, stats = read_list(p, "x")
    assert [e.url for e in entries] == ["http://a.example/1.jpg", "not a url", "\ufffd\ufffd broken"]
    assert [e.line for e in entries] == [1, 5, 6]
    assert entries[0].request_url and entries[1].request_url is None and entries[1].reject_reason
    assert (stats.lines, stats.blank_or_comment, stats.repeated, stats.entries, stats.rejected) == (6, 2, 1, 3, 2)


def test_read_lists_finds_the_scraper_layout(tmp_path: Path) -> None:
    for c in ("sexy", "neutral"):
        (tmp_path / c).mkdir()
        (tmp_path / c / f"urls_{c}.txt").write_text(f"http://h.example/{c}.jpg\n")
    (tmp_path / "IMAGES").mkdir()  # a folder without a list is not a class
    entries, stats = read_lists(tmp_path)
    assert [e.cls for e in entries] == ["neutral", "sexy"] and set(stats) == {"neutral", "sexy"}
    assert [e.cls for e in read_lists(tmp_path, ("sexy",))[0]] == ["sexy"]
    with pytest.raises(NsfwLabError, match=r"no URL list for class porn \(have neutral, sexy\)"):
        read_lists(tmp_path, ("porn",))


def test_packaged_placeholder_signatures() -> None:
    sigs = {s.name: s for s in load_signatures()}
    removed = sigs["imgur-removed-url"]
    assert removed.url_only() and removed.matches("https://i.imgur.com/removed.png", "", 0, "", 0, 0, None)
    assert not removed.matches("https://i.imgur.com/removedX.png", "", 0, "", 0, 0, None)
    card = sigs["imgur-removed-card"]
    assert card.matches("https://i.imgur.com/abc.png", "", 503, "PNG", 161, 81, None)
    assert not card.matches("https://i.imgur.com/abc.png", "", 503, "PNG", 160, 81, None)
    assert not card.matches("https://example.com/abc.png", "", 503, "PNG", 161, 81, None)
    assert sigs["tracking-pixel"].matches("http://x/p.gif", "", 43, "GIF", 1, 1, None)
    ph = Signature("p", phash="ffff0000ffff0000", phash_radius=2)
    assert ph.matches("u", "", 1, "", 9, 9, "ffff0000ffff0003") and not ph.matches(
        "u", "", 1, "", 9, 9, "ffff0000ffff0007"
    )
