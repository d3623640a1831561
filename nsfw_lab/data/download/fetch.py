"""One URL fetched safely: public addresses only (:mod:`.address`), redirects re-checked, a size cap
while streaming, one deadline per request, retries with backoff on transient failures only. Outcomes:

- ``fetched``: a 2xx body (streamed to a temporary file, hashed on the way)
- ``placeholder``: a redirect to a known placeholder URL (nothing downloaded)
- ``dead``: 4xx, a redirect loop or too many redirects, an unknown host, an empty body
- ``rejected``: a non-public address, a redirect to a non-http(s) URL, a body over ``max_bytes``
- ``error``: what is worth trying again later: timeouts, connection failures, 5xx, 429, a transfer cut
  short, TLS failures (retried ``retries`` times with exponential backoff, except TLS and 429)

``timeout`` bounds a whole request (connect, headers and body), once the host's slot is free: a watchdog
shuts the socket at the deadline, so a host that drips bytes cannot hold a worker.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from nsfw_lab.data.download.address import AddressPolicy, Connection, Dead, Refused, TLSConnection, Transient
from nsfw_lab.data.download.urls import normalise_url
from nsfw_lab.utils.fsutil import FILE_MODE

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
MAX_BACKOFF = 60.0
__all__ = ["AddressPolicy", "Dead", "Fetcher", "Outcome", "Refused", "Transient"]


class Aborted(Exception):
    """The download was interrupted (Ctrl-C)."""


@dataclass
class Outcome:
    """What fetching one URL gave. ``tmp`` holds the body when ``status == "fetched"``."""

    status: str  # fetched | placeholder (redirected to a known placeholder URL) | dead | rejected | error
    http_code: int | None = None
    final_url: str = ""
    content_type: str = ""
    size: int = 0
    sha256: str = ""
    error: str = ""
    attempts: int = 0
    tmp: Path | None = None


class HostLimiter:
    """At most ``per_host`` requests in flight to one host name."""

    def __init__(self, per_host: int) -> None:
        self.per_host = per_host
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}

    def __call__(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._sems.setdefault(host, threading.BoundedSemaphore(self.per_host))


@dataclass(frozen=True)
class FetchSettings:
    """The knobs of one fetch (a subset of the download settings)."""

    timeout: float = 30.0
    retries: int = 3
    max_bytes: int = 20 * 2**20
    max_redirects: int = 5
    backoff: float = 1.0
    user_agent: str = "nsfw-lab"
    ca_bundle: str | None = None


class Fetcher:
    """Fetch URLs into temporary files under ``tmpdir`` (thread-safe: one instance serves all workers)."""

    def __init__(
        self,
        settings: FetchSettings,
        policy: AddressPolicy,
        limiter: HostLimiter,
        tmpdir: Path,
        abort: threading.Event,
        stop_at: Callable[[str], bool] = lambda url: False,
    ) -> None:
        self.s = settings
        self.policy = policy
        self.limiter = limiter
        self.tmpdir = tmpdir
        self.abort = abort
        self.stop_at = stop_at  # a redirect target that needs no download (a known placeholder URL)
        self.ctx = ssl.create_default_context(cafile=settings.ca_bundle)
        self._live: set[Connection] = set()
        self._live_lock = threading.Lock()

    def close_all(self) -> None:
        """Shut the sockets of requests in flight (Ctrl-C: workers blocked on a read return at once)."""
        with self._live_lock:
            conns = list(self._live)
        for c in conns:
            c.shut()

    def fetch(self, url: str) -> Outcome:
        """Fetch ``url`` (normalised) with retries; never raises except :class:`Aborted`."""
        attempt = 0
        while True:
            attempt += 1
            out = Outcome("error", attempts=attempt)
            try:
                self._attempt(url, out)
                return out
            except Refused as exc:
                out.status, out.error = "rejected", str(exc)
                return out
            except Dead as exc:
                out.status, out.error = "dead", str(exc)
                return out
            except Transient as exc:
                out.status, out.error = "error", str(exc)
                if not exc.retry or attempt > self.s.retries:
                    return out
                delay = min(MAX_BACKOFF, self.s.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
                if exc.retry_after is not None:
                    delay = max(delay, min(MAX_BACKOFF, exc.retry_after))
                if self.abort.wait(delay):
                    raise Aborted() from None

    def _attempt(self, url: str, out: Outcome) -> None:
        seen = {url}
        current = url
        for _ in range(self.s.max_redirects + 1):
            out.final_url = current
            location = self._request(current, out)
            if location is None:
                return
            nxt, reason = normalise_url(urljoin(current, location))
            if nxt is None:
                raise Refused(f"redirect to {location!r}: {reason}")
            if nxt in seen:
                raise Dead(f"redirect loop ({current} -> {nxt})")
            seen.add(nxt)
            current = nxt
            if self.stop_at(current):
                out.final_url, out.status = current, "placeholder"
                out.error = f"redirected to a known placeholder ({current})"
                return
        raise Dead(f"more than {self.s.max_redirects} redirects")

    def _request(self, url: str, out: Outcome) -> str | None:
        """One HTTP exchange within ``timeout`` seconds (counted once the host's slot is free): the
        Location of a redirect, or None when the body is in ``out.tmp``."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with self.limiter(host):
            deadline = time.monotonic() + self.s.timeout
            conn: Connection = (
                TLSConnection(host, port, deadline, self.policy, self.ctx) if tls else
                Connection(host, port, deadline, self.policy)
            )  # fmt: skip
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                conn.shut()

            watchdog = threading.Timer(self.s.timeout, expire)
            watchdog.daemon = True
            with self._live_lock:
                self._live.add(conn)
            watchdog.start()
            try:
                if self.abort.is_set():
                    raise Aborted()
                conn.request("GET", target, headers={
                    "User-Agent": self.s.user_agent, "Accept": "image/*,*/*;q=0.5",
                    "Accept-Encoding": "identity", "Connection": "close"})  # fmt: skip
                resp = conn.getresponse()
                if expired.is_set():  # headers cut off at the deadline: nothing parsed from them is trusted
                    raise TimeoutError
                out.http_code = resp.status
                out.content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
                if resp.status in REDIRECTS and resp.getheader("Location"):
                    return resp.getheader("Location")
                self._check_status(resp)
                self._stream(resp, out, deadline)
                if expired.is_set():  # the socket was shut under a close-delimited body: incomplete
                    raise TimeoutError
                return None
            except Aborted:
                raise
            except (Refused, Dead, Transient) as exc:
                if not expired.is_set() or isinstance(exc, Refused):
                    raise
                raise Transient(f"timed out after {self.s.timeout:g} s") from None  # e.g. "empty body" when cut
            except BaseException as exc:
                if out.tmp is not None:
                    out.tmp.unlink(missing_ok=True)
                    out.tmp, out.status = None, "error"
                if self.abort.is_set():
                    raise Aborted() from None
                if expired.is_set() or isinstance(exc, TimeoutError):
                    raise Transient(f"timed out after {self.s.timeout:g} s") from None
                raise _transient(exc) from None
            finally:
                watchdog.cancel()
                with self._live_lock:
                    self._live.discard(conn)
                conn.close()

    def _check_status(self, resp: http.client.HTTPResponse) -> None:
        code = resp.status
        if 200 <= code < 300:
            return
        reason = f"HTTP {code} {resp.reason}".strip()
        if code == 429 or code >= 500:
            wait = _int_header(resp.getheader("Retry-After"))
            raise Transient(reason, retry=code != 429, retry_after=None if wait is None else float(wait))
        raise Dead(reason)

    def _stream(self, resp: http.client.HTTPResponse, out: Outcome, deadline: float) -> None:
        """Stream the body into a temporary file, hashing it and enforcing the size cap as it arrives."""
        declared = _int_header(resp.getheader("Content-Length"))
        if declared is not None and declared > self.s.max_bytes:
            raise Refused(f"body of {declared:,} bytes exceeds --max-bytes {self.s.max_bytes:,}")
        fd, name = tempfile.mkstemp(prefix="part-", dir=self.tmpdir)
        os.fchmod(fd, FILE_MODE)  # the mode a plain open() gives (the file is renamed into OUT as it is)
        tmp = Path(name)
        digest, total = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as fh:
                while True:
                    if self.abort.is_set():
                        raise Aborted()
                    if time.monotonic() > deadline:
                        raise TimeoutError
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.s.max_bytes:
                        raise Refused(f"body exceeds --max-bytes {self.s.max_bytes:,} (stopped while streaming)")
                    digest.update(chunk)
                    fh.write(chunk)
            if declared is not None and total < declared:
                raise http.client.IncompleteRead(b"", declared - total)
            if total == 0:
                raise Dead("empty body")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        out.status, out.size, out.sha256, out.tmp = "fetched", total, digest.hexdigest(), tmp


def _int_header(value: str | None) -> int | None:
    """A non-negative integer header (Content-Length, Retry-After), or None when absent or malformed."""
    v = (value or "").strip()
    return int(v) if v.isascii() and v.isdigit() else None


def _transient(exc: BaseException) -> Transient:
    """The retry decision for a failure during a request."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Transient(f"TLS certificate verify failed ({exc.verify_message})", retry=False)
    if isinstance(exc, ssl.SSLError):
        return Transient(f"TLS error ({exc.reason or exc})", retry=False)
    if isinstance(exc, http.client.IncompleteRead):
        return Transient(f"transfer cut short ({exc.expected:,} bytes missing)" if exc.expected else
                         f"transfer cut short after {len(exc.partial):,} bytes")  # fmt: skip
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return Transient(f"connection failed ({type(exc).__name__}: {exc})")
    if isinstance(exc, OSError):
        return Transient(f"connection failed ({exc.strerror or exc})")
    if isinstance(exc, Exception):
        return Transient(f"unexpected failure ({type(exc).__name__}: {exc})", retry=False)
    raise exc  # KeyboardInterrupt, SystemExit
