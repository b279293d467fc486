"""Every setting, its environment variable and its default, validated at start.

A wrong value fails at boot with a sentence that names the variable to change.
Settings cross Ray boundaries as the plain dict from ``Settings.to_dict()``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ConfigError(SystemExit):
    """Raised at boot; its text says which environment variable to fix."""


# RFC 7518 §3.2: an HS256 key is at least as long as the hash output (gateway/tokens.py checks
# RAYCHAT_JWT_SECRET against the same bound).
JWT_MIN_SECRET_BYTES = 32
_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


# Media a message may carry: images, audio, video and PDF. Never a type a browser runs as a page or
# script (media are served from storage's origin, or from the gateway's own in disk mode).
MEDIA_TYPES_DEFAULT = ("image/jpeg,image/png,image/gif,image/webp,image/heic,audio/mpeg,audio/ogg,audio/mp4,"
                       "audio/webm,audio/wav,video/mp4,video/webm,video/quicktime,application/pdf")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def scriptable_media_type(media_type: str) -> bool:
    """True for a type a browser may render as a document that runs script: refused even if configured."""
    top, _, sub = media_type.partition("/")
    return (top in ("text", "multipart", "message") or "xml" in sub or "html" in sub or "script" in sub
            or sub in ("x-shockwave-flash", "futuresplash", "java-archive", "x-java-archive", "x-sh"))


class OidcIssuer(BaseModel):
    """One OpenID Connect provider whose ID tokens ``POST /v1/auth/oidc`` accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1)       # the exact ``iss`` its tokens carry
    audience: str = Field(min_length=1)     # our client id there: the ``aud`` its tokens must carry
    jwks_uri: str                           # where its signing keys are published (never from a token)
    # Pinned per issuer; only asymmetric ones: an HMAC "key" from a JWKS would be public.
    algorithms: tuple[Literal[OIDC_ALGORITHMS], ...] = Field(("RS256",), min_length=1)  # type: ignore[valid-type]

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"jwks_uri {v!r} must be an http(s) URL")
        return v


