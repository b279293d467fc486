"""Apple Push Notification service: HTTP/2 with a provider token.

The provider token is a JWT signed ES256 with the team's .p8 key (PyJWT), ``kid`` = key id,
``iss`` = team id, ``iat``. Apple refuses tokens older than an hour and throttles ones renewed
more than every 20 minutes, so one is reused for 50 minutes. Sends are
``POST {base}/3/device/{token}`` over HTTP/2 (httpx with ``h2``; APNs speaks nothing else).

Errors (developer.apple.com, "Handling notification responses from APNs"): 410 ``Unregistered``,
400 ``BadDeviceToken`` and ``DeviceTokenNotForTopic`` mean the token is dead; 403
``ExpiredProviderToken`` / ``InvalidProviderToken`` mean ours is, so it is made again; 429 and
5xx are transient; other 4xx are a payload Apple will never take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import jwt

from raychat.clock import Clock

from ..ports import Notification, Outcome, Target
from .http import error_text, post, transient

PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
TOKEN_REUSE_S = 50 * 60
_DEAD_TOKEN = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "Unregistered"})
_OUR_TOKEN = frozenset({"ExpiredProviderToken", "InvalidProviderToken", "MissingProviderToken"})


class ApnsProvider:
    platform = "apns"

    def __init__(self, key_pem: str, *, key_id: str, team_id: str, topic: str, base_url: str, clock: Clock,
                 timeout_s: float, client: httpx.AsyncClient | None = None):
        try:
            jwt.encode({"probe": 1}, key_pem, algorithm="ES256")
        except Exception as exc:   # PyJWT/cryptography raise several types for a bad key
            raise ValueError(f"not an EC P-256 private key in PEM (.p8) ({type(exc).__name__})") from None
        self._key = key_pem
        self._key_id, self._team_id, self._topic = key_id, team_id, topic
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._client = client or httpx.AsyncClient(http2=True, timeout=timeout_s, follow_redirects=False)
        self._token: str | None = None
        self._token_at = 0.0

    @staticmethod
    def default_url(sandbox: bool) -> str:
        return SANDBOX if sandbox else PRODUCTION

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> "ApnsProvider":
        return cls(Path(path).read_text(), **kwargs)

    def breaker_key(self, target: Target) -> str:
        return "apns"

    def _provider_token(self) -> str:
        now = self._clock.now()
        if self._token is None or now - self._token_at >= TOKEN_REUSE_S:
            self._token = jwt.encode({"iss": self._team_id, "iat": int(now)}, self._key, algorithm="ES256",
                                     headers={"kid": self._key_id})
            self._token_at = now
        return self._token

    async def send(self, target: Target, notification: Notification) -> Outcome:
        n = notification
        alert = {"title": n.title} if n.body is None else {"title": n.title, "body": n.body}
        payload = {"aps": {"alert": alert, "thread-id": n.conversation_id, "sound": "default"},
                   "conversation_id": n.conversation_id, "seq": n.seq}
        headers = {
            "authorization": f"bearer {self._provider_token()}",
            "apns-topic": self._topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
            # A newer push for the conversation replaces the older one on the device (at most 64 bytes).
            "apns-collapse-id": n.conversation_id.encode()[:64].decode(errors="ignore"),
        }
        answer = await post(self._client, f"{self._base}/3/device/{target.token}", json=payload, headers=headers)
        if isinstance(answer, Outcome):
            return answer
        if answer.status_code == 200:
            return Outcome.delivered()
        reason = _reason(answer)
        if answer.status_code == 410 or reason in _DEAD_TOKEN:
            return Outcome.invalid_token(f"APNs: {reason or answer.status_code}")
        if answer.status_code == 403 and reason in _OUR_TOKEN:
            self._token = None
            return Outcome.retry(f"APNs refused our provider token: {reason}")
        return transient(answer, self._clock.now(), "APNs") or \
            Outcome.rejected(f"APNs answered {answer.status_code}: {reason or error_text(answer)}")

    async def close(self) -> None:
        await self._client.aclose()


def _reason(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("reason", ""))
    except (ValueError, AttributeError):
        return ""
