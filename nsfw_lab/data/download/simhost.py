"""A simulated image host on 127.0.0.1: serves generated images (abstract shapes) and the faults that
real hosts of the scraper's URLs show — dead links, flaky 5xx, slow answers, redirect loops, redirects to
private addresses, oversized and cut-off bodies, wrong content types, error pages served as images,
placeholder cards. The tests use it, and the course rehearses the whole download → curate path on it
(:func:`rehearse`) without touching any outside network.
"""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from nsfw_lab.data.synth.render import Difficulty, make_scene, render


@dataclass
class Route:
    """How the host answers one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    fail_first: int = 0  # answer ``fail_status`` to this many requests first
    fail_status: int = 500
    location: str | None = None  # redirect target (with a 3xx status)
    send_bytes: int | None = None  # send only this many bytes of the body, then close (Content-Length stays)
    no_length: bool = False  # close-delimited body, no Content-Length
    chunk_delay: float = 0.0  # pause between 4 KiB pieces of the body
    drip: float = 0.0  # send the status line and headers one byte at a time, pausing this long after each


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # silence the request log
        pass

    def do_GET(self) -> None:
        host = self.server.sim
        path = self.path.split("?", 1)[0]
        with host.lock:
            host.hits[path] += 1
            n = host.hits[path]
            route = host.routes.get(path)
        if route is None:
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        if route.delay:  # counted while waiting, before any byte is sent: the client's slot is surely held
            with host.lock:
                host.in_flight += 1
                host.max_in_flight = max(host.max_in_flight, host.in_flight)
            time.sleep(route.delay)
            with host.lock:
                host.in_flight -= 1
        if n <= route.fail_first:
            self._send(route.fail_status, b"<html>try again</html>", "text/html")
            return
        if route.drip:
            head = f"HTTP/1.0 {route.status} OK\r\nContent-Type: {route.content_type}\r\n"
            head += f"Content-Length: {len(route.body)}\r\n"
            head += (f"Location: {route.location}\r\n" if route.location else "") + "\r\n"
            for b in head.encode():
                self.wfile.write(bytes([b]))
                self.wfile.flush()
                time.sleep(route.drip)
            self.wfile.write(route.body)
            return
        self.send_response(route.status)
        if route.location is not None:
            self.send_header("Location", route.location)
        self.send_header("Content-Type", route.content_type)
        if not route.no_length:
            self.send_header("Content-Length", str(len(route.body)))
        for k, v in route.headers.items():
            self.send_header(k, v)
        self.end_headers()
        body = route.body if route.send_bytes is None else route.body[: route.send_bytes]
        step = 4096 if route.chunk_delay else len(body) or 1
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            if route.chunk_delay:
                self.wfile.flush()
                time.sleep(route.chunk_delay)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sim: SimHost

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (timeout, size cap) is expected here


class SimHost:
    """``with SimHost() as h: url = h.add("/a.jpg", Route(body=...))`` — a threaded HTTP server on 127.0.0.1."""

    def __init__(self, host: str = "127.0.0.1", tls_context: object | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter = Counter()
        self.in_flight = self.max_in_flight = 0  # requests inside their route's delay now, and the most at once
        self.lock = threading.Lock()
        self._server = _Server((host, 0), _Handler)
        self._server.sim = self
        if tls_context is not None:
            self._server.socket = tls_context.wrap_socket(self._server.socket, server_side=True)  # type: ignore[attr-defined]
        self.scheme = "https" if tls_context is not None else "http"
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def add(self, path: str, route: Route) -> str:
        """Serve ``route`` at ``path``; returns its URL."""
        with self.lock:
            self.routes[path] = route
        return self.base + path

    def total_hits(self) -> int:
        """Requests answered so far."""
        with self.lock:
            return sum(self.hits.values())

    def __enter__(self) -> SimHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def sim_image(seed: int, size: tuple[int, int] = (96, 72), fmt: str = "JPEG") -> bytes:
    """A benign image from the proxy's renderer (a textured scene of shapes, photo- or drawing-like by the
    seed's parity), at ``size``, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    diff = Difficulty()
    scene = make_scene(rng, "photo" if seed % 2 else "drawing", min(size), diff)
    img = render(scene, "absent", rng, diff)[0].resize(size)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def placeholder_card(size: tuple[int, int] = (161, 81)) -> bytes:
    """A grey "image removed" card (PNG), like the one a host serves for every removed image."""
    img = Image.new("RGB", size, (220, 220, 220))
    d = ImageDraw.Draw(img)
    d.rectangle((4, 4, size[0] - 5, size[1] - 5), outline=(120, 120, 120), width=2)
    d.text((12, size[1] // 2 - 6), "image removed", fill=(90, 90, 90))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def write_lists(raw: Path, urls: dict[str, list[str]]) -> Path:
    """Write ``raw/<class>/urls_<class>.txt`` (the scraper's layout) and return ``raw``."""
    for cls, lines in urls.items():
        (raw / cls).mkdir(parents=True, exist_ok=True)
        (raw / cls / f"urls_{cls}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return raw
