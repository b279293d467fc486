"""The web client: its files (gateway/static/), served at ``/`` and ``/static/...`` by the gateway.

Plain ES modules, no build step, nothing fetched from another site at run time. Every answer
carries a strict Content-Security-Policy: scripts, styles and fonts only from this origin, so a
message body that slipped into the page as markup still could not run. Images and uploads may
also reach the media storage's origin (S3 / MinIO), which is where presigned URLs point.
Files are not fingerprinted, so they are cached with ``no-cache``: the browser keeps them and
revalidates each time (an ETag makes that a 304).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from raychat.config import Settings

STATIC_DIR = Path(__file__).parent / "static"

# Set by suffix, never guessed from the system's MIME table: with nosniff, a module script
# served under the wrong type would not run, and a file of any other kind is not the client's.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

# A Host header fit to put in a CSP source: a name or an IP literal, and a port. Anything else is
# left out (the policy then relies on 'self', which CSP Level 3 browsers match to ws/wss too).
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def media_origins(settings: Settings) -> list[str]:
    """Origins other than this one that media URLs may name: the storage presigned URLs point at
    (s3_public_url, else the S3 endpoint itself), and the server's own public_url, which builds
    the upload and download URLs in disk mode and may name another host than the page's."""
    out: list[str] = []
    if settings.s3_public_url:
        out.append(_origin(settings.s3_public_url))
    elif settings.s3_endpoint:
        out.append(("https://" if settings.s3_secure else "http://") + settings.s3_endpoint.strip().rstrip("/"))
    if settings.public_url:
        out.append(_origin(settings.public_url))
    return [o for o in dict.fromkeys(out) if o]


def content_security_policy(settings: Settings, host: str | None) -> str:
    media = media_origins(settings)
    sockets = [f"ws://{host}", f"wss://{host}"] if host and _HOST.fullmatch(host) else []
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        " ".join(["img-src 'self' blob: data:", *media]),
        " ".join(["connect-src 'self'", *sockets, *media]),
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",        # forms are submitted by script, never by navigation
        "frame-ancestors 'none'",    # no clickjacking: the client is never framed
    ]
    return "; ".join(directives)


def security_headers(settings: Settings, host: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings, host),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",               # frame-ancestors for browsers without CSP 2
        "Referrer-Policy": "no-referrer",        # presigned media URLs never leak to other sites
        "Cache-Control": "no-cache",
    }


class ClientFiles(StaticFiles):
    """StaticFiles with fixed content types and the security headers on every file."""

    def __init__(self, settings: Callable[[], Settings]):
        super().__init__(directory=STATIC_DIR)
        self._settings = settings

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = CONTENT_TYPES.get(Path(full_path).suffix, "application/octet-stream")
        response.headers["content-type"] = media_type
        host = Request(scope).headers.get("host")
        response.headers.update(security_headers(self._settings(), host))
        return response


def install(app, settings: Callable[[], Settings]) -> None:
    """Serve the client at ``/`` and its files under ``/static``. ``settings`` is called per
    request, because a Serve replica gets its settings after the app is built. Neither route is
    in the OpenAPI document: they are pages, not API."""

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type=CONTENT_TYPES[".html"],
                            headers=security_headers(settings(), request.headers.get("host")))

    app.add_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/static", ClientFiles(settings), name="static")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
