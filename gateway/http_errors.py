"""Every HTTP error leaves in PROTOCOL.md's shape: {code, message, retry_after_ms?}.

Schema errors name their field; unknown routes are not_found; anything
unexpected is logged and answered ``internal`` without a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from raychat.errors import ChatError, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unavailable, UnsupportedMediaType

from . import edge
from .context import context

log = logging.getLogger(__name__)

_BY_STATUS = {401: Unauthorized, 404: NotFound, 413: TooLarge}


def error_response(exc: ChatError, status: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if exc.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-exc.retry_after_ms // 1000)))
    body = exc.to_dict()
    body.pop("ref", None)
    return JSONResponse(body, status_code=status or exc.http_status, headers=headers)


def log_rejection(scope, exc: ChatError, status: int | None = None) -> None:
    """One line per refused request: who (the client IP), what route, which answer. Never the
    body, the query string or a header: those may hold passwords and tokens."""
    status = status or exc.http_status
    try:
        trusted = context().settings.trusted_proxy_networks()
    except Unavailable:            # no context yet (the replica is starting)
        trusted = ()
    log.log(logging.WARNING if status in (403, 429, 503) else logging.INFO,
            "refused %s %s from ip %s: %d %s: %s", scope.get("method"), scope.get("path"),
            edge.client_ip(scope, trusted), status, exc.code, exc.message[:200])


def describe_validation(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    kind, ctx = err.get("type"), err.get("ctx") or {}
    if kind == "json_invalid":
        return "body: not valid JSON"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A body with one shape per value of a field (POST /v1/devices: platform): name that field.
        field = str(ctx.get("discriminator", "")).strip("'") or "body"
        if kind == "union_tag_not_found":
            return f"{field}: Field required"
        return f"{field}: must be one of {ctx.get('expected_tags', '')}"
    body = exc.body if isinstance(exc.body, dict) else {}
    if loc and loc[0] not in body and loc[0] in {v for v in body.values() if isinstance(v, str)}:
        loc = loc[1:]          # the tag of such a body's shape ("webhook"), not a field of it
    return f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}"


def _not_json(request: Request, exc: RequestValidationError) -> UnsupportedMediaType | None:
    """A body refused because it was not read as JSON at all: its content type is the problem
    (415, as the contract says for a content type not allowed), not a field (422). FastAPI reads a
    body as JSON only under a JSON content type; without one, the model saw bytes, not an object."""
    err = exc.errors()[0]
    if tuple(err.get("loc", ())) != ("body",) or err.get("type") not in ("model_attributes_type", "dict_type"):
        return None
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None                          # JSON, but not an object: the schema's problem
    return UnsupportedMediaType(f"content-type: must be application/json, not {media or 'missing'}")


def install(app: FastAPI) -> None:
    @app.exception_handler(ChatError)
    async def _chat(request: Request, exc: ChatError):
        log_rejection(request.scope, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        err = _not_json(request, exc) or Invalid(describe_validation(exc))
        log_rejection(request.scope, err)
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:
            # FastAPI's one 400 is a body it cannot decode (not UTF-8): bad JSON, so answer as for bad JSON.
            err = Invalid("body: not valid JSON")
            log_rejection(request.scope, err)
            return error_response(err)
        cls = _BY_STATUS.get(exc.status_code, Invalid)
        message = "no such route" if exc.status_code == 404 else str(exc.detail)
        log_rejection(request.scope, cls(message), exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # A 405 lists every method of the resource (RFC 9110, 15.5.6); Starlette's own Allow
            # names only those of the first route on the path (GET of GET+PATCH /v1/users/me).
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(cls(message), status=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(Internal("internal error"))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app serves at this request's path."""
    routes = request.app.router.routes
    return [m for m in _METHODS
            if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]


class BodyLimit:
    """ASGI middleware: HTTP bodies over the limit get 413 before a handler reads them."""

    def __init__(self, app, max_bytes, streamed=None):
        self.app = app
        self._max_bytes = max_bytes   # an int, or a callable read per request (settings arrive later)
        # {path: limit}: routes that read their body as a stream and bound it themselves (the
        # disk-mode media upload, up to the media limit). Only a declared length is checked
        # here: buffering 25 MiB per request to replay it is what these routes exist to avoid.
        self._streamed = dict(streamed or {})

    @property
    def max_bytes(self) -> int:
        return self._max_bytes() if callable(self._max_bytes) else self._max_bytes

    def _stream_limit(self, scope) -> int | None:
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]      # an app mounted under a route prefix
        limit = self._streamed.get(path)
        return limit() if callable(limit) else limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        streamed = self._stream_limit(scope)
        limit = self.max_bytes if streamed is None else streamed
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    return await self._reject(scope, receive, send, limit)
        if streamed is not None:
            return await self.app(scope, receive, send)
        seen = 0
        messages = []
        # Bodies are small (the limit is at most a few hundred KiB), so read them whole and
        # replay; this also catches chunked bodies that never declared a length.
        while True:
            msg = await receive()
            messages.append(msg)
            if msg["type"] != "http.request":
                break
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:
                return await self._reject(scope, receive, send, self.max_bytes)
            if not msg.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send, limit: int):
        exc = TooLarge(f"request body over {limit} bytes")
        log_rejection(scope, exc)
        await error_response(exc)(scope, receive, send)
