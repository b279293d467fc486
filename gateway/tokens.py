"""Access tokens: HS256 JWTs signed with one of a few server secrets, and where the main one lives.

PyJWT reads the wall clock itself (it has no clock parameter), so ``verify`` lets PyJWT check
the signature, algorithm, issuer, audience and required claims, and checks ``exp``, ``nbf`` and
``iat`` itself against the injected clock: expiry is tested by moving a FakeClock.

Keys and rotation: every token names its key in the ``kid`` header. The issuer holds a small
dictionary ``{kid: secret}`` (RAYCHAT_JWT_SECRET under ``key_id(secret)``, plus RAYCHAT_JWT_KEYS)
and signs with one of them (RAYCHAT_JWT_SIGNING_KID). Verification looks the token's kid up in that
dictionary and nowhere else: an unknown or missing kid is Unauthorized, and a kid such as
``../../etc/passwd`` is just an unknown string. Rotating is three deploys, and no token is ever
refused on the way: add the next key to RAYCHAT_JWT_KEYS; then make it the signer; once the old
signer's last tokens have expired (access_token_ttl_s), drop the old key.

Only HS256 is accepted, pinned here and never read from the token. Header fields that point at
keys elsewhere (``jku``, ``x5u``, ``jwk``) are ignored: nothing is ever fetched for a token.
"""

from __future__ import annotations

import math
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import jwt

from raychat.clock import Clock
from raychat.config import JWT_MIN_SECRET_BYTES as MIN_SECRET_BYTES  # RFC 7518 §3.2
from raychat.config import jwt_key_id as key_id
from raychat.errors import Unauthorized

ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 4096
SECRET_FILE = "jwt.secret"
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]


@dataclass(frozen=True)
class Access:
    """What a valid access token says: whose it is and until when (epoch seconds, its ``exp``)."""
    user_id: str
    expires_at: float


class TokenIssuer:
    """Issues and verifies access tokens for one issuer and audience.

    ``extra_keys`` ({kid: secret}) verify too; ``signing_kid`` picks the signer among all keys
    (default: ``key_id(secret)``). ``leeway_s`` (0-5 s) absorbs clock skew between replicas for
    ``exp``, ``nbf`` and ``iat``.
    """

    def __init__(self, secret: str, issuer: str, audience: str, ttl_s: int, clock: Clock,
                 *, leeway_s: float = 5.0, extra_keys: Mapping[str, str] | None = None,
                 signing_kid: str | None = None):
        if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes "
                             "(set RAYCHAT_JWT_SECRET to a longer value, or unset it to generate one)")
        if ttl_s <= 0:
            raise ValueError("the access token TTL must be positive (RAYCHAT_ACCESS_TOKEN_TTL_S)")
        if not 0 <= leeway_s <= 5:
            raise ValueError("leeway_s must be between 0 and 5 seconds")
        self._keys = {key_id(secret): secret}
        for kid, extra in (extra_keys or {}).items():
            if not isinstance(extra, str) or len(extra.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"RAYCHAT_JWT_KEYS: the secret of kid {kid!r} must be at least "
                                 f"{MIN_SECRET_BYTES} bytes")
            if self._keys.get(kid, extra) != extra:
                raise ValueError(f"RAYCHAT_JWT_KEYS: kid {kid!r} is already the kid of RAYCHAT_JWT_SECRET, "
                                 "with another secret")
            self._keys[kid] = extra
        self.signing_kid = key_id(secret) if signing_kid is None else signing_kid
        if self.signing_kid not in self._keys:
            raise ValueError(f"RAYCHAT_JWT_SIGNING_KID {self.signing_kid!r} names no key: it must be a kid in "
                             f"RAYCHAT_JWT_KEYS or {key_id(secret)!r}, the kid of RAYCHAT_JWT_SECRET")
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
        token = jwt.encode(claims, self._keys[self.signing_kid], algorithm=ALGORITHM,
                           headers={"kid": self.signing_kid})
        return token, self._ttl_s

    def verify(self, token: str) -> str:
        """The ``sub`` (user id) of a valid token; anything else raises ``Unauthorized``.

        Messages are short and fixed; they never contain the token.
        """
        return self.check(token).user_id

    def check(self, token: str) -> Access:
        """``verify``, also telling when the token expires (a WebSocket closes then)."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("token is missing or not a string")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("token is too long")
        secret = self._keys.get(self._kid(token))
        if secret is None:
            raise Unauthorized("token names an unknown key")
        try:
            claims = jwt.decode(
                token,
                secret,
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
        sub = check_times_and_subject(claims, self._clock.now(), self._leeway)
        return Access(sub, _numeric_date(claims, "exp"))

    @staticmethod
    def _kid(token: str) -> str:
        # Read before the signature is checked, so it is only ever a key into self._keys.
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized("token is malformed") from exc
        if not isinstance(kid, str):
            raise Unauthorized("token names no key")
        return kid


def check_times_and_subject(claims: dict[str, Any], now: float, leeway: float) -> str:
    """The ``sub`` of claims whose ``exp``, ``iat`` and ``nbf`` hold at ``now`` (± ``leeway``);
    else ``Unauthorized``. The one place token times are judged (access and ID tokens)."""
    exp = _numeric_date(claims, "exp")
    iat = _numeric_date(claims, "iat")
    nbf = _numeric_date(claims, "nbf") if "nbf" in claims else None
    if exp <= now - leeway:
        raise Unauthorized("token has expired")
    if iat > now + leeway or (nbf is not None and nbf > now + leeway):
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
