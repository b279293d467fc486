"""BlobStore on S3: MinIO, AWS S3 or any S3 API, through the ``minio`` SDK.

The SDK is synchronous (urllib3), so each call that talks to storage runs in a thread and is
bounded by the store timeout; a storage that does not answer costs that long and never hangs the
gateway's loop. Presigning is local computation (the region is configured, so the SDK never asks
storage for the bucket's location) and runs inline.

Presigned URLs must name the host clients reach. When that is not the endpoint raychat talks to
(MinIO behind a proxy), a second client, configured with the public URL, only signs; SigV4
covers the host, so a URL signed for the internal name would fail at the public one.

Real S3 and MinIO enforce the POST policy (key, content type, content-length-range) at upload.
moto_server, which the tests use, does not; the gateway's attach check (size and type must match
what was declared) is the second line either way.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.datatypes import PostPolicy
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from storage.blobs import BlobInfo, PresignedPost, check_key, content_disposition
from storage.errors import StoreRejected, StoreUnavailable, counted

_MISSING = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchVersion"})
_OWNED = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class S3BlobStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool = True,
                 region: str = "us-east-1", public_url: str | None = None, timeout_s: float = 3.0,
                 now: Callable[[], float] = time.time):
        self.bucket = bucket
        self._timeout_s = timeout_s
        self._now = now
        # One retry at most: the caller's timeout bounds the whole call anyway, and urllib3's
        # default (3 retries with backoff) would outlast it for nothing.
        self._pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                                         retries=urllib3.Retry(total=1, connect=1, read=0, redirect=0,
                                                               backoff_factor=0.1), maxsize=16)
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                             region=region, http_client=self._pool)
        if public_url:
            parts = urlsplit(public_url)
            self._signer = Minio(parts.netloc, access_key=access_key, secret_key=secret_key,
                                 secure=parts.scheme == "https", region=region)
            self._public = f"{parts.scheme}://{parts.netloc}"
        else:
            self._signer = self._client
            self._public = f"{'https' if secure else 'http'}://{endpoint}"

    # ---- the BlobStore port ------------------------------------------------------------------
    def presign_upload(self, key: str, content_type: str, min_size: int, max_size: int, expires_s: int,
                       base_url: str = "") -> PresignedPost:
        check_key(key)
        policy = PostPolicy(self.bucket, self._at(expires_s))
        policy.add_equals_condition("key", key)
        policy.add_equals_condition("Content-Type", content_type)
        policy.add_content_length_range_condition(min_size, max_size)
        # The SDK returns the signature fields only; the pinned ones must be sent as well.
        fields = {"key": key, "Content-Type": content_type, **self._signer.presigned_post_policy(policy)}
        return {"url": f"{self._public}/{self.bucket}", "fields": fields}

    async def stat(self, key: str) -> BlobInfo | None:
        check_key(key)
        try:
            st = await self._call(self._client.stat_object, self.bucket, key)
        except _Missing:
            return None
        return BlobInfo(int(st.size), st.content_type or "application/octet-stream")

    def presign_download(self, key: str, expires_s: int, filename: str, base_url: str = "") -> str:
        check_key(key)
        return self._signer.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expires_s),
            response_headers={"response-content-disposition": content_disposition(filename)},
            request_date=datetime.fromtimestamp(self._now(), tz=timezone.utc))

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await self._call(self._client.remove_object, self.bucket, key)
        except _Missing:
            pass

    async def ensure(self) -> None:
        if await self._call(self._client.bucket_exists, self.bucket):
            return
        try:
            await self._call(self._client.make_bucket, self.bucket)
        except StoreRejected as exc:
            if not isinstance(exc.__cause__, S3Error) or exc.__cause__.code not in _OWNED:
                raise    # another replica making it at the same time is fine; anything else is not

    async def close(self) -> None:
        self._pool.clear()

    # ---- inside ----------------------------------------------------------------------------
    def _at(self, seconds: int) -> datetime:
        return datetime.fromtimestamp(self._now() + seconds, tz=timezone.utc)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one SDK call in a thread within the timeout; its errors become storage errors."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self._timeout_s)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise _Missing() from exc
            raise counted("s3", StoreRejected(f"S3 refused {getattr(fn, '__name__', 'call')}: {exc.code}")) from exc
        except (ServerError, InvalidResponseError) as exc:
            raise counted("s3", StoreUnavailable(f"S3 answered {getattr(fn, '__name__', 'call')} with an error: "
                                                 f"{exc}")) from exc
        except (asyncio.TimeoutError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise counted("s3", StoreUnavailable(f"S3 unreachable: {exc!r}")) from exc
        except MinioException as exc:
            raise counted("s3", StoreRejected(f"S3 call failed: {exc}")) from exc


class _Missing(Exception):
    """No such object (internal: stat answers None, delete succeeds)."""
