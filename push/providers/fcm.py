"""Firebase Cloud Messaging, HTTP v1 API.

Auth is OAuth 2.0 for service accounts (RFC 7523): a JWT assertion signed RS256 with the
service account's private key (PyJWT) is traded at its ``token_uri`` for an access token,
which is reused until a minute before it expires. Sends are
``POST {base}/v1/projects/{project_id}/messages:send``.

Errors (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode): ``UNREGISTERED`` (404), a
400 ``INVALID_ARGUMENT`` about the token, and ``SENDER_ID_MISMATCH`` (403) mean the token is
dead; a 401 means our access token is, so it is fetched again; 429 and 5xx are transient.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jwt

from raychat.clock import Clock

from ..ports import Notification, Outcome, Target
from .http import error_text, post, transient

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TTL_S = 3600           # the most Google accepts
REFRESH_BEFORE_S = 60            # fetch a new access token this long before the old one expires
_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri", "project_id")


class FcmProvider:
    platform = "fcm"

    def __init__(self, account: dict[str, Any], base_url: str, clock: Clock, timeout_s: float,
                 client: httpx.AsyncClient | None = None):
        missing = [f for f in _ACCOUNT_FIELDS if not isinstance(account.get(f), str) or not account[f]]
        if missing:
            raise ValueError(f"the service account JSON lacks {', '.join(missing)}")
        try:
            jwt.encode({"probe": 1}, account["private_key"], algorithm="RS256")
        except Exception as exc:   # PyJWT/cryptography raise several types for a bad key
            raise ValueError(f"its private_key is not an RSA private key in PEM ({type(exc).__name__})") from None
        self._account = account
        self._send_url = f"{base_url.rstrip('/')}/v1/projects/{account['project_id']}/messages:send"
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()

    @classmethod
    def from_file(cls, path: Path, base_url: str, clock: Clock, timeout_s: float) -> "FcmProvider":
        try:
            account = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
        if not isinstance(account, dict):
            raise ValueError(f"{path} is not a service account JSON object")
        return cls(account, base_url, clock, timeout_s)

    def breaker_key(self, target: Target) -> str:
        return "fcm"

    async def _access_token(self) -> str | Outcome:
        async with self._token_lock:       # one fetch for all the sends that need it
            now = self._clock.now()
            if self._token and now < self._token_until:
                return self._token
            a = self._account
            assertion = jwt.encode({"iss": a["client_email"], "scope": SCOPE, "aud": a["token_uri"],
                                    "iat": int(now), "exp": int(now) + ASSERTION_TTL_S},
                                   a["private_key"], algorithm="RS256",
                                   headers={"kid": a["private_key_id"]} if a.get("private_key_id") else None)
            answer = await post(self._client, a["token_uri"], data={"grant_type": GRANT, "assertion": assertion})
            if isinstance(answer, Outcome):
                return Outcome.retry(f"OAuth token: {answer.detail}")
            if answer.status_code != 200:
                # A refused assertion (wrong key, clock skew) will not fix itself per push, but it
                # is not the device's fault either: retry, and let the breaker hold the flood.
                return Outcome.retry(f"OAuth token endpoint answered {answer.status_code}: {error_text(answer)}")
            try:
                grant = answer.json()
                token, ttl = grant["access_token"], float(grant.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                return Outcome.retry("OAuth token endpoint answered without an access_token")
            self._token, self._token_until = token, now + max(0.0, ttl - REFRESH_BEFORE_S)
            return token

    async def send(self, target: Target, notification: Notification) -> Outcome:
        token = await self._access_token()
        if isinstance(token, Outcome):
            return token
        answer = await post(self._client, self._send_url, json=_message(target.token, notification),
                            headers={"authorization": f"Bearer {token}"})
        if isinstance(answer, Outcome):
            return answer
        if answer.status_code == 200:
            return Outcome.delivered()
        if answer.status_code == 401:
            self._token = None        # revoked or expired early: the next send fetches a new one
            return Outcome.retry("FCM refused our access token (401)")
        error = _error(answer)
        code, status = error.get("errorCode"), error.get("status")
        if answer.status_code == 404 or code == "UNREGISTERED":
            return Outcome.invalid_token(f"FCM: {code or status or 404}")
        if code == "SENDER_ID_MISMATCH":
            return Outcome.invalid_token("FCM: the token belongs to another sender")
        if answer.status_code == 400 and (status == "INVALID_ARGUMENT" or code == "INVALID_ARGUMENT") \
                and error.get("about_token"):
            return Outcome.invalid_token(f"FCM: invalid registration token: {error.get('message', '')[:200]}")
        return transient(answer, self._clock.now(), "FCM") or \
            Outcome.rejected(f"FCM answered {answer.status_code}: {error_text(answer)}")

    async def close(self) -> None:
        await self._client.aclose()


def _message(token: str, n: Notification) -> dict[str, Any]:
    shown = {"title": n.title} if n.body is None else {"title": n.title, "body": n.body}
    data = {"conversation_id": n.conversation_id, "seq": str(n.seq)}     # FCM data values are strings
    if n.sender_id:
        data["sender_id"] = n.sender_id
    return {"message": {
        "token": token, "notification": shown, "data": data,
        # One notification per conversation on the device: a newer push replaces the older one.
        "android": {"collapse_key": n.conversation_id, "notification": {"tag": n.conversation_id}},
        "apns": {"headers": {"apns-collapse-id": n.conversation_id[:64]}},
    }}


def _error(answer: httpx.Response) -> dict[str, Any]:
    """{status, message, errorCode, about_token} from a google.rpc.Status error body."""
    try:
        err = answer.json().get("error")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(err, dict):          # a proxy's or load balancer's error page, say
        return {}
    out: dict[str, Any] = {"status": err.get("status"), "message": str(err.get("message", ""))}
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("errorCode"):
            out["errorCode"] = detail["errorCode"]
        for violation in detail.get("fieldViolations") or ():
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                out["about_token"] = True
    if "registration token" in out["message"].lower():
        out["about_token"] = True
    return out
