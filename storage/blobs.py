"""The media object store port (S3 or local disk), and what both adapters share.

Objects are written by clients, never by raychat: ``presign_upload`` hands out an S3-style POST
form whose policy pins the object's key, content type and size range, and the client sends the
bytes straight to storage. raychat then only looks at what arrived (``stat``), hands out
short-lived download URLs and deletes.

Adapters: ``storage.s3_blobs.S3BlobStore`` (MinIO, AWS S3 or any S3 API) and
``storage.disk_blobs.DiskBlobStore`` (files under the data directory, with the upload and
download routes served by the gateway). Both pass ``tests/storage/test_blob_store.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

# Keys are "<owner_id>/<media_id>": a few path segments of URL-safe characters. Nothing else is
# ever signed, so no key can climb out of the disk adapter's directory or need escaping in a URL.
KEY = re.compile(r"[A-Za-z0-9_-]{1,128}(/[A-Za-z0-9_-]{1,128}){0,3}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What storage holds for a key: its size in bytes and the content type it was uploaded with."""
    size: int
    content_type: str


PresignedPost = dict[str, Any]
"""{"url": str, "fields": {name: value}}: the client POSTs multipart/form-data to ``url`` with
every field of ``fields`` (in any order), then the ``file`` field last (storage ignores fields
after it). ``fields["policy"]`` is the base64 JSON policy: ``{"expiration": ISO 8601,
"conditions": [["eq", "$bucket", b], ["eq", "$key", k], ["eq", "$Content-Type", t],
["content-length-range", min, max], ...]}``."""


class BlobStore(Protocol):
    """Where media objects live. Every async method may raise ``StoreUnavailable`` (the storage did
    not answer within the adapter's timeout) or ``StoreRejected`` (it refused: credentials, a
    missing bucket); none hangs. The presign methods only compute and sign: no I/O, no errors but
    ``ValueError`` for a key that does not match ``KEY``."""

    def presign_upload(self, key: str, content_type: str, min_size: int, max_size: int, expires_s: int,
                       base_url: str) -> PresignedPost:
        """A POST form that lets its holder store exactly one object at ``key``, with exactly
        this content type and a size within [min_size, max_size], for ``expires_s`` seconds.
        Uploading again before expiry replaces the object. ``base_url`` is how clients reach
        the gateway; storage that has its own address ignores it."""

    async def stat(self, key: str) -> BlobInfo | None:
        """The stored object's size and content type, or None if there is none."""

    def presign_download(self, key: str, expires_s: int, filename: str, base_url: str) -> str:
        """An absolute URL that fetches the object for ``expires_s`` seconds, answered with its
        stored content type and ``Content-Disposition: attachment`` naming ``filename``. It does
        not check that the object exists (a fetch of a missing one is a 404 from storage)."""

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that does not exist is not an error (idempotent)."""

    async def ensure(self) -> None:
        """Create the bucket (or directory) if it is missing; safe at every start."""

    async def close(self) -> None:
        """Release connections and threads; the store is not used afterwards."""


def check_key(key: str) -> str:
    if not KEY.fullmatch(key):
        raise ValueError(f"not a media key: {key[:80]!r}")
    return key


def content_disposition(filename: str) -> str:
    """``attachment`` with the filename both as a plain-ASCII fallback and as RFC 8187 UTF-8.

    Always ``attachment``: a browser that navigates to the URL downloads the file instead of
    rendering it on storage's (or, in disk mode, the gateway's) origin; ``<img>``, ``<audio>``
    and ``<video>`` elements still show it.
    """
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%;' else "_" for c in filename) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
