"""``nsfw-lab download`` as a user runs it: the notice and --yes, the table, Ctrl-C and kill -9 in the
middle (no partial file, no broken manifest, the same command resumes), HTTPS. Loopback only."""

from __future__ import annotations

import hashlib
import io
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from nsfw_lab.data.download import read_manifest
from nsfw_lab.data.download.simhost import Route, SimHost, sim_image, write_lists

BIN = Path(sys.executable).parent / "nsfw-lab"
LOCAL = ["--allow-network", "127.0.0.1/32", "--timeout", "5", "--backoff", "0.01", "--no-progress"]


def cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "download", *args], capture_output=True, text=True, stdin=stdin, timeout=120)


def check_consistent(out: Path) -> list[dict[str, str]]:
    """No partial file in the class folders, every stored file is named by its content, the manifest parses."""
    rows = read_manifest(out / "manifest.csv")
    for p in out.iterdir():
        if p.is_dir() and not p.name.startswith("."):
            for f in p.iterdir():
                data = f.read_bytes()
                assert f.stem == hashlib.sha256(data).hexdigest(), f
                Image.open(io.BytesIO(data)).load()
    return rows


def test_notice_and_confirmation(tmp_path: Path) -> None:
    with SimHost() as h:
        raw = write_lists(tmp_path / "raw", {"neutral": [h.add("/a.jpg", Route(sim_image(1)))]})
        r = cli(str(raw), str(tmp_path / "out"), *LOCAL)
        assert r.returncode == 2 and h.total_hits() == 0
        assert "legal" in r.stderr and "licence" in r.stderr and "dead" in r.stderr  # the notice came first
        assert r.stderr.strip().splitlines()[-1].startswith("error: refusing to download without confirmation")
        assert "Traceback" not in r.stderr
        r = cli(str(raw), str(tmp_path / "out"), *LOCAL, "--yes")
        assert r.returncode == 0, r.stderr
        header, row = r.stdout.splitlines()[:2]
        assert header.split() == ["class", "ok", "duplicate", "dead", "placeholder", "rejected", "error", "pending"]
        assert row.split() == ["neutral", "1", "0", "0", "0", "0", "0", "0"]
        assert "nsfw-lab curate" in r.stdout
        r = cli(str(raw), str(tmp_path / "out"), *LOCAL)  # finished: nothing to fetch, nothing to confirm
        assert r.returncode == 0 and "legal" not in r.stderr and h.total_hits() == 1, r.stderr


def test_learned_placeholders_are_announced(tmp_path: Path) -> None:
    from nsfw_lab.data.download.simhost import placeholder_card

    with SimHost() as h:
        urls = [h.add(f"/r{k}.png", Route(placeholder_card(), content_type="image/png")) for k in range(2)]
        raw = write_lists(tmp_path / "raw", {"sexy": urls})
        r = cli(str(raw), str(tmp_path / "out"), *LOCAL, "--yes", "--placeholder-copies", "2")
        assert r.returncode == 0, r.stderr
        assert "note: 1 distinct images came from >= 2 URLs" in r.stderr
        assert not any((tmp_path / "out" / "sexy").iterdir())


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    for args in (("--max-bytes", "lots"), ("--allow-network", "not-a-network"), ("--workers", "0")):
        r = cli(str(tmp_path), str(tmp_path / "o"), *args, "--yes")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")


def _slow_host(h: SimHost, n: int) -> dict[str, list[str]]:
    return {"neutral": [h.add(f"/g/{k:03d}.jpg", Route(sim_image(k, (300, 200)) + b"", chunk_delay=0.05))
                        for k in range(n)]}  # fmt: skip


def _wait_rows(out: Path, n: int, proc: subprocess.Popen, limit: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        m = out / "manifest.csv"
        if m.is_file() and m.read_bytes().count(b"\n") > n:
            return
        assert proc.poll() is None, "the download ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_download_resumes_to_the_same_result(tmp_path: Path, sig: signal.Signals) -> None:
    with SimHost() as h:
        urls = _slow_host(h, 24)
        raw = write_lists(tmp_path / "raw", urls)
        out = tmp_path / "out"
        args = [str(BIN), "download", str(raw), str(out), *LOCAL, "--yes", "--workers", "4"]
        # SIGINT back to its default: a shell's background job (`make test &`) starts with it ignored
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        _wait_rows(out, 4, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:  # Ctrl-C or a polite kill: one line, exit 130, temporary files removed
            assert proc.returncode == 130, err
            assert err.strip().splitlines()[-1].startswith("error: interrupted (finished URLs are in"), err
            assert not (out / ".incomplete").exists()
        done = check_consistent(out)
        assert 4 <= len(done) < 24 and all(r["status"] == "ok" for r in done)
        hits_before = h.total_hits()
        r = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rows = check_consistent(out)
        assert len(rows) == 24 and all(r["status"] == "ok" for r in rows)
        assert not (out / ".incomplete").exists()
        assert h.total_hits() - hits_before <= 24 - len(done) + 4  # finished URLs were not fetched again
        files = sorted(p.name for p in (out / "neutral").iterdir())
        assert files == sorted(f"{hashlib.sha256(Route(sim_image(k, (300, 200))).body).hexdigest()}.jpg"
                               for k in range(24))  # fmt: skip


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with SimHost(tls_context=ctx) as h:
        url = h.add("/a.jpg", Route(sim_image(3)))
        assert url.startswith("https://127.0.0.1:")
        raw = write_lists(tmp_path / "raw", {"neutral": [url]})
        r = cli(str(raw), str(tmp_path / "untrusted"), *LOCAL, "--yes")
        assert r.returncode == 0, r.stderr
        row = read_manifest(tmp_path / "untrusted" / "manifest.csv")[0]
        assert row["status"] == "error" and "certificate verify failed" in row["error"] and row["attempts"] == "1"
        r = cli(str(raw), str(tmp_path / "trusted"), *LOCAL, "--yes", "--ca-bundle", str(cert))
        assert r.returncode == 0, r.stderr
        row = read_manifest(tmp_path / "trusted" / "manifest.csv")[0]
        assert row["status"] == "ok" and row["file"].startswith("neutral/")
        assert (tmp_path / "trusted" / row["file"]).read_bytes() == sim_image(3)
