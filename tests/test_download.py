"""``nsfw-lab download`` against a local host (127.0.0.1) serving generated images and every fault a real
host of the scraper's URLs shows. No test here connects anywhere but loopback (a guard enforces it)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from nsfw_lab.data.download import DownloadConfig, download, read_manifest
from nsfw_lab.data.download.fetch import AddressPolicy
from nsfw_lab.data.download.manifest import COLUMNS, Manifest
from nsfw_lab.data.download.simhost import Route, SimHost, placeholder_card, sim_image, write_lists
from nsfw_lab.errors import NsfwLabError

FAST = dict(workers=4, per_host=2, timeout=1.0, retries=2, backoff=0.01, allow_private=("127.0.0.1/32",))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect to anything but 127.0.0.1."""
    real = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        assert host == "127.0.0.1", f"a test tried to connect to {address}"
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def files_of(out: Path) -> dict[str, bytes]:
    """Every file under OUT's class folders, relative path -> bytes."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts) and p.parent != out
    }


def rows_by_url(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["class"], r["url"]): r for r in read_manifest(out / "manifest.csv")}


def faults(h: SimHost) -> tuple[dict[str, list[str]], dict[str, tuple[str, str]]]:
    """URL lists with one of each fault, and what each URL must end as: url -> (status, text in the row)."""
    img = [sim_image(k) for k in range(6)]
    png = sim_image(7, fmt="PNG")
    card = placeholder_card((120, 60))
    big = sim_image(8, (900, 700)) + b"\0" * 300_000
    expect: dict[str, tuple[str, str]] = {}

    def add(path: str, route: Route, status: str, text: str = "") -> str:
        url = h.add(path, route)
        expect[url] = (status, text)
        return url

    g = [add(f"/gal/set1/{i:02d}.jpg", Route(img[i]), "ok") for i in (1, 2, 3)]
    flaky = add("/flaky.jpg", Route(img[4], fail_first=1), "ok")
    always5 = add("/broken.jpg", Route(img[5], fail_first=99, fail_status=503), "error", "HTTP 503")
    urls = {
        "drawings": [
            "# comment lines and blank lines are ignored",
            "",
            *g,
            g[0],
            flaky,
            always5,
            add("/gone.jpg", Route(b"nope", 404, "text/plain"), "dead", "HTTP 404"),
            add("/gone2.jpg", Route(b"nope", 410, "text/plain"), "dead", "HTTP 410"),
            add("/slow.jpg", Route(img[0], delay=3.0), "error", "timed out"),
            add("/loop-a.jpg", Route(status=302, location="/loop-b.jpg"), "dead", "redirect loop"),
            add("/private.jpg", Route(status=302, location="http://10.255.255.1/x.jpg"), "rejected", "10.255.255.1"),
            add("/meta.jpg", Route(status=301, location="http://169.254.169.254/latest"), "rejected", "link-local"),
            add("/ftp.jpg", Route(status=302, location="ftp://example.invalid/x"), "rejected", "redirect to"),
            add("/big.jpg", Route(big), "rejected", "exceeds --max-bytes"),
            add("/big-stream.jpg", Route(big, no_length=True), "rejected", "while streaming"),
            add("/as-html.jpg", Route(img[0], content_type="text/html"), "ok"),
            add("/png-as-jpeg.jpg", Route(png, content_type="image/jpeg"), "ok"),
            add(
                "/page.jpg",
                Route(b"<!DOCTYPE html><html>sign in</html>", content_type="image/jpeg"),
                "dead",
                "HTML page",
            ),
            add("/error.png", Route(b'{"error": "not found"}', content_type="image/png"), "dead", "JSON"),
            add("/cut.jpg", Route(img[2], send_bytes=len(img[2]) // 2), "error", "cut short"),
            add("/trunc.jpg", Route(img[3][: len(img[3]) // 2]), "dead", "truncated"),
            add("/empty.jpg", Route(b""), "dead", "empty body"),
            add("/pixel.gif", Route(_gif_1x1(), content_type="image/gif"), "placeholder", "tracking-pixel"),
            add("/old.jpg", Route(status=302, location="/removed.png"), "placeholder", "known placeholder"),
            add("/card-a.png", Route(card, content_type="image/png"), "placeholder", "same bytes came from 3"),
            add("/card-b.png", Route(card, content_type="image/png"), "placeholder", "same bytes came from 3"),
            add("/repost.jpg", Route(img[1]), "duplicate", "same bytes"),
            "ftp://example.invalid/a.jpg",
            "just some text",
            "javascript:alert(1)",
        ],
        "sexy": [g[1], add("/card-c.png", Route(card, content_type="image/png"), "placeholder", "")],
    }
    h.add("/loop-b.jpg", Route(status=302, location="/loop-a.jpg"))
    h.add("/removed.png", Route(card, content_type="image/png"))
    return urls, expect


def _gif_1x1() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    return buf.getvalue()


@pytest.fixture()
def signatures(tmp_path: Path) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(
        "[[placeholder]]\nname = 'local-removed'\nfinal_url_regex = 'http://127\\.0\\.0\\.1:\\d+/removed\\.png'\n"
    )
    return path


def test_every_fault_is_recorded_and_a_rerun_changes_nothing(tmp_path: Path, signatures: Path) -> None:
    with SimHost() as h:
        urls, expect = faults(h)
        raw = write_lists(tmp_path / "raw_data", urls)
        out = tmp_path / "out"
        cfg = DownloadConfig(**FAST, max_bytes=200_000, placeholder_copies=3, placeholders=str(signatures))
        report = download(raw, out, cfg, progress=False, confirm=True)
        rows = rows_by_url(out)
        # every listed URL has exactly one current row, with the expected status and reason
        for url, (status, text) in expect.items():
            cls = "sexy" if "card-c" in url else "drawings"
            row = rows[(cls, url)]
            assert row["status"] == status, (url, row)
            assert text in row["error"], (url, row["error"])
        assert rows[("sexy", urls["drawings"][3])]["status"] == "ok"  # a URL of two classes: kept in both
        for bad in ("ftp://example.invalid/a.jpg", "just some text", "javascript:alert(1)"):
            assert (
                rows[("drawings", bad)]["status"] == "rejected"
                and "not an http(s) URL" in rows[("drawings", bad)]["error"]
            )
        # retries: 5xx and transient failures retried, 4xx never; the placeholder URL was never fetched
        by_path = {u.split(str(h.port))[1]: r for (_, u), r in rows.items() if str(h.port) in u}
        assert h.hits["/flaky.jpg"] == 2 and by_path["/flaky.jpg"]["attempts"] == "2"
        assert h.hits["/broken.jpg"] == 3 and by_path["/broken.jpg"]["attempts"] == "3"
        assert h.hits["/gone.jpg"] == 1 and by_path["/gone.jpg"]["attempts"] == "1"
        assert h.hits["/removed.png"] == 0 and by_path["/old.jpg"]["final_url"].endswith("/removed.png")
        assert by_path["/private.jpg"]["final_url"] == "http://10.255.255.1/x.jpg"
        assert by_path["/gone.jpg"]["http_code"] == "404"
        # content is judged from the bytes: a JPEG sent as text/html is saved as .jpg, a PNG sent as JPEG as .png
        assert by_path["/as-html.jpg"]["content_type"] == "text/html" and by_path["/as-html.jpg"]["file"].endswith(
            ".jpg"
        )
        assert by_path["/png-as-jpeg.jpg"]["format"] == "PNG" and by_path["/png-as-jpeg.jpg"]["file"].endswith(".png")
        # saved files: <class>/<sha256>.<ext>, content matching the name, decodable, each stored once per class
        files = files_of(out)
        for rel, data in files.items():
            cls, name = rel.split("/")
            assert name.split(".")[0] == hashlib.sha256(data).hexdigest()
            Image.open(io.BytesIO(data)).load()
        stored = {r["file"] for r in rows.values() if r["status"] in ("ok", "duplicate")}
        assert stored == set(files)
        ok_draw = [r for (c, _), r in rows.items() if c == "drawings" and r["status"] == "ok"]
        assert len([f for f in files if f.startswith("drawings/")]) == len(ok_draw) == 6
        assert by_path["/repost.jpg"]["file"] == by_path["/gal/set1/01.jpg"]["file"]  # identical bytes once
        assert not any(f.startswith(("drawings/.", "sexy/.")) for f in files)
        assert not (out / ".incomplete").exists()
        assert not any(f.endswith(".png") and data == placeholder_card((120, 60)) for f, data in files.items())
        assert (out / ".placeholders").is_dir()  # a card stored before its 3rd copy arrived was moved out
        # the per-class table counts the same rows
        t = report["summary"]["drawings"]
        assert t["ok"] == 6 and t["duplicate"] == 1 and t["pending"] == 0
        assert t["rejected"] == 8 and t["placeholder"] == 4 and t["error"] == 3 and t["dead"] == 7
        assert (
            report["lists"]["drawings"]["repeated_lines"] == 1 and report["lists"]["drawings"]["blank_or_comment"] == 2
        )
        # a rerun resumes: nothing left to do, nothing requested, nothing changed
        before = (out / "manifest.csv").read_bytes(), files, (out / "download.json").stat().st_mtime_ns, h.total_hits()
        download(raw, out, cfg, progress=False, confirm=False)  # no confirmation needed: nothing to fetch
        after = (
            (out / "manifest.csv").read_bytes(),
            files_of(out),
            (out / "download.json").stat().st_mtime_ns,
            h.total_hits(),
        )
        assert after == before


def test_retry_errors_fetches_only_the_errors_again(tmp_path: Path) -> None:
    with SimHost() as h:
        good = h.add("/a.jpg", Route(sim_image(1)))
        bad = h.add("/b.jpg", Route(sim_image(2), fail_first=99))
        raw = write_lists(tmp_path / "raw", {"neutral": [good, bad]})
        cfg = DownloadConfig(**{**FAST, "retries": 0})
        download(raw, tmp_path / "out", cfg, progress=False, confirm=True)
        assert rows_by_url(tmp_path / "out")[("neutral", bad)]["status"] == "error"
        h.routes["/b.jpg"].fail_first = 0
        download(raw, tmp_path / "out", cfg, progress=False, confirm=True)  # plain rerun: errors stay
        assert h.hits["/b.jpg"] == 1
        download(raw, tmp_path / "out", DownloadConfig(**{**FAST, "retry_errors": True}), progress=False, confirm=True)
        rows = rows_by_url(tmp_path / "out")
        assert rows[("neutral", bad)]["status"] == "ok" and h.hits["/a.jpg"] == 1 and h.hits["/b.jpg"] == 2
        assert len(read_manifest(tmp_path / "out" / "manifest.csv")) == 2
        assert (tmp_path / "out" / "manifest.csv").read_text().count("\n") == 1 + 3  # header, a, b (error), b (ok)


def test_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    with SimHost() as h:
        url = h.add("/a.jpg", Route(sim_image(1)))
        raw = write_lists(tmp_path / "raw", {"neutral": [url]})
        download(raw, tmp_path / "out", DownloadConfig(**{**FAST, "allow_private": None}), progress=False, confirm=True)
        row = rows_by_url(tmp_path / "out")[("neutral", url)]
        assert row["status"] == "rejected" and "loopback" in row["error"] and h.total_hits() == 0


def test_address_policy() -> None:
    import ipaddress

    deny, local = AddressPolicy(None), AddressPolicy(("127.0.0.1/32",))
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
               "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1", "240.0.0.1"):  # fmt: skip
        assert deny.why_refused(ipaddress.ip_address(ip)), ip
    for ip in ("64:ff9b::a00:1", "2002:7f00:1::", "::7f00:1", "::ffff:0:7f00:1", "fec0::1", "64:ff9b:1::1"):
        assert deny.why_refused(ipaddress.ip_address(ip)), ip  # IPv6 forms carrying a private IPv4, and the like
    for ip in ("8.8.8.8", "151.101.1.140", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"):
        assert deny.why_refused(ipaddress.ip_address(ip)) is None, ip
    assert local.why_refused(ipaddress.ip_address("127.0.0.1")) is None
    assert local.why_refused(ipaddress.ip_address("127.0.0.2")) and local.why_refused(ipaddress.ip_address("10.0.0.1"))
    assert AddressPolicy(()).why_refused(ipaddress.ip_address("10.0.0.1")) is None


def test_without_confirmation_nothing_is_fetched(tmp_path: Path) -> None:
    with SimHost() as h:
        raw = write_lists(tmp_path / "raw", {"neutral": [h.add("/a.jpg", Route(sim_image(1)))]})
        with pytest.raises(NsfwLabError, match="not confirmed"):
            download(raw, tmp_path / "out", DownloadConfig(**FAST), progress=False)
        seen: list[str] = []
        with pytest.raises(NsfwLabError, match="not confirmed"):
            download(
                raw,
                tmp_path / "out",
                DownloadConfig(**FAST),
                progress=False,
                confirm=lambda n: seen.append(n) and False,
            )
        assert h.total_hits() == 0 and "legal" in seen[0] and "dead" in seen[0]
        assert len(read_manifest(tmp_path / "out" / "manifest.csv")) == 0


def test_an_interrupted_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    with SimHost() as h:
        urls = [h.add(f"/{k}.jpg", Route(sim_image(k))) for k in range(3)]
        raw = write_lists(tmp_path / "raw", {"neutral": urls})
        out = tmp_path / "out"
        download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        full = (out / "manifest.csv").read_bytes()
        (out / "manifest.csv").write_bytes(full[: len(full) - 40])  # a kill in the middle of the last row
        lost = [r for r in read_manifest(out / "manifest.csv")]
        assert len(lost) == 2
        r = download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        assert r["manifest_repaired"] and r["summary"]["neutral"]["ok"] == 3
        assert len(read_manifest(out / "manifest.csv")) == 3 and h.total_hits() == 4
        text = (out / "manifest.csv").read_text()
        assert text.count("\n") == 4 and all(line.count(",") >= len(COLUMNS) - 1 for line in text.splitlines())


def test_manifest_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(NsfwLabError, match="not a download manifest"):
        Manifest(bad)
    bad.write_text(",".join(COLUMNS) + "\nx,neutral,weird,,,,,,,,,,,,\n")
    with pytest.raises(NsfwLabError, match="line 2 is not a manifest row"):
        Manifest(bad)


def test_out_folder_and_settings_are_checked(tmp_path: Path) -> None:
    raw = write_lists(tmp_path / "raw", {"neutral": ["http://127.0.0.1:9/a.jpg"]})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "thesis.docx").write_text("mine")
    with pytest.raises(NsfwLabError, match=r"not empty and holds no manifest\.csv"):
        download(raw, tmp_path / "full", DownloadConfig(**FAST), progress=False, confirm=True)
    with pytest.raises(NsfwLabError, match="must not be RAW_DATA_DIR"):
        download(raw, raw, DownloadConfig(**FAST), progress=False, confirm=True)
    with pytest.raises(NsfwLabError, match="no URL list for class porn"):
        download(raw, tmp_path / "o", DownloadConfig(**FAST, classes=("porn",)), progress=False, confirm=True)
    with pytest.raises(NsfwLabError, match="--per-host"):
        download(raw, tmp_path / "o", DownloadConfig(**{**FAST, "per_host": 0}), progress=False, confirm=True)
    with pytest.raises(NsfwLabError, match=r"no <class>/urls_<class>\.txt"):
        download(tmp_path / "full", tmp_path / "o", DownloadConfig(**FAST), progress=False, confirm=True)
    sig = tmp_path / "bad.toml"
    sig.write_text("[[placeholder]]\nname = 'x'\nwidth = 'wide'\n")
    with pytest.raises(NsfwLabError, match="wrong type for width"):
        download(raw, tmp_path / "o", DownloadConfig(**FAST, placeholders=str(sig)), progress=False, confirm=True)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    import fcntl
    import os

    raw = write_lists(tmp_path / "raw", {"neutral": ["http://127.0.0.1:9/a.jpg"]})
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(NsfwLabError, match="another nsfw-lab download is writing here"):
            download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
    finally:
        os.close(fd)


def test_curate_uses_the_download_groups(tmp_path: Path) -> None:
    """Galleries found in the URLs reach curation: every gallery lands whole in one split."""
    from nsfw_lab.data.curate import CurateConfig, curate
    from nsfw_lab.utils.fsutil import read_csv

    with SimHost() as h:
        urls: dict[str, list[str]] = {}
        for ci, cls in enumerate(("drawings", "neutral")):
            urls[cls] = [h.add(f"/{cls}/g{g}/{i:02d}.jpg", Route(sim_image(100 * ci + 10 * g + i)))
                         for g in range(8) for i in range(4)]  # fmt: skip
        urls["neutral"].append(h.add("/repost/x_01.jpg", Route(sim_image(0))))  # drawings g0/00 reposted
        raw = write_lists(tmp_path / "raw", urls)
        download(raw, tmp_path / "dl", DownloadConfig(**FAST), progress=False, confirm=True)
    report = curate(tmp_path / "dl", tmp_path / "cur", CurateConfig(short_side=64), progress=False)
    assert report["groups_manifest"] == str((tmp_path / "dl" / "manifest.csv").resolve())
    rows = read_csv(tmp_path / "cur" / "manifest.csv")
    split_of: dict[str, set[str]] = {}
    for r in rows:
        assert r["source_group"].startswith("series/127.0.0.1/"), r
        split_of.setdefault(r["source_group"], set()).add(r["split"])
    assert len(split_of) == 16 and all(len(s) == 1 for s in split_of.values())
    assert report["label_conflicts_dropped"] == 2  # the same bytes in two classes: a conflict, dropped
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_groups_sharing_an_image_are_merged(tmp_path: Path) -> None:
    from nsfw_lab.data.groups import load_known_groups

    m = tmp_path / "manifest.csv"
    m.write_text(
        "group_id,sha256,file,status\n"
        "g-b,aaa,c/aaa.jpg,ok\ng-b,bbb,c/bbb.jpg,ok\ng-a,ccc,c/ccc.jpg,ok\ng-a,aaa,c/aaa.jpg,duplicate\n"
        "g-c,ddd,,dead\n"
    )
    by_sha, by_rel = load_known_groups(m, tmp_path)
    assert by_sha == {"aaa": "g-a", "bbb": "g-a", "ccc": "g-a"} and by_rel["c/bbb.jpg"] == "g-a"


def test_download_json_records_the_lists(tmp_path: Path) -> None:
    with SimHost() as h:
        raw = write_lists(tmp_path / "raw", {"neutral": [h.add("/a.jpg", Route(sim_image(1))), "#x", "mailto:a@b"]})
        download(raw, tmp_path / "out", DownloadConfig(**FAST), progress=False, confirm=True)
    r = json.loads((tmp_path / "out" / "download.json").read_text())
    assert r["lists"]["neutral"] == {"lines": 3, "blank_or_comment": 1, "repeated_lines": 0, "urls": 2, "rejected": 1,
                                     "top_hosts": {"127.0.0.1": 1}}  # fmt: skip
    assert r["summary"]["neutral"]["ok"] == 1 and r["summary"]["neutral"]["rejected"] == 1


def test_per_host_limit_and_concurrency(tmp_path: Path) -> None:
    with SimHost() as h:
        urls = [h.add(f"/s/{k}.jpg", Route(sim_image(k), delay=0.15)) for k in range(12)]
        raw = write_lists(tmp_path / "raw", {"neutral": urls})
        cfg = DownloadConfig(**{**FAST, "workers": 8, "per_host": 3})
        download(raw, tmp_path / "out", cfg, progress=False, confirm=True)
        assert h.max_in_flight == 3  # concurrent, and never more than --per-host on one host
        h.max_in_flight = 0
        download(raw, tmp_path / "one", DownloadConfig(**{**FAST, "workers": 1, "per_host": 3}), progress=False,
                 confirm=True)  # fmt: skip
        assert h.max_in_flight == 1


def test_a_deleted_file_is_fetched_again(tmp_path: Path) -> None:
    with SimHost() as h:
        a, b = h.add("/a.jpg", Route(sim_image(1))), h.add("/b.jpg", Route(sim_image(2)))
        raw = write_lists(tmp_path / "raw", {"neutral": [a, b]})
        out = tmp_path / "out"
        download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        gone = out / rows_by_url(out)[("neutral", a)]["file"]
        gone.unlink()
        download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        assert gone.read_bytes() == sim_image(1) and h.hits["/a.jpg"] == 2 and h.hits["/b.jpg"] == 1


def test_host_names_are_resolved_and_judged() -> None:
    from nsfw_lab.data.download.fetch import Refused

    with pytest.raises(Refused, match="localhost resolves to a non-public address"):
        AddressPolicy(None).resolve("localhost", 80)  # /etc/hosts: no network needed
    assert AddressPolicy(("127.0.0.0/8", "::1/128")).resolve("localhost", 80)


@pytest.mark.parametrize("drip", [0.2, 0.03, 0.0128])  # cut in the status line, a header name, the Location
def test_a_dripping_host_cannot_hold_a_worker(tmp_path: Path, drip: float) -> None:
    """Cut at the deadline, wherever it falls (status line, a header, the Location), it is a timeout: nothing
    parsed from cut headers is trusted, so a cut redirect is never followed and a cut 200 is not "dead"."""
    import time

    with SimHost() as h:
        ok = h.add("/drip.jpg", Route(sim_image(1), drip=max(drip, 0.03)))  # 67 header bytes: >= 2 s
        moved = h.add("/moved.jpg", Route(status=302, location="/img/12345.jpg", content_type="text/html", drip=drip))
        # 89 header bytes, the Location value from byte 71: at 0.0128 s a byte, 1 s falls inside it
        body = h.add("/body.jpg", Route(sim_image(2, (300, 200)) * 40, chunk_delay=0.05))  # ~6 s of body
        raw = write_lists(tmp_path / "raw", {"neutral": [ok, moved, body]})
        t0 = time.monotonic()
        download(raw, tmp_path / "out", DownloadConfig(**{**FAST, "retries": 0}), progress=False, confirm=True)
        assert time.monotonic() - t0 < 3.5
        rows = rows_by_url(tmp_path / "out")
        for url in (ok, moved, body):
            assert rows[("neutral", url)]["status"] == "error", rows[("neutral", url)]
            assert "timed out after 1 s" in rows[("neutral", url)]["error"]
        assert set(h.hits) == {"/drip.jpg", "/moved.jpg", "/body.jpg"}  # the cut Location was not followed


def test_ctrl_c_frees_a_worker_in_the_middle_of_a_body(tmp_path: Path) -> None:
    import threading
    import time

    from nsfw_lab.data.download.fetch import Aborted, Fetcher, FetchSettings, HostLimiter

    with SimHost() as h:
        url = h.add("/long.jpg", Route(sim_image(3, (300, 200)) * 50, chunk_delay=0.1))
        abort = threading.Event()
        f = Fetcher(FetchSettings(timeout=30), AddressPolicy(("127.0.0.1/32",)), HostLimiter(2), tmp_path, abort)
        result: list[object] = []

        def work() -> None:
            try:
                result.append(f.fetch(url))
            except Aborted as exc:
                result.append(exc)

        t = threading.Thread(target=work)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        abort.set()
        f.close_all()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - t0 < 1.0 and isinstance(result[0], Aborted)
        assert list(tmp_path.iterdir()) == []  # its temporary file is gone


def test_the_format_comes_from_the_decoder() -> None:
    from nsfw_lab.data.download.content import judge

    a = Image.new("RGB", (40, 30), (200, 10, 10))
    b = Image.new("RGB", (40, 30), (10, 10, 200))
    for fmt, ext, kw in (("MPO", "jpg", {"save_all": True, "append_images": [b]}), ("TIFF", "tif", {}),
                         ("WEBP", "webp", {}), ("BMP", "bmp", {})):  # fmt: skip
        buf = io.BytesIO()
        a.save(buf, fmt, **kw)
        v = judge(buf.getvalue(), "http://127.0.0.1/x", "0" * 64, [])
        assert (v.status, v.format, v.ext) == ("ok", fmt, ext)


def test_malformed_headers_are_survived(tmp_path: Path) -> None:
    with SimHost() as h:
        odd = h.add("/odd.jpg", Route(sim_image(1), no_length=True, headers={"Content-Length": "\u00b2"}))
        busy = h.add("/busy.jpg", Route(status=503, headers={"Retry-After": "\u00b2"}))
        raw = write_lists(tmp_path / "raw", {"neutral": [odd, busy]})
        download(raw, tmp_path / "out", DownloadConfig(**{**FAST, "retries": 1}), progress=False, confirm=True)
        rows = rows_by_url(tmp_path / "out")
        assert rows[("neutral", odd)]["status"] == "ok" and rows[("neutral", busy)]["status"] == "error"


def test_odd_characters_keep_their_row_on_a_rerun(tmp_path: Path) -> None:
    with SimHost() as h:
        nbsp = h.add("/a\u00a0b.jpg", Route(sim_image(1)))
        h.add("/a%C2%A0b.jpg", Route(sim_image(1)))
        raw = write_lists(tmp_path / "raw", {"neutral": [nbsp, "not\ta  url", "ftp://x/\u2003y"]})
        out = tmp_path / "out"
        download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        first = (out / "manifest.csv").read_bytes()
        download(raw, out, DownloadConfig(**FAST), progress=False, confirm=True)
        assert (out / "manifest.csv").read_bytes() == first and first.count(b"\n") == 4
        assert rows_by_url(out)[("neutral", nbsp)]["status"] == "ok"


def test_untrusted_formats_and_failures_become_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nsfw_lab.data.download import run as run_mod

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with SimHost() as h:
        ps = h.add("/x.eps.jpg", Route(eps))
        boom = h.add("/boom.jpg", Route(sim_image(2)))
        raw = write_lists(tmp_path / "raw", {"neutral": [ps, boom]})
        real = run_mod.judge

        def judge(data: bytes, url: str, sha: str, sigs: list) -> object:
            if url.endswith("boom.jpg"):
                raise RuntimeError("decoder exploded")
            return real(data, url, sha, sigs)

        monkeypatch.setattr(run_mod, "judge", judge)
        download(raw, tmp_path / "out", DownloadConfig(**FAST), progress=False, confirm=True)
        rows = rows_by_url(tmp_path / "out")
        assert rows[("neutral", ps)]["status"] == "dead" and "not an image" in rows[("neutral", ps)]["error"]
        assert rows[("neutral", boom)]["status"] == "error" and "decoder exploded" in rows[("neutral", boom)]["error"]
        assert not (tmp_path / "out" / ".incomplete").exists()
