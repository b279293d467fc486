"""The error tree every client sees, with its stable wire codes.

    ChatError                     code        HTTP
    ├── Invalid                   invalid     400 / 422
    ├── Unauthorized              unauthorized 401
    ├── Forbidden                 forbidden   403
    ├── NotFound                  not_found   404
    ├── Conflict                  conflict    409
    ├── TooLarge                  too_large   413
    ├── UnsupportedMediaType      unsupported_media_type 415
    ├── RateLimited               rate_limited 429 (carries retry_after_ms)
    ├── Unavailable               unavailable 503 (a dependency is down; nothing was accepted)
    └── Internal                  internal    500 (a bug; never for bad input)

These are plain picklable exceptions: they cross Ray actor boundaries as values
(``to_dict`` / ``from_dict``) so that a host never ships a traceback to a gateway.
"""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    code = "internal"
    http_status = 500

    def __init__(self, message: str = "", *, retry_after_ms: int | None = None, ref: str | None = None):
        super().__init__(message)
        self.message = message or self.code
        self.retry_after_ms = retry_after_ms
        self.ref = ref

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after_ms is not None:
            out["retry_after_ms"] = self.retry_after_ms
        if self.ref is not None:
            out["ref"] = self.ref
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "ChatError":
        cls = _BY_CODE.get(data.get("code", "internal"), Internal)
        return cls(data.get("message", ""), retry_after_ms=data.get("retry_after_ms"), ref=data.get("ref"))

    def __reduce__(self):  # keep keyword-only fields across pickling
        return (_rebuild, (type(self), self.message, self.retry_after_ms, self.ref))


def _rebuild(cls, message, retry_after_ms, ref):
    return cls(message, retry_after_ms=retry_after_ms, ref=ref)


class Invalid(ChatError):
    code, http_status = "invalid", 422


class Unauthorized(ChatError):
    code, http_status = "unauthorized", 401


class Forbidden(ChatError):
    code, http_status = "forbidden", 403


class NotFound(ChatError):
    code, http_status = "not_found", 404


class Conflict(ChatError):
    code, http_status = "conflict", 409


class TooLarge(ChatError):
    code, http_status = "too_large", 413


class UnsupportedMediaType(ChatError):
    code, http_status = "unsupported_media_type", 415


class RateLimited(ChatError):
    code, http_status = "rate_limited", 429


class Unavailable(ChatError):
    code, http_status = "unavailable", 503


class Internal(ChatError):
    code, http_status = "internal", 500


_BY_CODE = {cls.code: cls for cls in (Invalid, Unauthorized, Forbidden, NotFound, Conflict, TooLarge,
                                       UnsupportedMediaType, RateLimited, Unavailable, Internal)}
CODES = tuple(_BY_CODE)   # every wire code, for the OpenAPI schema's enum
