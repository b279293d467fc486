"""Webhooks: a signed JSON POST to the URL a user registered as their device's token.

Signature (docs/protocol.md, "Push notifications"), so a receiver can check the sender and
refuse replays:

    X-Raychat-Timestamp: <unix seconds>
    X-Raychat-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

Redirects are never followed (a redirect could lead past the URL policy), and the URL is
checked against the policy again at send time, in case the policy changed since it was
registered. Without an allowlist the host's name is also resolved first, and a name that
resolves to any address that is not public (internal.example.com → 10.0.0.5) is not called:
the URL check alone cannot see where a name leads. (A name whose answers change between this
lookup and the client's own is the one gap left: an allowlist or an egress proxy closes it.)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import socket
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from raychat.clock import Clock

from ..ports import Notification, Outcome, Target
from ..targets import WebhookPolicy, public_address
from .http import error_text, post, transient

USER_AGENT = "raychat-push/1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookProvider:
    platform = "webhook"

    def __init__(self, secret: str, policy: WebhookPolicy, clock: Clock, timeout_s: float,
                 client: httpx.AsyncClient | None = None,
                 resolve: Callable[[str, int], Awaitable[list[str]]] | None = None):
        self._secret = secret
        self._policy = policy
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._resolve = resolve or addresses_of

    def breaker_key(self, target: Target) -> str:
        parts = urlsplit(target.token)
        return f"webhook:{parts.hostname}:{parts.port or ''}"

    async def send(self, target: Target, notification: Notification) -> Outcome:
        try:
            url = self._policy.check(target.token)
        except ValueError as exc:
            return Outcome.rejected(f"webhook URL no longer allowed: {exc}")
        if not self._policy.has_allowlist:
            inside = await self._leads_inside(url)
            if inside:
                return Outcome.rejected(inside)
        body = json.dumps({"type": "message", "device_id": target.device_id, **notification.to_dict()},
                          ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self._clock.now()))
        answer = await post(self._client, url, content=body, headers={
            "content-type": "application/json", "user-agent": USER_AGENT,
            "x-raychat-timestamp": timestamp, "x-raychat-signature": signature(self._secret, timestamp, body)})
        if isinstance(answer, Outcome):
            return answer
        if 200 <= answer.status_code < 300:
            return Outcome.delivered()
        if answer.status_code == 410:
            return Outcome.invalid_token("webhook answered 410 Gone")
        return transient(answer, self._clock.now(), "webhook") or \
            Outcome.rejected(f"webhook answered {answer.status_code}: {error_text(answer, 100)}")

    async def _leads_inside(self, url: str) -> str | None:
        """Why a URL whose host is a name may not be called (it resolves to an address that is not
        public), or None. A lookup that fails is left to the POST, which fails the same way and
        is retried."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host)
            return None                     # an address: the URL check has judged it already
        except ValueError:
            pass
        try:
            found = await self._resolve(host, parts.port or 443)
        except OSError:
            return None
        for address in found:
            if not public_address(ipaddress.ip_address(address.split("%", 1)[0])):
                return f"webhook host {host} resolves to {address}, which is not a public address"
        return None

    async def close(self) -> None:
        await self._client.aclose()


async def addresses_of(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the HTTP client would look it up."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]
