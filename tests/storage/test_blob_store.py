"""The BlobStore contract, run against both adapters through real HTTP.

S3: ``S3BlobStore`` (the minio SDK) on moto_server. Disk: ``DiskBlobStore`` with its upload and
download routes served by the real gateway app (gateway.app.create_app) under uvicorn, as in
disk mode. Clients upload with httpx exactly as a client would: every field of the presigned
form, then ``file``.

moto_server does not enforce POST policies (no signature, size or type check), so the tests that
storage refuses an upload outside its policy run against the disk adapter only; for S3 the suite
checks the policy carries those conditions, which real S3 and MinIO enforce (and the gateway's
attach check refuses a mismatched object either way: tests/gateway/test_media_service.py).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from raychat.clock import FakeClock
from storage.blobs import BlobInfo
from storage.disk_blobs import DiskBlobStore, derive_key
from storage.embedded import free_port
from storage.errors import StoreUnavailable
from storage.s3_blobs import S3BlobStore

JWT_SECRET = "blob-contract-" + "s" * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def disk_gateway(tmp_path_factory):
    """The gateway app on a free port with a context holding only what the disk routes use."""
    import uvicorn

    from gateway import context as ctx_module
    from gateway.app import create_app
    from gateway.context import Context
    from gateway.media_service import MediaService
    from raychat.config import Settings

    clock = FakeClock(time.time())
    settings = Settings(jwt_secret=JWT_SECRET, data_dir=tmp_path_factory.mktemp("disk"), media_max_bytes=4096)
    store = DiskBlobStore(settings.data_dir / "media", derive_key(JWT_SECRET), now=clock.now)
    media = MediaService(settings, None, store, clock, disk=store)
    saved = ctx_module._current
    ctx_module.set_context(Context(settings, None, None, None, None, None, None, media=media))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", store=store, clock=clock)
    server.should_exit = True
    thread.join(10)
    ctx_module._current = saved


@pytest.fixture(params=["s3", "disk"])
async def blobs(request, moto_s3):
    """(store, base_url, clock) for each adapter; a fresh bucket (S3) or key prefix (disk) per test."""
    if request.param == "s3":
        clock = FakeClock(time.time())
        store = S3BlobStore(moto_s3.endpoint, moto_s3.access_key, moto_s3.secret_key, f"t-{uuid.uuid4().hex[:20]}",
                            secure=False, now=clock.now)
        await store.ensure()
        yield SimpleNamespace(store=store, base_url="http://unused.invalid", clock=clock, kind="s3")
        await store.close()
    else:
        gw = request.getfixturevalue("disk_gateway")
        await gw.store.ensure()
        yield SimpleNamespace(store=gw.store, base_url=gw.url, clock=gw.clock, kind="disk")


def key() -> str:
    return f"u_{uuid.uuid4().hex[:8]}/{uuid.uuid4().hex}"


async def upload(form: dict, data: bytes, content_type: str | None = None) -> httpx.Response:
    """POST the form as a browser would: the fields, then the file."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(form["url"], data=form["fields"],
                               files={"file": ("photo.png", data, content_type or form["fields"]["Content-Type"])})


def policy(form: dict) -> dict:
    return json.loads(base64.b64decode(form["fields"]["policy"]))


