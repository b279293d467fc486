"""Media (PROTOCOL.md, "Media"; docs/protocol.md, "Changes", "Media").

``POST /v1/media`` hands out a presigned POST; the bytes go straight to storage. In disk mode
(no S3 configured) the gateway is that storage: ``POST /v1/blobs`` takes the same form as
S3 and ``GET /v1/blobs/<key>`` serves a file while its signed URL holds. Those two take no
bearer token: the signature in the form or the URL is the credential, as with S3.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field, StrictInt

from raychat.errors import ChatError, Forbidden, Invalid, NotFound, TooLarge, UnsupportedMediaType
from storage.blobs import content_disposition
from storage.post_policy import UploadRefused

from ..context import context
from ..http_errors import error_response, log_rejection
from ..media_service import MediaService
from ..media_upload import receive_upload
from .deps import Body, User
from .responses import AUTHED, WITH_BODY, WITH_INPUT, Timestamp, Wire, errors

router = APIRouter()

# What a download answers with besides the bytes: the browser must neither sniff a type nor
# run anything from the file, even if someone opens its URL as a page of our origin.
BLOB_HEADERS = {"X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer"}


def media() -> MediaService:
    return context().media


Media = Annotated[MediaService, Depends(media)]
MediaId = Path(min_length=1, max_length=128)


def base_url(request: Request) -> str:
    """This gateway as clients reach it: RAYCHAT_PUBLIC_URL, else the request's own base URL
    (which carries the route prefix an app is mounted under)."""
    return context().settings.public_url or str(request.base_url).rstrip("/")


# ---- bodies ---------------------------------------------------------------------------------

class NewMedia(Body):
    filename: str = Field(min_length=1, max_length=1024, description="1-255 characters after trimming, "
                          "no control characters or path separators")
    content_type: str = Field(min_length=1, max_length=255, description="one of the server's allowed types "
                              "(images, audio, video, PDF by default), else 415")
    size: StrictInt = Field(ge=1, le=2**53, description="bytes; over the server's limit (25 MiB by default) is 413")


class PresignedPost(Wire):
    url: str = Field(description="POST multipart/form-data here")
    fields: dict[str, str] = Field(description="send every one of these form fields, then the file as `file`")


class UploadTicket(Wire):
    media_id: str
    upload: PresignedPost
    expires_at: Timestamp = Field(description="the upload form works until then")


class MediaUrl(Wire):
    url: str = Field(description="fetches the media until expires_at; no bearer token needed")
    expires_at: Timestamp


# ---- disk mode: the gateway plays S3, POST to the bucket and GET an object under it. Not under
# /v1/media/, where /v1/media/{media_id} would also match their paths (and 405s would list its GET). ----

UPLOAD_FORM = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["key", "Content-Type", "policy", "x-raychat-signature", "file"],
        "properties": {
            "key": {"type": "string"}, "Content-Type": {"type": "string"}, "policy": {"type": "string"},
            "x-raychat-signature": {"type": "string"},
            "file": {"type": "string", "format": "binary", "description": "last: fields after it are ignored"},
        },
    }}},
}


@router.post("/v1/blobs", status_code=204, response_class=Response,
             openapi_extra={"requestBody": UPLOAD_FORM},
             responses=errors(400, 403, 404, 413, 415, 422, 503))
async def upload_to_disk(request: Request):
    """Disk mode only (404 with S3): store the file of an upload form from ``POST /v1/media``.
    As S3: 403 for a bad or expired policy, 400 for a file outside its size range (EntityTooLarge,
    EntityTooSmall) or a malformed form; nothing is stored then."""
    ctx = context()
    disk = ctx.media.disk if ctx.media else None
    if disk is None:
        return _refused(request, NotFound("media are stored in S3 on this server: POST to the URL given"))
    try:
        await receive_upload(disk, request.headers.get("content-type"), request.stream(),
                             ctx.settings.media_max_bytes)
    except UploadRefused as exc:
        return _refused(request, _chat_error(exc), exc.status)
    return Response(status_code=204)


@router.get("/v1/blobs/{key:path}", response_class=FileResponse,
            responses={200: {"description": "the file, with the content type it was uploaded with",
                             "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                       **errors(403, 404, 422, 503)})
async def download_from_disk(request: Request, key: str, expires: str = Query("", max_length=20),
                             filename: str = Query("", max_length=1024), signature: str = Query("", max_length=128)):
    """Disk mode only (404 with S3): a file, while the signed URL from ``GET /v1/media/{id}`` holds."""
    ctx = context()
    disk = ctx.media.disk if ctx.media else None
    if disk is None:
        return _refused(request, NotFound("media are stored in S3 on this server"))
    if not (expires and signature):
        # The signature is the credential, so a URL without one is refused as a wrong one is (403),
        # as S3 and the upload form answer, not as a malformed query (422).
        return _refused(request, Forbidden("AccessDenied: the URL is not signed (expires, signature)"))
    try:
        found = await disk.verify_download(key, expires, filename, signature)
    except UploadRefused as exc:
        return _refused(request, _chat_error(exc), exc.status)
    remaining = max(0, found.expires_at - int(ctx.media.clock.now()))
    headers = {**BLOB_HEADERS, "Content-Disposition": content_disposition(found.filename),
               "Cache-Control": f"private, max-age={remaining}"}
    return FileResponse(found.path, media_type=found.content_type, headers=headers)


def _chat_error(exc: UploadRefused) -> ChatError:
    message = f"{exc.s3_code}: {exc.message}"
    return {403: Forbidden, 404: NotFound, 413: TooLarge, 415: UnsupportedMediaType}.get(exc.status, Invalid)(message)


def _refused(request: Request, exc: ChatError, status: int | None = None) -> JSONResponse:
    log_rejection(request.scope, exc, status)
    return error_response(exc, status=status)


# ---- the API --------------------------------------------------------------------------------

@router.post("/v1/media", status_code=201, response_model=UploadTicket,
             responses=errors(*AUTHED, *WITH_BODY, 415, 429))
async def create_upload(body: NewMedia, uid: User, svc: Media, request: Request):
    """A presigned POST for one upload: its policy pins the key, the content type and the size.
    Upload, then list the ``media_id`` in a message's ``attachments``; an upload never attached
    is removed after a day."""
    return await svc.create_upload(uid, body.filename, body.content_type, body.size, base_url(request))


@router.get("/v1/media/{media_id}", status_code=302, response_model=MediaUrl,
            responses={302: {"description": "Location is a short-lived URL of the media",
                             "headers": {"Location": {"required": True, "schema": {"type": "string"},
                                                      "description": "the same URL as the body's url"}}},
                       **errors(*AUTHED, 404, *WITH_INPUT)})
async def fetch(uid: User, svc: Media, request: Request, media_id: str = MediaId):
    """Redirect to the media, for its uploader and for members of a conversation it is attached
    to; 404 for anyone else. The body says the same, for clients that do not follow redirects."""
    found = await svc.download_url(uid, media_id, base_url(request))
    return JSONResponse(MediaUrl(**found).model_dump(), status_code=302,
                        headers={"Location": found["url"], "Cache-Control": "private, no-store"})


@router.get("/v1/media/{media_id}/url", response_model=MediaUrl, responses=errors(*AUTHED, 404, *WITH_INPUT))
async def fetch_url(uid: User, svc: Media, request: Request, media_id: str = MediaId):
    """The same URL as a JSON answer: a browser cannot put a bearer token on ``<img src>``, so a
    web client asks here first and puts the URL there."""
    return await svc.download_url(uid, media_id, base_url(request))
