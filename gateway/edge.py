"""Who is calling, and from which web page: the client's address and the WebSocket Origin check.

Pure functions of the ASGI scope and the settings; no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable
from urllib.parse import urlsplit

from raychat.ingress import front_door_addresses

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def client_ip(scope: dict[str, Any], trusted: Iterable[Network], front_door: frozenset[str] | None = None) -> str:
    """The caller's IP address, for rate limits and logs.

    It is the TCP peer's (Serve's proxy hands its replicas the original client address in
    ``scope["client"]``), unless that peer is a trusted proxy: then ``X-Forwarded-For`` is read
    from the right, each trusted hop vouching for the one before it, and the first hop that is
    not a trusted proxy is the client. Without trusted proxies the header is ignored: anyone
    can write it.

    Behind HAProxy (raychat/ingress.py) the peer is HAProxy on this machine (``front_door``, by
    default ``front_door_addresses()``), which appends the address it saw to X-Forwarded-For:
    that last entry then stands for the peer, and the same rules go on from it.
    """
    trusted = tuple(trusted)
    peer = _address((scope.get("client") or ("",))[0])
    if peer is None:
        return "unknown"
    forwarded = ",".join(v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for")
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    if front_door is None:
        front_door = front_door_addresses()
    if hops and str(peer) in front_door:
        seen = _address(hops.pop())
        if seen is None:
            return "unknown"
        peer = seen
    if not trusted or not _within(peer, trusted):
        return str(peer)
    found = peer
    for hop in reversed(hops):
        ip = _address(hop)
        if ip is None:          # a hop our own proxy could not have written: stop at the last good one
            break
        found = ip
        if not _within(ip, trusted):
            break
    return str(found)


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """May a WebSocket handshake with this ``Origin`` header go ahead?

    A handshake without Origin comes from a non-browser client (browsers always send it), which
    a page cannot drive, so it is allowed. ``*`` allows every origin. Otherwise the origin must
    be in ``allowed``; when that is empty, it must name the same host and port as the ``Host``
    header (the page was served by this raychat).
    """
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if "*" in allowed or origin in allowed:
        return True
    if allowed or not host:
        return False
    try:
        parts = urlsplit(origin)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        host_parts = urlsplit("//" + host.strip().lower())
        # A Host without a port means the default one; take the origin scheme's (the request's own
        # scheme may be plain ws behind a TLS-terminating proxy).
        host_port = host_parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    return bool(parts.hostname) and parts.hostname == host_parts.hostname and port == host_port


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The first value of a request header, or None."""
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return None


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:        # "[::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:                      # "1.2.3.4:5678"
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _within(ip: Address, networks: tuple[Network, ...]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)
