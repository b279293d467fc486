"""BlobStore on local disk, for the embedded default (no S3 configured).

Objects are files under ``root`` (``<data_dir>/media``): ``<key>`` holds the bytes and
``<key>.meta`` the content type they were uploaded with. The gateway plays S3's part: its
``POST /v1/blobs`` route takes the same POST form as S3 (see ``post_policy``) and streams
the file through ``DiskUpload``; ``GET /v1/blobs/<key>?expires=&filename=&signature=``
serves a file while its signature holds. Both URLs are signed with one HMAC key that every
gateway replica derives alike, so any replica serves them.

One machine only: replicas on other nodes would not see the files. Past one node, use S3.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

from storage import post_policy
from storage.blobs import BlobInfo, PresignedPost, check_key
from storage.errors import StoreUnavailable, counted
from storage.post_policy import UploadRefused, UploadTarget

BUCKET = "media"            # what the policy's ``$bucket`` condition names
UPLOAD_PATH = "/v1/blobs"
DOWNLOAD_PATH = "/v1/blobs/"
_META = ".meta"             # never part of a key (KEY has no dots), so a sidecar cannot shadow an object
_TMP = ".tmp"


def derive_key(secret: str) -> bytes:
    """The media signing key from the server secret (the JWT secret): a separate key, so a media
    signature can never pass as a token signature or the other way round."""
    return hmac.new(secret.encode(), b"raychat media urls v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Download:
    """A verified download: the file to send and how to label it."""
    path: Path
    content_type: str
    filename: str
    expires_at: int


class DiskBlobStore:
    def __init__(self, root: Path, secret: bytes, now: Callable[[], float] = time.time):
        self.root = Path(root)
        self._secret = secret
        self._now = now

    # ---- the BlobStore port ------------------------------------------------------------------
    def presign_upload(self, key: str, content_type: str, min_size: int, max_size: int, expires_s: int,
                       base_url: str) -> PresignedPost:
        check_key(key)
        fields = post_policy.signed_fields(self._secret, BUCKET, key, content_type, min_size, max_size,
                                           self._now() + expires_s)
        return {"url": base_url.rstrip("/") + UPLOAD_PATH, "fields": fields}

    async def stat(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        return await self._io(_stat, path)

    def presign_download(self, key: str, expires_s: int, filename: str, base_url: str) -> str:
        check_key(key)
        expires = int(self._now() + expires_s)
        query = urlencode({"expires": expires, "filename": filename,
                           "signature": self._download_signature(key, expires, filename)}, quote_via=quote)
        return f"{base_url.rstrip('/')}{DOWNLOAD_PATH}{key}?{query}"

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await self._io(_delete, path)

    async def ensure(self) -> None:
        await self._io(lambda: (self.root / _TMP).mkdir(parents=True, exist_ok=True))

    async def close(self) -> None:
        return None

    # ---- what the gateway's upload and download routes use -------------------------------------
    def verify_upload(self, fields: dict[str, str]) -> UploadTarget:
        """The target the form's signed policy allows (post_policy.verify), or UploadRefused."""
        target = post_policy.verify(self._secret, BUCKET, fields, self._now())
        if not _key_ok(target.key):
            raise UploadRefused(400, "InvalidArgument", "key: not a media key")
        return target

    def open_upload(self, target: UploadTarget) -> "DiskUpload":
        return DiskUpload(self, target)

    async def verify_download(self, key: str, expires: str, filename: str, signature: str) -> Download:
        """The file a signed download URL names, or UploadRefused: 403 for a bad or expired
        signature, 404 NoSuchKey when there is no such object."""
        try:
            expires_at = int(expires)
        except ValueError:
            raise UploadRefused(403, "AccessDenied", "expires: not a time") from None
        good = _key_ok(key) and hmac.compare_digest(self._download_signature(key, expires_at, filename),
                                                    signature.lower())
        if not good:
            raise UploadRefused(403, "AccessDenied", "the URL signature does not match")
        if self._now() >= expires_at:
            raise UploadRefused(403, "AccessDenied", "the URL expired")
        path = self._path(key)
        info = await self._io(_stat, path)
        if info is None:
            raise UploadRefused(404, "NoSuchKey", "no such object")
        return Download(path, info.content_type, filename, expires_at)

    # ---- inside ----------------------------------------------------------------------------
    def _download_signature(self, key: str, expires: int, filename: str) -> str:
        # A newline cannot occur in a key or a decimal, so the parts cannot be shifted into each other.
        return post_policy.sign(self._secret, f"GET\n{key}\n{expires}\n{filename}")

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @staticmethod
    async def _io(fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            raise counted("disk", StoreUnavailable(f"media directory: {exc}")) from exc


class DiskUpload:
    """One upload being received: bytes go to a temporary file, which becomes the object only
    once it is complete and within the size range. Nothing is ever held in memory but a chunk."""

    def __init__(self, store: DiskBlobStore, target: UploadTarget):
        self.store = store
        self.target = target
        self.size = 0
        self._tmp = store.root / _TMP / f"{secrets.token_hex(12)}"
        self._file = None

    async def write(self, chunk: bytes) -> None:
        """Append; UploadRefused(400 EntityTooLarge) as soon as the size passes the maximum (the
        temporary file is removed then, and this upload takes no more bytes)."""
        self.size += len(chunk)
        if self.size > self.target.max_size:
            await self.abort()
            raise UploadRefused(400, "EntityTooLarge", f"file: over the policy's {self.target.max_size} bytes")
        if self._file is None:
            self._file = await self.store._io(open, self._tmp, "xb")
        await self.store._io(self._file.write, chunk)

    async def commit(self) -> None:
        """Make the object visible, atomically (rename); UploadRefused(400) if it is too small."""
        if self.size < self.target.min_size:
            await self.abort()
            raise UploadRefused(400, "EntityTooSmall", f"file: under the policy's {self.target.min_size} bytes")
        if self._file is None:
            self._file = await self.store._io(open, self._tmp, "xb")
        await self.store._io(_commit, self._file, self._tmp, self.store._path(self.target.key),
                             self.target.content_type)
        self._file = None

    async def abort(self) -> None:
        file, self._file = self._file, None
        await self.store._io(_discard, file, self._tmp)


def _key_ok(key: str) -> bool:
    try:
        check_key(key)
    except ValueError:
        return False
    return True


def _stat(path: Path) -> BlobInfo | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    try:
        content_type = path.with_name(path.name + _META).read_text().strip()
    except FileNotFoundError:
        content_type = "application/octet-stream"
    return BlobInfo(size, content_type)


def _delete(path: Path) -> None:
    # The object first: once it is gone, a sidecar left by a crash here is harmless (never read).
    path.unlink(missing_ok=True)
    path.with_name(path.name + _META).unlink(missing_ok=True)


def _commit(file, tmp: Path, dest: Path, content_type: str) -> None:
    file.flush()
    os.fsync(file.fileno())
    file.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta_tmp = tmp.with_name(tmp.name + _META)
    meta_tmp.write_text(content_type)
    # The sidecar before the object: a reader who sees the object sees its content type. A
    # replaced object's old sidecar is overwritten first; for that instant a reader of the old
    # bytes sees the new type, which the attach check then refuses as a mismatch.
    os.replace(meta_tmp, dest.with_name(dest.name + _META))
    os.replace(tmp, dest)


def _discard(file, tmp: Path) -> None:
    if file is not None:
        file.close()
    tmp.unlink(missing_ok=True)
