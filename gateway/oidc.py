"""OpenID Connect ID tokens, verified against each configured issuer's published keys (JWKS).

Everything that is trusted comes from configuration (RAYCHAT_OIDC_ISSUERS): the issuer, our client
id there (the audience), the JWKS URL and the algorithms. Before the signature is checked, a token
is read for two things only, each a dictionary lookup: ``iss`` picks a configured issuer (exact
match) and ``kid`` picks a key of that issuer's JWKS. Header fields that point at keys elsewhere
(``jku``, ``x5u``, ``jwk``) are ignored: nothing is ever fetched because a token says so.

Algorithms are pinned per issuer to asymmetric ones, and each key is bound to one algorithm when
the JWKS is read, so neither ``alg=none`` nor an HS256 token "signed" with the public key verifies.
Times are checked against the injected clock, as for access tokens (gateway/tokens.py).

Keys are fetched over HTTP (httpx) and cached for ``ttl_s``. A token naming a kid the cache lacks
(the provider rotated its keys) triggers a refetch, at most once per ``refetch_s``, so a stream of
forged kids cannot turn into a stream of requests to the provider.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import httpx
import jwt
from jwt import PyJWK

from raychat.clock import Clock
from raychat.config import OidcIssuer
from raychat.errors import Unauthorized, Unavailable

from .tokens import check_times_and_subject

log = logging.getLogger(__name__)

MAX_ID_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 1 << 20
FETCH_TIMEOUT_S = 5.0
# Provider clocks are not ours; OpenID Connect leaves the allowance to the client.
LEEWAY_S = 30.0
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
_MAX_SUB = 255              # OpenID Connect Core §2: sub is at most 255 ASCII characters


@dataclass(frozen=True)
class OidcIdentity:
    """Who a verified ID token says the user is; (issuer, subject) is the stable key."""
    issuer: str
    subject: str
    preferred_username: str | None = None
    email: str | None = None
    name: str | None = None


class JwksCache:
    """One issuer's signing keys by kid, fetched from its jwks_uri and cached.

    ``key`` raises Unauthorized for a kid the issuer does not publish, and Unavailable when no keys
    could ever be fetched. After a failed refresh the keys fetched before stay in use.
    """

    def __init__(self, jwks_uri: str, algorithms: Sequence[str], clock: Clock, *, ttl_s: float,
                 refetch_s: float, http: httpx.AsyncClient | None = None):
        self._uri = jwks_uri
        self._algorithms = frozenset(algorithms)
        self._clock = clock
        self._ttl = ttl_s
        self._refetch = refetch_s
        self._http = http
        self._keys: dict[str | None, PyJWK] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._lock: asyncio.Lock | None = None
        self.fetches = 0

    async def key(self, kid: str | None) -> PyJWK:
        if self._clock.monotonic() - self._fetched_at >= self._ttl:
            await self._refresh(stale=self._fetched_at)
        if self._keys is None:
            raise Unavailable("the identity provider's keys cannot be fetched; retry later", retry_after_ms=5000)
        found = self._lookup(kid)
        if found is None:
            await self._refresh(stale=self._fetched_at)
            found = self._lookup(kid)
        if found is None:
            raise Unauthorized("token names an unknown key")
        return found

    def _lookup(self, kid: str | None) -> PyJWK | None:
        keys = self._keys or {}
        if kid is None:
            # RFC 7515 §4.1.4 lets a token omit kid when its issuer publishes a single key.
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    async def _refresh(self, stale: float) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._fetched_at != stale:
                return                  # another request refreshed while this one waited
            now = self._clock.monotonic()
            if now - self._attempted_at < self._refetch:
                return
            self._attempted_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self._uri, exc)
                return
            self._keys, self._fetched_at = keys, now

    async def _fetch(self) -> dict[str | None, PyJWK]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        self.fetches += 1
        response = await self._http.get(self._uri, headers={"accept": "application/json"})
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}")
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("JWKS is too large")
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise ValueError("not a JWK Set (no keys list)")
        keys: dict[str | None, PyJWK] = {}
        for jwk in body["keys"]:
            key = self._usable(jwk)
            if key is not None:
                keys[jwk.get("kid")] = key
        return keys

    def _usable(self, jwk: Any) -> PyJWK | None:
        """The key bound to its one algorithm, or None for a key we must not verify with."""
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            return None
        if jwk.get("kid") is not None and not isinstance(jwk["kid"], str):
            return None
        # A key without "alg" gets the one its type implies (RSA: RS256, EC P-256: ES256).
        if jwk.get("alg") is not None and jwk["alg"] not in self._algorithms:
            return None
        try:
            key = PyJWK(jwk)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            return None
        return key if key.algorithm_name in self._algorithms else None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


class OidcVerifier:
    """Verifies ID tokens from the configured issuers; everything else is Unauthorized."""

    def __init__(self, issuers: Sequence[OidcIssuer], clock: Clock, *, ttl_s: float = 3600,
                 refetch_s: float = 60, http: httpx.AsyncClient | None = None):
        self._issuers = {i.issuer: i for i in issuers}
        self._clock = clock
        self._jwks = {i.issuer: JwksCache(i.jwks_uri, i.algorithms, clock, ttl_s=ttl_s, refetch_s=refetch_s,
                                          http=http)
                      for i in issuers}

    def jwks(self, issuer: str) -> JwksCache:
        return self._jwks[issuer]

    async def verify(self, id_token: str, nonce: str | None = None) -> OidcIdentity:
        if not isinstance(id_token, str) or not id_token:
            raise Unauthorized("id_token is missing or not a string")
        if len(id_token) > MAX_ID_TOKEN_CHARS:
            raise Unauthorized("id_token is too long")
        header, unverified = _peek(id_token)
        issuer = self._issuers.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if issuer is None:
            raise Unauthorized("id_token is not from a configured issuer")
        # Checked before any key is looked up, so tokens that can never verify cost no fetch.
        if header.get("alg") not in issuer.algorithms:
            raise Unauthorized("id_token signature is not valid")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("id_token is malformed")
        key = await self._jwks[issuer.issuer].key(kid)
        claims = self._decode(id_token, key, issuer)
        subject = check_times_and_subject(claims, self._clock.now(), LEEWAY_S)
        if len(subject) > _MAX_SUB:
            raise Unauthorized("id_token is malformed")
        if "azp" in claims and claims["azp"] != issuer.audience:
            raise Unauthorized("id_token was issued for another client")
        if nonce is not None:
            got = claims.get("nonce")
            # surrogatepass: JSON lets a client send a lone surrogate, which must not become a 500.
            if not isinstance(got, str) or not hmac.compare_digest(got.encode("utf-8", "surrogatepass"),
                                                                   nonce.encode("utf-8", "surrogatepass")):
                raise Unauthorized("id_token nonce does not match")
        return OidcIdentity(issuer.issuer, subject, _text(claims, "preferred_username"), _text(claims, "email"),
                            _text(claims, "name"))

    @staticmethod
    def _decode(id_token: str, key: PyJWK, issuer: OidcIssuer) -> dict[str, Any]:
        try:
            return jwt.decode(
                id_token, key, algorithms=list(issuer.algorithms), audience=issuer.audience, issuer=issuer.issuer,
                options={"require": _REQUIRED, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"id_token lacks the {exc.claim} claim") from exc
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            raise Unauthorized("id_token signature is not valid") from exc
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise Unauthorized("id_token was issued for another client") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized("id_token is malformed") from exc

    async def aclose(self) -> None:
        for cache in self._jwks.values():
            await cache.aclose()


def _peek(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before any check: only used to choose the issuer and the key."""
    try:
        header = jwt.get_unverified_header(id_token)
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized("id_token is malformed") from exc
    if not isinstance(claims, dict):
        raise Unauthorized("id_token is malformed")
    return header, claims


def _text(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None
