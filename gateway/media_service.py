"""Media: uploads straight to storage, attachment checks, download links and the sweep of
uploads never attached (PROTOCOL.md, "Media"; docs/protocol.md, "Changes", "Media").

An upload is a record (MediaStore) plus an object (BlobStore) at ``<owner_id>/<media_id>``. The
record holds what the uploader declared; the object is whatever the client sent, so nothing is
trusted until ``check_attachments`` has seen the object match the declaration. Who may fetch a
media follows from where it is attached: its uploader, and the members of any conversation it
was sent to. Everyone else gets 404, as for an id that does not exist.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import unicodedata
from typing import Any

from actors.events import utc
from raychat.clock import Clock, iso
from raychat.config import Settings
from raychat.errors import Invalid, NotFound, RateLimited, TooLarge, UnsupportedMediaType
from storage.blobs import BlobStore
from storage.disk_blobs import DiskBlobStore, derive_key
from storage.errors import StoreError

from .service_common import store_errors

log = logging.getLogger(__name__)

MAX_FILENAME = 255
SWEEP_BATCH = 200
_NOT_YOURS = "attachments: {} is not an upload of yours"   # also for ids that do not exist: no probing


def blob_store_for(settings: Settings, clock: Clock) -> tuple[BlobStore, DiskBlobStore | None]:
    """S3 when RAYCHAT_S3_ENDPOINT is set; else files under data_dir/media, served by the gateway
    (the second value, for its upload and download routes)."""
    if settings.s3_endpoint:
        from storage.s3_blobs import S3BlobStore

        return S3BlobStore(settings.s3_endpoint, settings.s3_access_key or "", settings.s3_secret_key or "",
                           settings.s3_bucket, secure=settings.s3_secure, region=settings.s3_region,
                           public_url=settings.s3_public_url, timeout_s=settings.store_timeout_ms / 1000,
                           now=clock.now), None
    if not settings.jwt_secret:
        raise ValueError("disk media needs RAYCHAT_JWT_SECRET (its URLs are signed with a key derived from it)")
    disk = DiskBlobStore(settings.data_dir / "media", derive_key(settings.jwt_secret), now=clock.now)
    return disk, disk


def clean_filename(name: str) -> str:
    """The filename as given, or Invalid: 1-255 characters after trimming, no control or format
    characters (bidi overrides could disguise an extension), no path separators."""
    name = unicodedata.normalize("NFC", name.strip())
    if not name or len(name) > MAX_FILENAME:
        raise Invalid(f"filename: 1-{MAX_FILENAME} characters required")
    if any(c in "/\\" or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise Invalid("filename: no control characters or path separators")
    if name in (".", ".."):
        raise Invalid("filename: not a file name")
    return name


class MediaService:
    def __init__(self, settings: Settings, stores: Any, blobs: BlobStore, clock: Clock,
                 disk: DiskBlobStore | None = None):
        self.settings = settings
        self.stores = stores
        self.blobs = blobs
        self.clock = clock
        self.disk = disk                # set in disk mode: the gateway serves uploads and downloads
        self._types = settings.media_type_set()
        self._ensured = False
        self._task: asyncio.Task | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Make the bucket, then sweep now and then, from now on. Idempotent.

        Every replica sweeps. They need no lock: a record is claimed atomically before its
        object is deleted, and deleting twice is harmless, so concurrent sweeps only repeat
        work; the jitter keeps them from doing so in step."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.blobs.close()

    async def ensure(self) -> None:
        if not self._ensured:
            async with store_errors():
                await self.blobs.ensure()
            self._ensured = True

    async def _sweep_forever(self) -> None:
        every = self.settings.media_sweep_every_s
        while True:
            try:
                await self.ensure()
                removed = await self.sweep_unattached(self.clock.now())
                if removed:
                    log.info("removed %d uploads never attached", removed)
            except Exception as exc:      # storage down: try again next round
                log.warning("media sweep failed: %r", exc)
            await asyncio.sleep(every * random.uniform(0.5, 1.0))

    # ---- uploads -------------------------------------------------------------------------------
    async def create_upload(self, user_id: str, filename: str, content_type: str, size: int,
                            base_url: str) -> dict[str, Any]:
        """A media record and the presigned POST that uploads its object (201 body)."""
        filename = clean_filename(filename)
        content_type = content_type.strip().lower()
        if content_type not in self._types:
            raise UnsupportedMediaType(f"content_type: {content_type[:100]!r} is not allowed; allowed: "
                                       + ", ".join(sorted(self._types)))
        if size > self.settings.media_max_bytes:
            raise TooLarge(f"size: over {self.settings.media_max_bytes} bytes")
        if size < 1:
            raise Invalid("size: at least 1 byte")
        await self.ensure()
        now = self.clock.now()
        async with store_errors():
            count, oldest = await self.stores.media.pending(user_id)
        if count >= self.settings.media_pending_per_user:
            # Pending uploads end when attached or swept: the oldest one's sweep frees a slot.
            wait_s = (oldest.timestamp() if oldest else now) + self.settings.media_unattached_ttl_s - now
            raise RateLimited(f"media: {count} uploads not attached yet; attach them or wait",
                              retry_after_ms=max(1000, int(wait_s * 1000)))
        media_id = secrets.token_urlsafe(16)
        key = f"{user_id}/{media_id}"
        async with store_errors():
            await self.stores.media.create({"media_id": media_id, "owner_id": user_id, "key": key,
                                            "filename": filename, "content_type": content_type, "size": size,
                                            "created_at": utc(now)})
        ttl = self.settings.media_upload_ttl_s
        # The size range is exactly the declared size: storage that enforces policies (S3, MinIO,
        # the disk mode) refuses any other, and the attach check catches one that does not.
        upload = self.blobs.presign_upload(key, content_type, size, size, ttl, base_url)
        return {"media_id": media_id, "upload": upload, "expires_at": iso(now + ttl)}

    # ---- attaching -----------------------------------------------------------------------------
    async def check_attachments(self, user_id: str, conversation_id: str, media_ids: list[str]) -> None:
        """Attach the sender's uploads to a conversation, or Invalid (naming ``attachments``) and
        nothing attached: each id must be an upload of the sender whose object is stored with
        the declared size and type. Run before the message is submitted, so its readers can
        fetch the media as soon as they see it."""
        if len(set(media_ids)) != len(media_ids):
            raise Invalid("attachments: the same media is listed twice")
        async with store_errors():
            for media_id in media_ids:
                await self._check_one(user_id, media_id)
            for media_id in media_ids:
                # False only if a sweep claimed it since the check (it was pending for a day).
                if not await self.stores.media.attach(media_id, user_id, conversation_id):
                    raise Invalid(_NOT_YOURS.format(repr(media_id[:64])))

    async def _check_one(self, user_id: str, media_id: str) -> None:
        record = await self.stores.media.get(media_id)
        if record is None or record["owner_id"] != user_id:
            raise Invalid(_NOT_YOURS.format(repr(media_id[:64])))
        if record.get("verified"):
            return
        info = await self.blobs.stat(record["key"])
        if info is None:
            raise Invalid(f"attachments: {media_id!r} has not been uploaded")
        if info.size != record["size"]:
            raise Invalid(f"attachments: {media_id!r} is {info.size} bytes, not the {record['size']} declared")
        if info.content_type.lower() != record["content_type"]:
            raise Invalid(f"attachments: {media_id!r} is stored as {info.content_type[:100]!r}, "
                          f"not the {record['content_type']!r} declared")

    # ---- downloads -----------------------------------------------------------------------------
    async def download_url(self, user_id: str, media_id: str, base_url: str) -> dict[str, Any]:
        """``{url, expires_at}``: a presigned GET, for the uploader and the members of a
        conversation it is attached to; NotFound for anyone else and for unknown ids."""
        async with store_errors():
            record = await self.stores.media.get(media_id)
            allowed = record is not None and (record["owner_id"] == user_id
                                              or await self._member_of_any(user_id, record["conversations"]))
        if not allowed:
            raise NotFound("no such media")
        ttl = self.settings.media_url_ttl_s
        url = self.blobs.presign_download(record["key"], ttl, record["filename"], base_url)
        return {"url": url, "expires_at": iso(self.clock.now() + ttl)}

    async def _member_of_any(self, user_id: str, conversation_ids: list[str]) -> bool:
        for cid in conversation_ids:
            conv = await self.stores.conversations.get(cid)
            if conv is not None and user_id in conv["members"]:
                return True
        return False

    # ---- the sweep -----------------------------------------------------------------------------
    async def sweep_unattached(self, now: float) -> int:
        """Remove the uploads still pending ``media_unattached_ttl_s`` after their creation:
        the object, then the record (a record without its object is harmless; the reverse would
        leak storage). Returns how many were removed."""
        before = utc(now - self.settings.media_unattached_ttl_s)
        removed = 0
        while True:
            batch = await self.stores.media.claim_unattached(before, SWEEP_BATCH)
            for record in batch:
                try:
                    await self.blobs.delete(record["key"])
                    await self.stores.media.delete(record["media_id"])
                    removed += 1
                except StoreError as exc:   # left claimed: the next sweep takes it again
                    log.warning("could not remove upload %s: %r", record["media_id"], exc)
                    return removed
            if len(batch) < SWEEP_BATCH:
                return removed