class TestBlobStoreContract:
    async def test_upload_stat_download_delete(self, blobs):
        k = key()
        form = blobs.store.presign_upload(k, "image/png", len(PNG), len(PNG), 300, blobs.base_url)
        r = await upload(form, PNG)
        assert r.status_code == 204, r.text
        assert await blobs.store.stat(k) == BlobInfo(len(PNG), "image/png")
        url = blobs.store.presign_download(k, 60, "Ürlaub photo.png", blobs.base_url)
        async with httpx.AsyncClient(timeout=30) as http:
            got = await http.get(url)
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert got.headers["content-disposition"] == \
            "attachment; filename=\"_rlaub photo.png\"; filename*=UTF-8''%C3%9Crlaub%20photo.png"
        await blobs.store.delete(k)
        assert await blobs.store.stat(k) is None
        await blobs.store.delete(k)        # idempotent

    async def test_the_policy_pins_key_content_type_and_size_range(self, blobs):
        k = key()
        form = blobs.store.presign_upload(k, "audio/ogg", 5, 1000, 300, blobs.base_url)
        conditions = policy(form)["conditions"]
        assert ["eq", "$key", k] in conditions
        assert ["eq", "$Content-Type", "audio/ogg"] in conditions
        assert ["content-length-range", 5, 1000] in conditions
        assert form["fields"]["key"] == k and form["fields"]["Content-Type"] == "audio/ogg"

    async def test_the_policy_expires_when_asked(self, blobs):
        form = blobs.store.presign_upload(key(), "image/png", 1, 10, 120, blobs.base_url)
        expiration = policy(form)["expiration"]
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(blobs.clock.now() + 120))
        assert expiration.startswith(expected), expiration

    async def test_urls_are_absolute(self, blobs):
        k = key()
        for url in (blobs.store.presign_upload(k, "image/png", 1, 10, 60, blobs.base_url)["url"],
                    blobs.store.presign_download(k, 60, "a.png", blobs.base_url)):
            assert httpx.URL(url).is_absolute_url, url

    async def test_uploading_again_replaces_the_object(self, blobs):
        k = key()
        for data in (b"first", b"second!"):
            form = blobs.store.presign_upload(k, "image/png", 1, 100, 300, blobs.base_url)
            assert (await upload(form, data)).status_code == 204
        assert (await blobs.store.stat(k)).size == len(b"second!")

    async def test_stat_of_a_missing_object_is_none(self, blobs):
        assert await blobs.store.stat(key()) is None

    async def test_ensure_is_safe_to_repeat(self, blobs):
        await blobs.store.ensure()
        await blobs.store.ensure()

    @pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "", "a b/c", "u/m.meta", "/abs"])
    async def test_a_key_that_is_not_a_media_key_is_refused(self, blobs, bad):
        with pytest.raises(ValueError):
            blobs.store.presign_upload(bad, "image/png", 1, 10, 60, blobs.base_url)
        with pytest.raises(ValueError):
            blobs.store.presign_download(bad, 60, "a.png", blobs.base_url)


