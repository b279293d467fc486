"""What a device token may look like, per platform, and what a listing shows of it.

FCM registration tokens and APNs device tokens are checked for shape only (their providers
say "invalid" later, and the worker then removes the device). A webhook's token is a URL the
server will POST to, so it is checked against a policy: otherwise any user could make the
server call its own internal addresses (SSRF).

Webhook policy: with an allowlist (RAYCHAT_PUSH_WEBHOOK_ALLOWED), the URL must fall under one
of its entries: a URL prefix (same scheme and host, same port if the entry has one, path
under the entry's path) or a bare host name (https only). Without one, any https URL whose
host is a name (not ``localhost`` or a ``.local``/``.internal`` one) or a public IP address,
in whatever form a resolver reads one (127.1 is 127.0.0.1). A name that resolves to a private
address is not caught here, where nothing is looked up: the push worker resolves it before
each call (push/providers/webhook.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import SplitResult, urlsplit

FCM_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{16,4096}")      # FCM tokens are ~160 such characters
APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")          # 32 bytes in hex today; Apple says it may grow
MAX_URL_CHARS = 2048
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


class WebhookPolicy:
    def __init__(self, allowed: str | None):
        self._prefixes: list[SplitResult] = []
        self._hosts: set[str] = set()
        for entry in (e.strip() for e in (allowed or "").split(",")):
            if not entry:
                continue
            if "://" in entry:
                self._prefixes.append(urlsplit(entry))
            else:
                self._hosts.add(entry.lower().rstrip("."))

    @property
    def has_allowlist(self) -> bool:
        return bool(self._prefixes or self._hosts)

    def check(self, url: str) -> str:
        """The URL, if webhooks may go there; else ValueError saying why."""
        if len(url) > MAX_URL_CHARS:
            raise ValueError(f"a webhook URL has at most {MAX_URL_CHARS} characters")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise ValueError("a webhook URL has no spaces or control characters")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError("not a valid URL") from None
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("a webhook URL must be http(s)://host/...")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a webhook URL carries no user name or password")
        if parts.fragment:
            raise ValueError("a webhook URL has no #fragment")
        if self.has_allowlist:
            if parts.scheme == "https" and host in self._hosts:
                return url
            for p in self._prefixes:
                if (parts.scheme == p.scheme and host == (p.hostname or "").rstrip(".")
                        and (p.port is None or p.port == port) and _under(parts.path, p.path)):
                    return url
            raise ValueError("this server does not send webhooks to that address")
        if parts.scheme != "https":
            raise ValueError("a webhook URL must be https")
        if not _public_host(host):
            raise ValueError("a webhook URL must name a public host")
        return url


def _under(path: str, prefix: str) -> bool:
    if prefix in ("", "/"):
        return True
    return path == prefix.rstrip("/") or path.startswith(prefix if prefix.endswith("/") else prefix + "/")


def _public_host(host: str) -> bool:
    host = host.lower()
    try:
        return public_address(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # No top-level domain is numeric: the resolver and every HTTP client read such a host as an
        # IPv4 address in inet_aton's forms (127.1, 0177.0.0.1, 0x7f.1, 10.1), which
        # ipaddress does not parse. Read it the same way, or refuse it.
        try:
            return public_address(ipaddress.IPv4Address(socket.inet_aton(host)))
        except OSError:
            return False
    return "." in host and host != "localhost" and not host.endswith(_PRIVATE_SUFFIXES)


_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
# IPv6 prefixes that carry an IPv4 address a packet is translated to: NAT64's well-known and
# local-use prefixes (RFC 6052, 8215). 64:ff9b::7f00:1 reaches 127.0.0.1 through a translator.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """May a webhook go to ``ip``: a global unicast address, also when IPv6 only carries an IPv4 one."""
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return public_address(embedded)
    return True


def check_token(platform: str, token: str, webhooks: WebhookPolicy) -> str:
    """The token as stored (APNs hex lower-cased), or ValueError saying what is wrong."""
    if platform == "fcm":
        if not FCM_TOKEN.fullmatch(token):
            raise ValueError("an FCM token is 16-4096 characters of A-Z, a-z, 0-9, '_', ':', '.', '-'")
        return token
    if platform == "apns":
        if not APNS_TOKEN.fullmatch(token):
            raise ValueError("an APNs device token is 64-200 hexadecimal digits")
        return token.lower()
    if platform == "webhook":
        return webhooks.check(token)
    raise ValueError("platform must be fcm, apns or webhook")


def mask(platform: str, token: str) -> str:
    """Enough of a token for its owner to tell devices apart, never enough to push to it."""
    if platform == "webhook":
        parts = urlsplit(token)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}/…"
    return "…" + token[-6:]
