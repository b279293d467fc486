"""Local servers that play the push providers, for one test session.

One ASGI app plays all three, on two ports served by hypercorn in a thread of its own: a plain
HTTP/1.1 one (FCM, webhooks) and a TLS one with ALPN ``h2`` (APNs, which speaks only HTTP/2).
It checks what a real provider checks (the OAuth assertion, the bearer token, the APNs provider
token, the webhook signature) and records every request with the HTTP version it came in on.

How it answers is up to the test: ``mode`` ("ok", "fail": 500, "slow": answers after 3 s,
"throttle": 429 with Retry-After) applies to every send; a token or URL containing
"unregistered" or "badpayload" gets the provider's answer for a dead token or a bad payload.

Registered from tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from storage.embedded import free_port

WEBHOOK_SECRET = "webhook-secret-" + "w" * 40
PROJECT = "raychat-test"
TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "chat.raychat.test"
SLOW_S = 3.0


@dataclass
class Seen:
    path: str
    http_version: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeProviders:
    """The state of the fake servers; tests change ``mode`` and read ``requests``."""
    http_url: str = ""
    https_url: str = ""
    cert_path: Path | None = None
    account: dict[str, Any] = field(default_factory=dict)   # an FCM service account JSON
    apns_key: str = ""                                     # an APNs .p8 key (PEM)
    mode: str = "ok"
    requests: list[Seen] = field(default_factory=list)
    oauth_tokens: list[str] = field(default_factory=list)
    _public: dict[str, Any] = field(default_factory=dict)

    def sends(self, prefix: str) -> list[Seen]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def reset(self) -> None:
        self.mode = "ok"
        self.requests.clear()

    # ---- the ASGI app ------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen = Seen(scope["path"], scope["http_version"], headers, body)
        path = scope["path"]
        if path == "/token":
            status, answer, extra = self._oauth(body)
        else:
            self.requests.append(seen)
            if self.mode == "slow":
                await asyncio.sleep(SLOW_S)
            if path.startswith("/v1/projects/"):
                status, answer, extra = self._fcm(seen)
            elif path.startswith("/3/device/"):
                status, answer, extra = self._apns(seen)
            else:
                status, answer, extra = self._webhook(seen)
        payload = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), *extra]})
        await send({"type": "http.response.body", "body": payload})

    def _common(self) -> tuple[int, Any, list] | None:
        if self.mode == "fail":
            return 500, {"error": "down for maintenance"}, []
        if self.mode == "throttle":
            return 429, {"error": "slow down"}, [(b"retry-after", b"7")]
        return None

    def _oauth(self, body: bytes):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        try:
            claims = jwt.decode(form.get("assertion", ""), self._public["rsa"], algorithms=["RS256"],
                                audience=self.account["token_uri"])
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}, []
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" \
                or claims.get("iss") != self.account["client_email"] or "firebase.messaging" not in claims["scope"]:
            return 400, {"error": "invalid_grant"}, []
        token = f"ya29.fake-{len(self.oauth_tokens)}"
        self.oauth_tokens.append(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}, []

    def _fcm(self, seen: Seen):
        if seen.headers.get("authorization", "").removeprefix("Bearer ") not in self.oauth_tokens:
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, []
        if (failed := self._common()) is not None:
            return failed
        token = seen.json()["message"]["token"]
        if "unregistered" in token:
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "Requested entity was not found.",
                                   "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                                "errorCode": "UNREGISTERED"}]}}, []
        if "badpayload" in token:
            return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "Invalid JSON payload",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                                "fieldViolations": [{"field": "message.data"}]}]}}, []
        return 200, {"name": f"projects/{PROJECT}/messages/{len(self.requests)}"}, []

    def _apns(self, seen: Seen):
        try:
            header = jwt.get_unverified_header(seen.headers.get("authorization", "").removeprefix("bearer "))
            claims = jwt.decode(seen.headers["authorization"].removeprefix("bearer "), self._public["ec"],
                                algorithms=["ES256"])
            assert header["kid"] == KEY_ID and claims["iss"] == TEAM_ID and time.time() - claims["iat"] < 3600
        except Exception:
            return 403, {"reason": "InvalidProviderToken"}, []
        if seen.headers.get("apns-topic") != TOPIC:
            return 400, {"reason": "TopicDisallowed"}, []
        if (failed := self._common()) is not None:
            return failed
        token = seen.path.rsplit("/", 1)[1]
        if "dead" in token:       # APNs tokens are hex: "dead" plays "unregistered"
            return 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}, []
        if "bad" in token:
            return 400, {"reason": "BadDeviceToken"}, []
        return 200, {}, [(b"apns-id", b"00000000-0000-0000-0000-000000000001")]

    def _webhook(self, seen: Seen):
        stamp = seen.headers.get("x-raychat-timestamp", "")
        mac = hmac.new(WEBHOOK_SECRET.encode(), stamp.encode() + b"." + seen.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(seen.headers.get("x-raychat-signature", ""), "sha256=" + mac):
            return 401, {"error": "bad signature"}, []
        if (failed := self._common()) is not None:
            return failed
        if "unregistered" in seen.path:
            return 410, {"error": "gone"}, []
        if "badpayload" in seen.path:
            return 400, {"error": "what is this"}, []
        return 200, {"ok": True}, []


def _keys(fake: FakeProviders) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    fake._public = {"rsa": rsa_key.public_key(), "ec": ec_key.public_key()}
    fake.account = {
        "type": "service_account", "project_id": PROJECT, "private_key_id": "k1",
        "private_key": rsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "client_email": f"push@{PROJECT}.iam.gserviceaccount.com", "token_uri": fake.http_url + "/token"}
    fake.apns_key = ec_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def fake_providers(tmp_path_factory) -> Iterator[FakeProviders]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from tests.test_tls import self_signed

    cert, key = self_signed(tmp_path_factory.mktemp("push-tls"))
    plain, secure = free_port(), free_port()
    fake = FakeProviders(http_url=f"http://127.0.0.1:{plain}", https_url=f"https://127.0.0.1:{secure}",
                         cert_path=cert)
    _keys(fake)
    config = Config()
    config.bind = [f"127.0.0.1:{secure}"]
    config.insecure_bind = [f"127.0.0.1:{plain}"]
    config.certfile, config.keyfile = str(cert), str(key)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_until_complete(serve(fake, config, shutdown_trigger=stop.wait))

    thread = threading.Thread(target=run, name="fake-push-providers", daemon=True)
    thread.start()
    started.wait(10)
    _wait_listening(plain)
    _wait_listening(secure)
    yield fake
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)


def _wait_listening(port: int, deadline_s: float = 10.0) -> None:
    import socket

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"fake push provider did not listen on {port}")


@pytest.fixture
def providers_server(fake_providers) -> Iterator[FakeProviders]:
    """The session's fake providers, reset before and after the test."""
    fake_providers.reset()
    yield fake_providers
    fake_providers.reset()