class TestDiskEnforcesThePolicy:
    """What real S3 and MinIO refuse at upload, the disk adapter's route refuses too."""

    @pytest.fixture
    async def disk(self, disk_gateway):
        await disk_gateway.store.ensure()
        return disk_gateway

    async def test_uploading_more_than_the_policy_allows_is_refused(self, disk):
        k = key()
        form = disk.store.presign_upload(k, "image/png", 10, 10, 300, disk.url)
        r = await upload(form, b"x" * 11)
        assert r.status_code == 400 and r.json()["message"].startswith("EntityTooLarge"), r.text
        assert await disk.store.stat(k) is None

    async def test_uploading_less_than_the_policy_allows_is_refused(self, disk):
        k = key()
        r = await upload(disk.store.presign_upload(k, "image/png", 10, 10, 300, disk.url), b"x" * 9)
        assert r.status_code == 400 and r.json()["message"].startswith("EntityTooSmall"), r.text
        assert await disk.store.stat(k) is None

    async def test_a_body_over_the_server_limit_is_refused_before_the_policy_is_read(self, disk):
        form = disk.store.presign_upload(key(), "image/png", 1, 10**9, 300, disk.url)
        r = await upload(form, b"x" * (4096 + 300 * 1024))
        assert r.status_code == 413, r.text

    async def test_another_content_type_than_the_policys_is_refused(self, disk):
        k = key()
        form = disk.store.presign_upload(k, "image/png", 1, 100, 300, disk.url)
        form["fields"]["Content-Type"] = "text/html"
        r = await upload(form, b"<script>", "text/html")
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        assert await disk.store.stat(k) is None

    async def test_another_key_than_the_policys_is_refused(self, disk):
        form = disk.store.presign_upload(key(), "image/png", 1, 100, 300, disk.url)
        form["fields"]["key"] = other = key()
        assert (await upload(form, b"abc")).status_code == 403
        assert await disk.store.stat(other) is None

    async def test_an_expired_policy_is_refused(self, disk):
        k = key()
        form = disk.store.presign_upload(k, "image/png", 1, 100, 60, disk.url)
        disk.clock.advance(61)
        r = await upload(form, b"abc")
        assert r.status_code == 403 and "expired" in r.json()["message"], r.text
        assert await disk.store.stat(k) is None

    async def test_an_expired_or_altered_download_url_is_refused(self, disk):
        k = key()
        assert (await upload(disk.store.presign_upload(k, "image/png", 1, 100, 300, disk.url), b"abc")).status_code == 204
        url = disk.store.presign_download(k, 60, "a.png", disk.url)
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.get(url.replace("a.png", "b.png"))).status_code == 403
            assert (await http.get(url.replace(k, key()))).status_code == 403
            disk.clock.advance(61)
            r = await http.get(url)
        assert r.status_code == 403 and "expired" in r.json()["message"], r.text

    async def test_a_download_is_labelled_so_browsers_never_run_it(self, disk):
        k = key()
        await upload(disk.store.presign_upload(k, "image/png", 1, 100, 300, disk.url), b"abc")
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(disk.store.presign_download(k, 60, "a.png", disk.url))
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert "sandbox" in r.headers["content-security-policy"]
        assert r.headers["content-disposition"].startswith("attachment;")

    async def test_a_form_that_is_not_multipart_is_refused(self, disk):
        form = disk.store.presign_upload(key(), "image/png", 1, 100, 300, disk.url)
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(form["url"], json=form["fields"])
            assert r.status_code == 415, r.text
            r = await http.post(form["url"], content=b"--x\r\nnonsense", headers={
                "content-type": "multipart/form-data; boundary=x"})
            assert r.status_code == 400, r.text

    async def test_a_form_without_file_is_refused(self, disk):
        form = disk.store.presign_upload(key(), "image/png", 1, 100, 300, disk.url)
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(form["url"], data=form["fields"], files={"other": ("a", b"x")})
        assert r.status_code == 400 and "file" in r.json()["message"], r.text

    @pytest.mark.parametrize("extra", [{f"x-{i}": "v" for i in range(20)}, {"x-big": "v" * 9000}],
                             ids=["too many fields", "a field too big"])
    async def test_form_fields_are_bounded(self, disk, extra):
        form = disk.store.presign_upload(key(), "image/png", 1, 100, 300, disk.url)
        form["fields"].update(extra)
        r = await upload(form, b"abc")
        assert r.status_code == 400 and r.json()["message"].startswith("MalformedPOSTRequest"), r.text

    async def test_the_refusal_comes_within_the_chunk_that_passes_the_maximum(self, disk):
        """Streamed: the route stops reading the body once the file is over its maximum."""
        from gateway.media_upload import receive_upload
        from storage.post_policy import UploadRefused

        form = disk.store.presign_upload(key(), "image/png", 1, 100_000, 300, disk.url)
        body = httpx.Request("POST", form["url"], data=form["fields"],
                             files={"file": ("a", b"x" * 1_000_000, "image/png")})
        content = body.read()
        read = []

        async def chunks():
            for i in range(0, len(content), 16_384):
                read.append(i)
                yield content[i:i + 16_384]

        with pytest.raises(UploadRefused) as info:
            await receive_upload(disk.store, body.headers["content-type"], chunks(), 10**9)
        assert info.value.s3_code == "EntityTooLarge"
        assert len(read) == 100_000 // 16_384 + 1     # the first chunk past 100 kB, then no more
        assert not list((disk.store.root / ".tmp").iterdir())     # and nothing is left behind


async def test_an_unreachable_s3_is_unavailable_within_the_timeout():
    store = S3BlobStore(f"127.0.0.1:{free_port()}", "a", "b", "bucket", secure=False, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.stat("u_1/m1")
    assert time.monotonic() - started < 3
    await store.close()
