"""Access tokens: HS256 JWTs signed with one server secret, and where that secret lives.

PyJWT reads the wall clock itself (it has no clock parameter), so ``verify`` lets PyJWT check
the signature, algorithm, issuer, audience and required claims, and checks ``exp``, ``nbf`` and
``iat`` itself against the injected clock: expiry is tested by moving a FakeClock.

Only HS256 is accepted, pinned here and never read from the token. Header fields that name keys
(``jku``, ``x5u``, ``jwk``, ``kid``) are ignored: nothing is fetched or looked up from a token.
"""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import jwt

from raychat.clock import Clock
from raychat.errors import Unauthorized

ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 4096
MIN_SECRET_BYTES = 32    # RFC 7518 §3.2: an HS256 key is at least as long as the hash output
SECRET_FILE = "jwt.secret"
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]


class TokenIssuer:
    """Issues and verifies access tokens for one issuer and audience.

    ``leeway_s`` (0-5 s) absorbs clock skew between replicas for ``exp``, ``nbf`` and ``iat``.
    """

    def __init__(self, secret: str, issuer: str, audience: str, ttl_s: int, clock: Clock,
                 *, leeway_s: float = 5.0):
        if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes "
                             "(set RAYCHAT_JWT_SECRET to a longer value, or unset it to generate one)")
        if ttl_s <= 0:
            raise ValueError("the access token TTL must be positive (RAYCHAT_ACCESS_TOKEN_TTL_S)")
        if not 0 <= leeway_s <= 5:
            raise ValueError("leeway_s must be between 0 and 5 seconds")
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = int(ttl_s)
        self._clock = clock
        self._leeway = float(leeway_s)

    def issue(self, user_id: str) -> tuple[str, int]:
        """A signed token for ``user_id`` and its lifetime in seconds (the wire's ``expires_in``)."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("user_id must be a non-empty string")
        now = int(self._clock.now())
        claims = {
            "sub": user_id,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl_s

    def verify(self, token: str) -> str:
        """The ``sub`` (user id) of a valid token; anything else raises ``Unauthorized``.

        Messages are short and fixed; they never contain the token.
        """
        if not isinstance(token, str) or not token:
            raise Unauthorized("token is missing or not a string")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("token is too long")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": _REQUIRED,
                    # Checked below against the injected clock instead of PyJWT's wall clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the {exc.claim} claim") from exc
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            raise Unauthorized("token signature is not valid") from exc
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as exc:
            raise Unauthorized("token was issued for another service") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("token is malformed") from exc
        except (ValueError, TypeError) as exc:  # a parser edge PyJWT did not wrap: still bad input
            raise Unauthorized("token is malformed") from exc
        return self._check_times_and_subject(claims)

    def _check_times_and_subject(self, claims: dict[str, Any]) -> str:
        now = self._clock.now()
        exp = _numeric_date(claims, "exp")
        iat = _numeric_date(claims, "iat")
        nbf = _numeric_date(claims, "nbf") if "nbf" in claims else None
        if exp <= now - self._leeway:
            raise Unauthorized("token has expired")
        if iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            raise Unauthorized("token is not yet valid")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("token is malformed")
        return sub


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    # RFC 7519 NumericDate: a JSON number. Python's json also parses NaN and Infinity; neither is a date.
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Unauthorized(f"token has a malformed {name} claim")
    return float(value)


def load_or_create_secret(data_dir: Path) -> str:
    """The signing secret in ``data_dir/jwt.secret``, generated on first use (mode 0600).

    Creation is atomic and first-writer-wins: the secret is written and fsynced under a temporary
    name, then hard-linked into place, which fails if another process got there first; that
    process's secret is then read and used. (``os.replace`` would let two gateway replicas starting
    together each keep a different secret in memory.) Where the filesystem has no hard links,
    ``os.replace`` is the fallback.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(48)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{SECRET_FILE}.")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_secret(path)
        except OSError:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(data_dir)
    return secret


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise ValueError(f"{path} is empty: delete it to generate a new secret, or write one into it")
    return secret


def _fsync_dir(directory: Path) -> None:
    # Makes the new name durable; not every platform lets a directory be opened for this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
