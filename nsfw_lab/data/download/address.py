"""Which addresses a download may connect to, and connections that enforce it when they connect.

A host name is resolved once per connection; every address it resolves to must be public (or inside a
network the user allowed), and the socket connects to one of exactly those addresses, so a second DNS
answer cannot point the request elsewhere (DNS rebinding). IPv6 forms that embed an IPv4 address
(IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by the IPv4 address
inside, and IPv6 ranges Python does not count as private but that are not public unicast either
(IPv4-compatible and IPv4-translated ``::/8`` forms, site-local ``fec0::/10``, local-use NAT64
``64:ff9b:1::/48``) are refused.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import time

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_KINDS = ("loopback", "link_local", "private", "multicast", "reserved", "unspecified", "site_local")


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


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class AddressPolicy:
    """Public (global unicast) addresses, plus ``allowed``: ``None`` allows nothing else, an empty tuple
    every address (``--allow-private``), otherwise the networks given (``--allow-network 127.0.0.1/32``)."""

    def __init__(self, allowed: tuple[str, ...] | None = None) -> None:
        self.allow_all = allowed is not None and len(allowed) == 0
        self.networks = [ipaddress.ip_network(n, strict=False) for n in (allowed or ())]

    def _allowed(self, ip: IPAddress) -> bool:
        return self.allow_all or any(ip in n for n in self.networks if n.version == ip.version)

    def why_refused(self, ip: IPAddress) -> str | None:
        """None when ``ip`` may be used, else the reason."""
        if self._allowed(ip):
            return None
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = self.why_refused(inner)
            return None if why is None else f"{ip} embeds {why}"
        public = ip.is_global and not ip.is_multicast and not ip.is_reserved
        if isinstance(ip, ipaddress.IPv6Address):
            public = public and not ip.is_site_local and ip not in _NAT64_LOCAL
        if public:
            return None
        kind = next((k for k in _KINDS if getattr(ip, f"is_{k}", False)), "non-public")
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


class Connection(http.client.HTTPConnection):
    """HTTP connection to an allowed address only, connecting by ``deadline`` (``time.monotonic()``).

    ``live_sock`` is the socket in use at every moment (the TCP one, then the TLS one, even after
    ``http.client`` hands it to the response), so another thread can shut it (:meth:`shut`)."""

    def __init__(self, host: str, port: int, deadline: float, policy: AddressPolicy) -> None:
        super().__init__(host, port, timeout=max(0.01, deadline - time.monotonic()))
        self._policy = policy
        self.deadline = deadline
        self.live_sock: socket.socket | None = None
        self._shut = False

    def shut(self) -> None:
        """Shut the live socket from another thread: a blocked connect, handshake, read or write returns."""
        self._shut = True
        sock = self.live_sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0 or self._shut:
            raise TimeoutError(f"no connection to {self.host} before the deadline")
        return left

    def connect(self) -> None:
        last: OSError | None = None
        for family, sockaddr in self._policy.resolve(self.host, self.port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            self.live_sock = sock
            try:
                sock.settimeout(self._left())
                sock.connect(sockaddr)
                self.sock = sock
                return
            except OSError as exc:
                sock.close()
                last = exc
        raise last or TimeoutError(f"no connection to {self.host} before the deadline")


class TLSConnection(Connection):
    """HTTPS over :class:`Connection`, verifying the certificate for the URL's host name; the handshake is
    made on the TLS socket itself, so a shut during it interrupts it."""

    default_port = 443

    def __init__(self, host: str, port: int, deadline: float, policy: AddressPolicy, ctx: ssl.SSLContext) -> None:
        super().__init__(host, port, deadline, policy)
        self._ctx = ctx

    def connect(self) -> None:
        super().connect()
        tls = self._ctx.wrap_socket(self.sock, server_hostname=self.host.strip("[]"), do_handshake_on_connect=False)
        self.sock = self.live_sock = tls
        tls.settimeout(self._left())
        tls.do_handshake()
