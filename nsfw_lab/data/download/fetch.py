"""One URL fetched safely: public addresses only, redirects re-checked, a size cap while streaming,
a deadline per attempt, retries with backoff on transient failures only.

The address check happens where the connection is made: the host name is resolved once, every address
it resolves to must be public (or inside an allowed network), and the socket connects to one of exactly
those addresses, so a second DNS answer cannot point the request elsewhere. Each redirect is a new
request and is checked the same way. Outcomes:

- ``fetched``: a 2xx body (streamed to a temporary file, hashed on the way)
- ``dead``: 4xx, a redirect loop or too many redirects, an unknown host, an empty body
- ``rejected``: a non-public address, a redirect to a non-http(s) URL, a body over ``max_bytes``
- ``error``: what is worth trying again later: timeouts, connection failures, 5xx, 429, a transfer cut
  short, TLS failures (retried ``retries`` times with exponential backoff, except TLS and 429)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import random
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from nsfw_lab.data.download.urls import normalise_url
from nsfw_lab.fsutil import FILE_MODE

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
MAX_BACKOFF = 60.0


class Refused(Exception):
    """The target is not allowed (address policy, scheme, size)."""


class Dead(Exception):
    """The link does not serve the file and trying again will not help."""


class Transient(Exception):
    """A failure worth retrying."""

    def __init__(self, message: str, retry: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry  # False: recorded as an error at once (429, TLS), for a later --retry-errors
        self.retry_after = retry_after


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


class AddressPolicy:
    """Which resolved addresses may be connected to: public (global unicast) ones, plus ``allowed``.

    ``allowed=None`` allows nothing else; an empty tuple allows every address (``--allow-private``);
    otherwise a tuple of networks (``--allow-private 127.0.0.1/32``).
    """

    def __init__(self, allowed: tuple[str, ...] | None = None) -> None:
        self.allow_all = allowed is not None and len(allowed) == 0
        self.networks = [ipaddress.ip_network(n, strict=False) for n in (allowed or ())]

    def why_refused(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """None when ``ip`` may be used, else the reason."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self.allow_all or any(ip in n for n in self.networks if n.version == ip.version):
            return None
        if ip.is_global and not ip.is_multicast:
            return None
        kind = next(
            (
                k
                for k in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified")
                if getattr(ip, f"is_{k}")
            ),
            "non-public",
        )
        return f"{ip} is a {kind.replace('_', '-')} address"

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """``(family, sockaddr)`` of ``host``; Refused if any address is not allowed, Dead/Transient on DNS errors."""
        try:
            infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                raise Dead(f"host {host} not found") from None
            raise Transient(f"cannot resolve {host} ({exc.strerror or exc})") from None
        out = []
        for family, _, _, _, sockaddr in infos:
            why = self.why_refused(ipaddress.ip_address(sockaddr[0].split("%")[0]))
            if why:
                raise Refused(f"{host} resolves to a non-public address ({why}); pass --allow-private to allow it")
            out.append((family, sockaddr))
        return out


class _Connection(http.client.HTTPConnection):
    """HTTP connection that connects only to addresses the policy allows (checked at connect time)."""

    def __init__(self, host: str, port: int, timeout: float, policy: AddressPolicy) -> None:
        super().__init__(host, port, timeout=timeout)
        self._policy = policy

    def connect(self) -> None:
        last: OSError | None = None
        for family, sockaddr in self._policy.resolve(self.host, self.port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(sockaddr)
                self.sock = sock
                return
            except OSError as exc:
                sock.close()
                last = exc
        raise last or OSError(f"no address for {self.host}")


class _TLSConnection(_Connection):
    """HTTPS over :class:`_Connection`, verifying the certificate for the URL's host name."""

    default_port = 443

    def __init__(self, host: str, port: int, timeout: float, policy: AddressPolicy, ctx: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout, policy)
        self._ctx = ctx

    def connect(self) -> None:
        super().connect()
        self.sock = self._ctx.wrap_socket(self.sock, server_hostname=self.host.strip("[]"))


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
        self._live: set[http.client.HTTPConnection] = set()
        self._live_lock = threading.Lock()

    def close_all(self) -> None:
        """Shut the sockets of requests in flight (Ctrl-C: workers blocked on a read return at once)."""
        with self._live_lock:
            conns = list(self._live)
        for c in conns:
            sock = c.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

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
            conn: http.client.HTTPConnection = (
                _TLSConnection(host, port, self.s.timeout, self.policy, self.ctx) if tls else
                _Connection(host, port, self.s.timeout, self.policy)
            )  # fmt: skip
            with self._live_lock:
                self._live.add(conn)
            try:
                if self.abort.is_set():
                    raise Aborted()
                conn.request("GET", target, headers={
                    "User-Agent": self.s.user_agent, "Accept": "image/*,*/*;q=0.5",
                    "Accept-Encoding": "identity", "Connection": "close"})  # fmt: skip
                if conn.sock is not None:
                    conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
                resp = conn.getresponse()
                out.http_code = resp.status
                out.content_type = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
                if resp.status in REDIRECTS and resp.getheader("Location"):
                    return resp.getheader("Location")
                self._check_status(resp)
                self._stream(resp, conn, out, deadline)
                return None
            except ssl.SSLCertVerificationError as exc:
                raise Transient(f"TLS certificate verify failed ({exc.verify_message})", retry=False) from None
            except ssl.SSLError as exc:
                raise Transient(f"TLS error ({exc.reason or exc})", retry=False) from None
            except TimeoutError:
                raise Transient(f"timed out after {self.s.timeout:g} s") from None
            except http.client.IncompleteRead as exc:
                raise Transient(f"transfer cut short after {len(exc.partial)} bytes") from None
            except (http.client.HTTPException, ConnectionError) as exc:
                raise Transient(f"connection failed ({type(exc).__name__}: {exc})") from None
            except OSError as exc:
                raise Transient(f"connection failed ({exc.strerror or exc})") from None
            finally:
                with self._live_lock:
                    self._live.discard(conn)
                conn.close()

    def _check_status(self, resp: http.client.HTTPResponse) -> None:
        code = resp.status
        if 200 <= code < 300:
            return
        reason = f"HTTP {code} {resp.reason}".strip()
        if code == 429 or code >= 500:
            ra = resp.getheader("Retry-After")
            wait = float(ra) if ra and ra.isdigit() else None
            raise Transient(reason, retry=code != 429, retry_after=wait)
        raise Dead(reason)

    def _stream(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, out: Outcome,
                deadline: float) -> None:  # fmt: skip
        length = resp.getheader("Content-Length")
        declared = int(length) if length and length.isdigit() else None
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
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Transient(f"timed out after {self.s.timeout:g} s (body still arriving)")
                    if conn.sock is not None:
                        conn.sock.settimeout(left)
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.s.max_bytes:
                        raise Refused(f"body exceeds --max-bytes {self.s.max_bytes:,} (stopped while streaming)")
                    digest.update(chunk)
                    fh.write(chunk)
            if declared is not None and total < declared:
                raise Transient(f"transfer cut short: {total:,} of {declared:,} bytes")
            if total == 0:
                raise Dead("empty body")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        out.status, out.size, out.sha256, out.tmp = "fetched", total, digest.hexdigest(), tmp
