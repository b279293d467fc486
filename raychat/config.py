"""Every setting, its environment variable and its default, validated at start.

A wrong value fails at boot with a sentence that names the variable to change.
Settings cross Ray boundaries as the plain dict from ``Settings.to_dict()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(SystemExit):
    """Raised at boot; its text says which environment variable to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAYCHAT_", extra="ignore")

    # Where raychat listens and keeps its embedded data.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Path("./var")

    # MongoDB: unset means "start the embedded SecantusDB under data_dir".
    mongodb_uri: str | None = None
    mongodb_db: str = "raychat"
    write_concern: str = "majority"            # "majority" or a number of nodes
    write_journal: bool = True
    store_timeout_ms: int = Field(3000, ge=100, le=120_000)

    # Redis: unset means "start the embedded redis-server".
    redis_url: str | None = None

    # S3 / MinIO: unset endpoint means media on local disk under data_dir.
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_bucket: str = "raychat-media"
    s3_secure: bool = True

    # Tokens.
    jwt_secret: str | None = None               # unset: generated once into data_dir/jwt.secret
    jwt_issuer: str = "raychat"
    jwt_audience: str = "raychat"
    access_token_ttl_s: int = Field(900, ge=30, le=86_400)

    # Virtual-actor runtime.
    hosts: int = Field(2, ge=1, le=1024)        # ActorHost Ray actors
    namespace: str = "raychat"
    passivate_after_s: float = Field(300.0, gt=0)
    mailbox_capacity: int = Field(1000, ge=1)
    dedupe_window: int = Field(1024, ge=16)     # recent client_msg_ids each conversation keeps in memory
    presence_ttl_s: int = Field(30, ge=2)

    # Gateway.
    gateway_replicas: int = Field(1, ge=1)
    max_connections_per_replica: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(16 * 1024, ge=1)        # a message body, UTF-8 bytes
    max_frame_bytes: int = Field(64 * 1024, ge=256)     # one WebSocket frame
    max_http_body_bytes: int = Field(256 * 1024, ge=256)
    hello_timeout_s: float = Field(10.0, gt=0)
    socket_queue_max: int = Field(2000, ge=10)          # events buffered for one slow socket before 1013
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("write_concern")
    @classmethod
    def _wc(cls, v: str) -> str:
        if v != "majority" and not v.isdigit():
            raise ValueError("must be 'majority' or a number of nodes")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        return cls.model_validate(data)


def load_settings(**overrides: Any) -> Settings:
    """Read RAYCHAT_* variables (overrides win) and fail with a sentence, not a traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "RAYCHAT_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("raychat: bad configuration, change these environment variables:\n  "
                          + "\n  ".join(lines)) from None
