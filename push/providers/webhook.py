"""Webhooks: a signed JSON POST to the URL a user registered as their device's token.

Signature (docs/protocol.md, "Push notifications"), so a receiver can check the sender and
refuse replays:

    X-Raychat-Timestamp: <unix seconds>
    X-Raychat-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>

Redirects are never followed (a redirect could lead past the URL policy), and the URL is
checked against the policy again at send time, in case the policy changed since it was
registered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlsplit

import httpx

from raychat.clock import Clock

from ..ports import Notification, Outcome, Target
from ..targets import WebhookPolicy
from .http import error_text, post, transient

USER_AGENT = "raychat-push/1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookProvider:
    platform = "webhook"

    def __init__(self, secret: str, policy: WebhookPolicy, clock: Clock, timeout_s: float,
                 client: httpx.AsyncClient | None = None):
        self._secret = secret
        self._policy = policy
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def breaker_key(self, target: Target) -> str:
        parts = urlsplit(target.token)
        return f"webhook:{parts.hostname}:{parts.port or ''}"

    async def send(self, target: Target, notification: Notification) -> Outcome:
        try:
            url = self._policy.check(target.token)
        except ValueError as exc:
            return Outcome.rejected(f"webhook URL no longer allowed: {exc}")
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

    async def close(self) -> None:
        await self._client.aclose()
