"""The embedded default's media on local disk, end to end through Serve.

A second gateway app on the session's Ray, Serve, hosts and stores (the ``raychat_strict``
pattern), mounted under /disk with RAYCHAT_S3_ENDPOINT unset and a data directory of its own:
the gateway itself takes the uploads (``POST /v1/blobs``) and serves the signed downloads.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx
import pytest

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e

PREFIX = "/disk"
MAX = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def raychat_disk(raychat, tmp_path_factory):
    from ray import serve

    from raychat.config import Settings
    from serve_app import build_app

    data_dir = tmp_path_factory.mktemp("raychat-disk")
    settings = Settings.from_dict({**raychat.settings.to_dict(), "s3_endpoint": None, "s3_access_key": None,
                                   "s3_secret_key": None, "data_dir": str(data_dir), "media_max_bytes": MAX})
    serve.run(build_app(settings), name="disk", route_prefix=PREFIX)
    yield SimpleNamespace(base_url=raychat.base_url + PREFIX, ws_url=raychat.ws_url + PREFIX, data_dir=data_dir)
    serve.delete("disk")


@pytest.fixture
async def dhttp(raychat_disk):
    async with httpx.AsyncClient(base_url=raychat_disk.base_url, timeout=30) as client:
        yield client


async def ticket(http, user, size: int, content_type: str = "image/png") -> dict:
    r = await http.post("/v1/media", headers=user.auth, json={"filename": "dot.png", "content_type": content_type,
                                                             "size": size})
    assert r.status_code == 201, r.text
    return r.json()


async def post_form(t: dict, data: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as plain:
        return await plain.post(t["upload"]["url"], data=t["upload"]["fields"],
                                files={"file": ("dot.png", data, t["upload"]["fields"]["Content-Type"])})


async def test_upload_attach_and_fetch_through_the_gateway(raychat_disk, dhttp):
    alice, bob, carol = await register(dhttp), await register(dhttp), await register(dhttp)
    cid = await create_group(dhttp, alice, [bob])
    t = await ticket(dhttp, alice, len(PNG))
    assert t["upload"]["url"] == raychat_disk.base_url + "/v1/blobs"
    r = await post_form(t, PNG)
    assert r.status_code == 204, r.text
    stored = raychat_disk.data_dir / "media" / alice.user_id / t["media_id"]
    assert stored.read_bytes() == PNG
    sb = await Socket.open(raychat_disk.ws_url, bob)
    r = await dhttp.post(f"/v1/conversations/{cid}/messages", headers=alice.auth,
                         json={"client_msg_id": "k1", "body": "a dot", "attachments": [t["media_id"]]})
    assert r.status_code == 201, r.text
    await sb.wait_for(lambda: any(f["type"] == "event" and f.get("attachments") == [t["media_id"]] for f in sb.frames))
    await sb.close()
    r = await dhttp.get(f"/v1/media/{t['media_id']}", headers=bob.auth)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(raychat_disk.base_url + "/v1/blobs/")
    async with httpx.AsyncClient(timeout=30) as plain:
        got = await plain.get(location)
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"].startswith("attachment;")
        forged = location.replace("signature=", "signature=0")
        assert (await plain.get(forged)).status_code == 403
        unsigned = await plain.get(location.split("?", 1)[0])     # no query at all: not signed, 403 too
        assert (unsigned.status_code, unsigned.json()["code"]) == (403, "forbidden"), unsigned.text
    assert (await dhttp.get(f"/v1/media/{t['media_id']}", headers=carol.auth)).status_code == 404


async def test_uploading_more_than_the_policy_allows_is_refused_by_the_gateway(raychat_disk, dhttp):
    alice = await register(dhttp)
    t = await ticket(dhttp, alice, 100)
    r = await post_form(t, b"x" * 101)
    assert r.status_code == 400 and r.json()["message"].startswith("EntityTooLarge"), r.text
    assert not (raychat_disk.data_dir / "media" / alice.user_id / t["media_id"]).exists()
    r = await post_form(t, b"x" * 100)              # the same form, within its range, still works
    assert r.status_code == 204, r.text


async def test_a_body_past_the_media_limit_is_refused_before_it_is_read(dhttp):
    alice = await register(dhttp)
    t = await ticket(dhttp, alice, MAX)
    r = await post_form(t, b"x" * (MAX + 512 * 1024))
    assert (r.status_code, r.json()["code"]) == (413, "too_large"), r.text


async def test_an_upload_form_with_a_changed_field_is_forbidden(dhttp):
    alice = await register(dhttp)
    t = await ticket(dhttp, alice, 5)
    t["upload"]["fields"]["key"] = f"{alice.user_id}/{uuid.uuid4().hex}"
    r = await post_form(t, b"hello")
    assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
