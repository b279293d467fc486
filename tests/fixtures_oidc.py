"""A local OpenID Connect provider for the tests: a JWKS served over real HTTP, and ID tokens
signed with its keys. Registered from tests/conftest.py as a pytest plugin.

``oidc_provider`` is one per test session (the session's raychat trusts it); tests that change the
provider's keys make their own with ``OidcProvider()`` instead.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from storage.embedded import free_port

AUDIENCE = "raychat-test-client"
_RSA_POOL = 4


def _rsa_keys() -> Iterator[rsa.RSAPrivateKey]:
    # A 2048-bit key takes about half a second to make here: a few are made once and handed out
    # in turn, so consecutive SigningKeys always differ (a forger's key is never the provider's).
    made: list[rsa.RSAPrivateKey] = []
    for i in itertools.count():
        if len(made) < _RSA_POOL:
            made.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        yield made[i % _RSA_POOL]


_next_rsa = _rsa_keys()


class SigningKey:
    def __init__(self, alg: str = "RS256", kid: str | None = None):
        self.alg = alg
        self.kid = kid or f"k-{uuid.uuid4().hex[:8]}"
        if alg.startswith("ES"):
            self.private = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = next(_next_rsa)
            public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": alg}


class OidcProvider:
    """Serves ``/jwks.json`` on 127.0.0.1 from a thread; ``keys`` may be changed while it runs."""

    def __init__(self, alg: str = "RS256"):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.jwks_uri = f"{self.issuer}/jwks.json"
        self.audience = AUDIENCE
        self.alg = alg
        self.keys = [SigningKey(alg)]
        self.requests = 0
        self.status = 200
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                provider.requests += 1
                if self.path != "/jwks.json" or provider.status != 200:
                    self.send_error(404 if provider.status == 200 else provider.status)
                    return
                body = json.dumps({"keys": [k.jwk for k in provider.keys]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oidc-jwks", daemon=True)
        self._thread.start()

    @property
    def config(self) -> dict[str, Any]:
        """This provider as one entry of RAYCHAT_OIDC_ISSUERS."""
        return {"issuer": self.issuer, "audience": self.audience, "jwks_uri": self.jwks_uri,
                "algorithms": [self.alg]}

    def claims(self, now: float | None = None, **changes: Any) -> dict[str, Any]:
        """Valid ID-token claims for a new subject unless ``sub`` is given; a change to None
        removes that claim."""
        now = int(time.time() if now is None else now)
        claims = {"iss": self.issuer, "aud": self.audience, "sub": f"sub-{uuid.uuid4().hex}",
                  "iat": now, "exp": now + 600}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: SigningKey | None = None, headers: dict[str, Any] | None = None,
             algorithm: str | None = None) -> str:
        key = key or self.keys[0]
        return jwt.encode(claims, key.private, algorithm=algorithm or key.alg,
                          headers={"kid": key.kid, **(headers or {})})

    def id_token(self, **changes: Any) -> str:
        return self.sign(self.claims(**changes))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    provider = OidcProvider()
    yield provider
    provider.stop()