def jwt_key_id(secret: str) -> str:
    """The kid of RAYCHAT_JWT_SECRET: the first 8 hex digits of its SHA-256.

    Derived, so the simple one-secret setup needs no kid setting and every replica agrees. The
    32 bits it reveals say nothing useful about a secret of at least 256 bits.
    """
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def parse_jwt_keys(text: str) -> dict[str, str]:
    """``{kid: secret}`` from RAYCHAT_JWT_KEYS: a JSON object, or ``kid=secret,kid=secret``.

    The second form splits each entry at its first ``=``, so a secret may contain ``=`` (base64
    padding) but not ``,``; use JSON for such secrets.
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            keys = json.loads(text)
        except ValueError:
            raise ValueError("is not valid JSON (expected {\"kid\": \"secret\", ...})") from None
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            raise ValueError("must map each kid to a secret string")
    else:
        keys = {}
        for entry in filter(None, (e.strip() for e in text.split(","))):
            kid, sep, secret = entry.partition("=")
            if not sep:
                raise ValueError("each entry must be kid=secret")
            if kid.strip() in keys:
                raise ValueError(f"kid {kid.strip()!r} is listed twice")
            keys[kid.strip()] = secret.strip()
    for kid, secret in keys.items():
        if not _KID.fullmatch(kid):
            raise ValueError(f"kid {kid[:70]!r} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
        if len(secret.encode()) < JWT_MIN_SECRET_BYTES:
            raise ValueError(f"the secret of kid {kid!r} must be at least {JWT_MIN_SECRET_BYTES} bytes")
    return keys


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYCHAT_", extra="ignore")

    # Where raychat listens and keeps its embedded data.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path("./var")
    # Serve's front door on that port (raychat/ingress.py): "haproxy" (HAProxy forwards each
    # connection to a gateway replica's own server; the default) or "proxy" (Serve's Python proxy
    # relays every frame; used anyway with TLS or where no HAProxy binary exists).
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    # HTTPS and WSS on that port, terminated by Serve's proxy: PEM files, both or neither.
    tls_cert: Path | None = None                # the certificate chain, leaf first
    tls_key: Path | None = Field(None, validate_default=True)   # its private key, unencrypted

    # MongoDB: unset means "start the embedded SecantusDB under data_dir".
    mongodb_uri: str | None = None
    mongodb_db: str = "raychat"
    write_concern: str = "majority"            # "majority" or a number of nodes
    write_journal: bool = True
    store_timeout_ms: int = Field(3000, ge=100, le=120_000)

    # Redis: unset means "start the embedded redis-server". redis+cluster:// (rediss+cluster://
    # with TLS) names a node of a Redis Cluster; storage/redis_store.py says what changes then.
    redis_url: str | None = None

    # S3 / MinIO: unset endpoint means media on local disk under data_dir.
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = Field(None, validate_default=True)   # required with s3_endpoint: URLs are signed
    s3_bucket: str = "raychat-media"
    s3_secure: bool = True
    # Presigned URLs are signed for a region; set, so no bucket-location request is ever needed.
    s3_region: str = Field("us-east-1", min_length=1)
    # The URL clients reach storage at, when it is not s3_endpoint (MinIO behind a proxy or CDN):
    # presigned URLs are signed for the host they name, so they must name the public one.
    s3_public_url: str | None = None

    # Media uploads (gateway/media_service.py). Uploads go straight to storage, never through the
    # gateway, except in the embedded disk mode, where the gateway plays the storage's part.
    public_url: str | None = None               # this server as clients reach it; unset: each request's own URL
    media_max_bytes: int = Field(25 * 1024 * 1024, ge=1, le=5 * 1024**3)   # S3 takes at most 5 GiB in one POST
    media_content_types: str = MEDIA_TYPES_DEFAULT   # comma-separated allowlist; scriptable types are refused
    media_upload_ttl_s: int = Field(900, ge=10, le=7 * 86_400)    # a presigned POST works this long
    media_url_ttl_s: int = Field(300, ge=10, le=7 * 86_400)       # a presigned GET works this long
    media_unattached_ttl_s: int = Field(86_400, ge=60)            # an upload never attached is removed after
    media_sweep_every_s: float = Field(3600.0, gt=0)              # how often each replica looks for those
    media_pending_per_user: int = Field(100, ge=1)                # uploads not yet attached, per user

    # Tokens.
    jwt_secret: str | None = None               # unset: generated once into data_dir/jwt.secret
    jwt_issuer: str = "raychat"
    jwt_audience: str = "raychat"
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)
    # Rotation: extra verification keys, so tokens signed with an old or a next key stay valid on
    # every replica while the signer changes. The secret above has the kid sha256(secret)[:8].
    jwt_keys: Annotated[dict[str, str] | None, NoDecode] = None     # kid=secret,kid=secret or JSON
    jwt_signing_kid: str | None = None          # unset: the kid of jwt_secret signs
    refresh_token_ttl_s: int = Field(30 * 86_400, ge=60)   # a refresh token unused this long is dead

    # OpenID Connect login: a JSON list of {issuer, audience, jwks_uri, algorithms?}; empty: off.
    oidc_issuers: list[OidcIssuer] = []
    oidc_jwks_ttl_s: int = Field(3600, ge=1)            # a fetched JWKS is used this long...
    oidc_jwks_refetch_s: float = Field(60.0, ge=0)      # ...and refetched for an unknown kid at most this often

    # Virtual-actor runtime.
    # ActorHost Ray actors per node; a node that advertises the custom resource `raychat_hosts`
    # gets that many instead. The raychat-directory actor starts and stops them as nodes come
    # and go (actors/directory.py), so on one machine this is the number of hosts.
    hosts: int = Field(2, ge=1, le=1024)
    # For an autoscaling cluster: a worker node none of whose CPUs, GPUs or custom resources has
    # been reserved for this long loses its hosts (their keys move first), because Ray never
    # counts a node running an actor, a host included, as idle. Unset: every node keeps its hosts.
    hosts_leave_idle_node_s: float | None = Field(None, gt=0)
    namespace: str = "raychat"
    passivate_after_s: float = Field(300.0, gt=0)
    mailbox_capacity: int = Field(1000, ge=1)
    dedupe_window: int = Field(1024, ge=16)     # recent client_msg_ids each conversation keeps in memory
    presence_ttl_s: int = Field(30, ge=2)
    max_group_members: int = Field(10_000, ge=2)

    # Gateway.
    gateway_replicas: int = Field(1, ge=1)
    max_connections_per_replica: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(16 * 1024, ge=1)        # a message body, UTF-8 bytes
    max_frame_bytes: int = Field(64 * 1024, ge=256)     # one WebSocket frame
    max_http_body_bytes: int = Field(256 * 1024, ge=256)
    hello_timeout_s: float = Field(10.0, gt=0)
    socket_queue_max: int = Field(2000, ge=10)          # events buffered for one slow socket before 1013
    # permessage-deflate on WebSockets: off, as socket.io and Centrifugo; see gateway/replica_server.py.
    ws_compression: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # JSON lines (raychat/logs.py) for log collectors; text reads better in a terminal.
    log_format: Literal["json", "text"] = "json"

    # Abuse limits (gateway/limits.py; token buckets in Redis shared by every replica). A bucket
    # of N per window refills one token every window/N seconds, so bursts are capped and a
    # steady trickle below the rate is never refused.
    login_attempts_per_account: int = Field(10, ge=1)   # per login_window_s: stops guessing one password
    login_attempts_per_ip: int = Field(100, ge=1)       # per login_window_s: stops spraying many accounts
    login_window_s: int = Field(900, ge=1)
    registrations_per_ip: int = Field(20, ge=1)         # per registration_window_s
    registration_window_s: int = Field(3600, ge=1)
    message_burst: int = Field(30, ge=1)                # messages one user may send at once...
    messages_per_s: float = Field(5.0, gt=0)            # ...and for as long as they like at this rate
    typing_burst: int = Field(10, ge=1)
    typing_per_s: float = Field(2.0, gt=0)
    # A search without conversation_id reads up to 1,000 conversations' index: the one read a
    # user can make expensive at will. Search-as-you-type fits (a debounced keystroke or two a
    # second); a script hammering the index does not.
    search_burst: int = Field(20, ge=1)
    searches_per_s: float = Field(2.0, gt=0)
    ws_connections_per_user: int = Field(20, ge=1)      # open WebSockets per user, over all replicas

    # The edge. Unset trusted_proxies: the client address is the TCP peer's, and
    # X-Forwarded-For is ignored (anyone can write it).
    trusted_proxies: str | None = None          # comma-separated IPs or CIDRs whose X-Forwarded-For is believed
    allowed_origins: str | None = None          # comma-separated origins, or "*"; unset: same host only
    captcha_verify_url: str | None = None       # a siteverify URL (hCaptcha, reCAPTCHA); unset: no CAPTCHA
    captcha_secret: str | None = Field(None, validate_default=True)

    # Push notifications (push/): members without a live socket get a push for new messages. Jobs
    # go through a Redis Stream to the PushWorker deployment. A provider without credentials is
    # off: its devices get no push (counted, logged), nothing is retried for it.
    push_enabled: bool = True                   # false: conversations enqueue nothing
    push_fcm_service_account: Path | None = None    # Firebase service-account JSON file; unset: FCM off
    push_fcm_url: str = "https://fcm.googleapis.com"
    push_apns_key_file: Path | None = None      # APNs auth key (.p8, ES256); unset: APNs off
    push_apns_key_id: str | None = None         # the key's 10-character Key ID
    push_apns_team_id: str | None = None        # the Apple developer Team ID
    push_apns_topic: str | None = Field(None, validate_default=True)   # the app's bundle id
    push_apns_sandbox: bool = False             # Apple's development server (builds from Xcode)
    push_apns_url: str | None = None            # unset: Apple's production or sandbox server
    push_webhook_secret: str | None = None      # HMAC-SHA256 key signing webhooks; unset: webhooks off
    # Where webhooks may go: comma-separated URL prefixes (https://hooks.example.com/) or host names.
    # Unset: any https URL whose host is a name or a public IP address, never a private one.
    push_webhook_allowed: str | None = None
    push_max_attempts: int = Field(8, ge=1, le=100)     # failed sends before a job is dead-lettered
    push_backoff_base_s: float = Field(1.0, gt=0)       # retry n waits random(0, min(cap, base * 2^n))
    push_backoff_cap_s: float = Field(300.0, gt=0)
    push_breaker_threshold: int = Field(5, ge=1)        # consecutive failures that open a breaker...
    push_breaker_cooldown_s: float = Field(30.0, gt=0)  # ...for this long, then one trial send
    push_collapse_window_s: float = Field(10.0, ge=0)   # at most one push per device and conversation; 0: off
    push_send_timeout_s: float = Field(10.0, gt=0)      # one provider request
    # A job read but not acknowledged for this long is taken over by another worker (its worker died).
    push_visibility_timeout_s: float = Field(60.0, gt=0, validate_default=True)
    push_worker_replicas: int = Field(1, ge=1)
    push_batch_size: int = Field(64, ge=1, le=10_000)   # jobs one worker reads (and sends) at once
    push_max_devices: int = Field(10, ge=1, le=1000)    # per user; registering one more drops the oldest
    push_stream_maxlen: int = Field(1_000_000, ge=1000)  # jobs waiting in Redis at most; the oldest go first

    @field_validator("jwt_keys", mode="before")
    @classmethod
    def _jwt_keys(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_jwt_keys(v) or None
        if isinstance(v, dict):
            return parse_jwt_keys(json.dumps(v)) or None
        return v

    @field_validator("jwt_keys")
    @classmethod
    def _keys_vs_secret(cls, v: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        secret = info.data.get("jwt_secret")
        if v and secret and v.get(jwt_key_id(secret), secret) != secret:
            raise ValueError(f"kid {jwt_key_id(secret)!r} is the kid of RAYCHAT_JWT_SECRET, with another secret")
        return v

    @field_validator("jwt_signing_kid")
    @classmethod
    def _signing_kid(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not _KID.fullmatch(v):
            raise ValueError("must be a kid: 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'")
        secret, keys = info.data.get("jwt_secret"), info.data.get("jwt_keys") or {}
        # Unset RAYCHAT_JWT_SECRET: the generated secret's kid is only known once it exists.
        if v is not None and secret and v not in keys and v != jwt_key_id(secret):
            raise ValueError(f"names no key: use a kid of RAYCHAT_JWT_KEYS or {jwt_key_id(secret)!r}, "
                             "the kid of RAYCHAT_JWT_SECRET")
        return v

    @field_validator("oidc_issuers")
    @classmethod
    def _oidc_issuers(cls, v: list[OidcIssuer]) -> list[OidcIssuer]:
        names = [i.issuer for i in v]
        if len(set(names)) != len(names):
            raise ValueError("each issuer may be listed once")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        from storage.redis_store import parse_url

        if v:                   # "" is how serve_config.yaml passes an unset one
            parse_url(v)
        return v

    @field_validator("write_concern")
    @classmethod
    def _wc(cls, v: str) -> str:
        if v != "majority" and not v.isdigit():
            raise ValueError("must be 'majority' or a number of nodes")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str | None) -> str | None:
        for entry in _entries(v):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)") from None
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: str | None) -> str | None:
        for entry in _entries(v):
            parts = urlsplit(entry)
            if entry != "*" and (parts.scheme not in ("http", "https") or not parts.hostname
                                 or parts.path not in ("", "/") or parts.query or parts.username):
                raise ValueError(f"{entry!r} is not an origin like https://chat.example.com[:port], nor *")
        return v

    @field_validator("captcha_verify_url")
    @classmethod
    def _captcha_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL, e.g. https://api.hcaptcha.com/siteverify")
        return v

    @field_validator("captcha_secret")
    @classmethod
    def _captcha_secret(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("captcha_verify_url") and not v:
            raise ValueError("must be set when RAYCHAT_CAPTCHA_VERIFY_URL is")
        return v

    @field_validator("s3_secret_key")
    @classmethod
    def _s3_keys(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("s3_endpoint") and not (v and info.data.get("s3_access_key")):
            raise ValueError("RAYCHAT_S3_ACCESS_KEY and RAYCHAT_S3_SECRET_KEY must be set with RAYCHAT_S3_ENDPOINT "
                             "(presigned upload and download URLs are signed with them)")
        return v

    @field_validator("s3_public_url", "public_url")
    @classmethod
    def _base_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        parts = urlsplit(v) if v is not None else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname
                                  or parts.query or parts.fragment or parts.username):
            raise ValueError(f"{v!r} must be an http(s) URL like https://chat.example.com[:port][/path]")
        # Presigned S3 URLs sign the object's path: a proxy that strips a path prefix breaks them.
        if parts is not None and info.field_name == "s3_public_url" and parts.path not in ("", "/"):
            raise ValueError(f"{v!r} must have no path: S3 names the bucket in the path itself")
        return v.rstrip("/") if v is not None else v

    @field_validator("media_content_types")
    @classmethod
    def _media_types(cls, v: str) -> str:
        types = [e.lower() for e in _entries(v)]
        if not types:
            raise ValueError("must list at least one content type, e.g. image/png,image/jpeg")
        for t in types:
            if not _MEDIA_TYPE.fullmatch(t):
                raise ValueError(f"{t[:70]!r} is not a content type like image/png (no parameters)")
            if scriptable_media_type(t):
                raise ValueError(f"{t!r} may run script in a browser and is never allowed for media")
        return ",".join(dict.fromkeys(types))

    @field_validator("push_apns_topic")
    @classmethod
    def _apns_set(cls, v: str | None, info: ValidationInfo) -> str | None:
        given = {"RAYCHAT_PUSH_APNS_KEY_FILE": info.data.get("push_apns_key_file"),
                 "RAYCHAT_PUSH_APNS_KEY_ID": info.data.get("push_apns_key_id"),
                 "RAYCHAT_PUSH_APNS_TEAM_ID": info.data.get("push_apns_team_id"), "RAYCHAT_PUSH_APNS_TOPIC": v}
        missing = [name for name, value in given.items() if not value]
        if given["RAYCHAT_PUSH_APNS_KEY_FILE"] and missing:
            raise ValueError(f"APNs needs {', '.join(missing)} too (or unset RAYCHAT_PUSH_APNS_KEY_FILE)")
        return v

    @field_validator("push_fcm_service_account", "push_apns_key_file")
    @classmethod
    def _push_key_path(cls, v: Path | None) -> Path | None:
        # Absolute, because the push worker reads it from its own working directory.
        return v.expanduser().absolute() if v is not None else None

    @field_validator("push_fcm_url", "push_apns_url")
    @classmethod
    def _push_url(cls, v: str | None) -> str | None:
        if v is not None and (urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname):
            raise ValueError("must be an http(s) base URL, e.g. https://fcm.googleapis.com")
        return v.rstrip("/") if v else v

    @field_validator("push_webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: str | None) -> str | None:
        if v is not None and len(v.encode()) < JWT_MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {JWT_MIN_SECRET_BYTES} bytes (an HMAC-SHA256 key)")
        return v

    @field_validator("push_webhook_allowed")
    @classmethod
    def _webhook_allowed(cls, v: str | None) -> str | None:
        for entry in _entries(v):
            parts = urlsplit(entry if "://" in entry else "//" + entry)
            if not parts.hostname or ("://" in entry and parts.scheme not in ("http", "https")):
                raise ValueError(f"{entry!r} is neither an http(s) URL prefix nor a host name")
        return v

    @field_validator("push_visibility_timeout_s")
    @classmethod
    def _visibility(cls, v: float, info: ValidationInfo) -> float:
        # A batch's sends run side by side, each bounded by push_send_timeout_s: a live worker must
        # finish a batch well before another one takes its jobs over as those of a dead worker.
        send = info.data.get("push_send_timeout_s")
        if send is not None and v < 3 * send:
            raise ValueError(f"must be at least 3 × RAYCHAT_PUSH_SEND_TIMEOUT_S ({3 * send:g} s), or live "
                             "workers' jobs are taken over as if they had died")
        return v

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _tls_path(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        # Absolute, because Serve's proxy actor reads the files from its own working directory.
        v = v.expanduser().absolute() if v is not None else None
        if info.field_name == "tls_key" and (info.data.get("tls_cert") is None) != (v is None):
            raise ValueError("RAYCHAT_TLS_CERT and RAYCHAT_TLS_KEY go together: set both, or neither for plain HTTP")
        return v

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(e, strict=False) for e in _entries(self.trusted_proxies)]

    def allowed_origin_set(self) -> frozenset[str]:
        """Each allowed origin as a browser sends it: lower case, no trailing slash."""
        return frozenset(e.lower().rstrip("/") for e in _entries(self.allowed_origins))

    def media_type_set(self) -> frozenset[str]:
        return frozenset(_entries(self.media_content_types))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        return cls.model_validate(data)


def _entries(value: str | None) -> list[str]:
    return [e.strip() for e in (value or "").split(",") if e.strip()]


_SECRETS = frozenset({"jwt_secret", "jwt_keys", "s3_secret_key", "captcha_secret", "push_webhook_secret",
                      "redis_url"})          # a URL may hold a password


def check_tls_files(settings: Settings) -> None:
    """Load the certificate and key once before anything starts, so a wrong path or a key that does
    not match the certificate stops ``raychat up`` with a sentence, not a proxy that never listens."""
    if settings.tls_cert is None or settings.tls_key is None:
        return
    import ssl

    for name, path in (("RAYCHAT_TLS_CERT", settings.tls_cert), ("RAYCHAT_TLS_KEY", settings.tls_key)):
        if not path.is_file():
            raise ConfigError(f"raychat: bad configuration: {name}: no such file {str(path)!r}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"raychat: bad configuration: RAYCHAT_TLS_CERT / RAYCHAT_TLS_KEY: cannot load "
                          f"{str(settings.tls_cert)!r} with {str(settings.tls_key)!r} as a PEM certificate "
                          f"chain and its unencrypted private key ({exc})") from None


def load_settings(**overrides: Any) -> Settings:
    """Read RAYCHAT_* variables (overrides win) and fail with a sentence, not a traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "RAYCHAT_" + "_".join(str(p) for p in err["loc"]).upper()
            # Boot messages end up in logs: a secret's value is never repeated there.
            got = "a hidden value" if err["loc"] and err["loc"][0] in _SECRETS else repr(err.get("input"))
            lines.append(f"{name}: {err['msg']} (got {got})")
        raise ConfigError("raychat: bad configuration, change these environment variables:\n  "
                          + "\n  ".join(lines)) from None
