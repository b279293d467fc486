"""Media end to end on the session gateway, whose media live in S3 (moto_server).

The bytes go from the test straight to moto with the presigned POST, never through the gateway.
moto_server does not enforce POST policies, so an object that breaks its declaration can be
stored there; these tests check the gateway then refuses to attach it (real S3 and MinIO refuse
the upload itself). The disk mode has its own tests: tests/e2e/test_media_disk.py.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.chat_client import Socket, User, create_group, register

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


async def new_upload(http: httpx.AsyncClient, user: User, size: int, content_type: str = "image/png",
                     filename: str = "dot.png") -> dict:
    r = await http.post("/v1/media", headers=user.auth,
                        json={"filename": filename, "content_type": content_type, "size": size})
    assert r.status_code == 201, r.text
    return r.json()


async def upload(http: httpx.AsyncClient, user: User, data: bytes = PNG, *, declared: int | None = None,
                 stored_type: str | None = None) -> str:
    """POST /v1/media, then the presigned form to storage; ``declared``/``stored_type`` make an
    object that breaks its declaration (which moto stores; real S3 would refuse it)."""
    ticket = await new_upload(http, user, declared or len(data))
    fields = dict(ticket["upload"]["fields"])
    if stored_type:
        fields["Content-Type"] = stored_type
    async with httpx.AsyncClient(timeout=30) as plain:      # no bearer token: the policy is the credential
        r = await plain.post(ticket["upload"]["url"], data=fields,
                             files={"file": ("dot.png", data, fields["Content-Type"])})
    assert r.status_code == 204, r.text
    return ticket["media_id"]


async def send(http: httpx.AsyncClient, user: User, cid: str, attachments: list[str], body: str = "") -> httpx.Response:
    return await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                           json={"client_msg_id": uuid.uuid4().hex, "body": body, "attachments": attachments})


async def last_seq(http: httpx.AsyncClient, user: User, cid: str) -> int:
    r = await http.get(f"/v1/conversations/{cid}/events", headers=user.auth)
    assert r.status_code == 200, r.text
    return r.json()["last_seq"]


async def test_upload_attach_and_fetch_by_uploader_and_member(raychat, http):
    alice, bob, carol = await register(http), await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    ticket = await new_upload(http, alice, len(PNG), filename="Ürlaub.png")
    assert ticket["upload"]["url"].startswith(f"http://{raychat.settings.s3_endpoint}/")   # storage, not the gateway
    async with httpx.AsyncClient(timeout=30) as plain:
        r = await plain.post(ticket["upload"]["url"], data=ticket["upload"]["fields"],
                             files={"file": ("x", PNG, "image/png")})
    assert r.status_code == 204, r.text
    mid = ticket["media_id"]
    sb = await Socket.open(raychat.ws_url, bob)
    r = await send(http, alice, cid, [mid])                 # no caption: the body may be empty
    assert r.status_code == 201, r.text
    assert r.json()["attachments"] == [mid] and r.json()["body"] == ""
    await sb.wait_for(lambda: any(f["type"] == "event" and f.get("attachments") == [mid] for f in sb.frames))
    await sb.close()
    async with httpx.AsyncClient(timeout=30) as plain:
        for user in (alice, bob):
            r = await http.get(f"/v1/media/{mid}", headers=user.auth)
            assert r.status_code == 302, r.text
            assert r.headers["location"] == r.json()["url"]
            got = await plain.get(r.headers["location"])
            assert got.status_code == 200 and got.content == PNG
            assert got.headers["content-type"] == "image/png"
            assert "filename*=UTF-8''%C3%9Crlaub.png" in got.headers["content-disposition"]
            r = await http.get(f"/v1/media/{mid}/url", headers=user.auth)
            assert r.status_code == 200 and set(r.json()) == {"url", "expires_at"}
            assert (await plain.get(r.json()["url"])).content == PNG
    for path in (f"/v1/media/{mid}", f"/v1/media/{mid}/url"):
        r = await http.get(path, headers=carol.auth)
        assert (r.status_code, r.json()["code"]) == (404, "not_found")


async def test_media_never_attached_is_only_for_its_uploader(http):
    alice, bob = await register(http), await register(http)
    mid = await upload(http, alice)
    assert (await http.get(f"/v1/media/{mid}", headers=alice.auth)).status_code == 302
    assert (await http.get(f"/v1/media/{mid}", headers=bob.auth)).status_code == 404
    assert (await http.get("/v1/media/no-such-media", headers=bob.auth)).status_code == 404


async def test_attaching_someone_elses_media_is_invalid_and_stores_nothing(http):
    alice, mallory = await register(http), await register(http)
    cid = await create_group(http, mallory, [alice])
    theirs = await upload(http, alice)
    before = await last_seq(http, mallory, cid)
    r = await send(http, mallory, cid, [theirs], body="look")
    assert r.status_code == 422 and r.json()["code"] == "invalid", r.text
    assert r.json()["message"].startswith("attachments:")
    unknown = await send(http, mallory, cid, ["A" * len(theirs)], body="look")
    assert unknown.json()["message"] == r.json()["message"].replace(theirs, "A" * len(theirs))   # no probing
    assert await last_seq(http, mallory, cid) == before
    assert (await http.get(f"/v1/media/{theirs}", headers=mallory.auth)).status_code == 404


@pytest.mark.parametrize("mismatch", [{"declared": len(PNG) - 1}, {"stored_type": "image/gif"},
                                      {"stored_type": "text/html"}], ids=["size", "type", "html"])
async def test_an_object_that_does_not_match_its_declaration_is_invalid_and_stores_nothing(http, mismatch):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    mid = await upload(http, alice, **mismatch)
    r = await send(http, alice, cid, [mid], body="see")
    assert r.status_code == 422 and r.json()["message"].startswith("attachments:"), r.text
    assert await last_seq(http, alice, cid) == 0
    assert (await http.get(f"/v1/media/{mid}", headers=bob.auth)).status_code == 404


async def test_an_upload_that_never_arrived_is_invalid(http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    mid = (await new_upload(http, alice, 10))["media_id"]
    r = await send(http, alice, cid, [mid])
    assert r.status_code == 422 and "has not been uploaded" in r.json()["message"], r.text


async def test_the_same_media_may_go_to_two_conversations_but_not_twice_in_one_message(http):
    alice, bob, carol = await register(http), await register(http), await register(http)
    c1, c2 = await create_group(http, alice, [bob]), await create_group(http, alice, [carol])
    mid = await upload(http, alice)
    assert (await send(http, alice, c1, [mid])).status_code == 201
    assert (await send(http, alice, c2, [mid])).status_code == 201
    for user in (bob, carol):
        assert (await http.get(f"/v1/media/{mid}", headers=user.auth)).status_code == 302
    r = await send(http, alice, c1, [mid, mid])
    assert r.status_code == 422 and "twice" in r.json()["message"]


async def test_deleting_a_message_takes_its_media_out_of_the_conversation(http):
    alice, bob, carol = await register(http), await register(http), await register(http)
    c1, c2 = await create_group(http, alice, [bob]), await create_group(http, alice, [carol])
    shared, only = await upload(http, alice), await upload(http, alice)
    first = (await send(http, alice, c1, [shared, only])).json()["seq"]
    second = (await send(http, alice, c1, [shared])).json()["seq"]
    assert (await send(http, alice, c2, [shared])).status_code == 201

    async def status(user, mid) -> int:
        return (await http.get(f"/v1/media/{mid}", headers=user.auth)).status_code

    r = await http.delete(f"/v1/conversations/{c1}/messages/{first}", headers=bob.auth)
    assert r.status_code == 403                      # a member who did not send it: refused, nothing released
    assert (await status(bob, only), await status(bob, shared)) == (302, 302)
    r = await http.delete(f"/v1/conversations/{c1}/messages/{first}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert await status(bob, only) == 404            # attached only to the deleted message
    assert await status(bob, shared) == 302          # the second message still attaches it
    r = await http.delete(f"/v1/conversations/{c1}/messages/{second}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert await status(bob, shared) == 404
    assert await status(carol, shared) == 302        # still attached in the other conversation
    # The uploader keeps her own upload until the sweep removes it (or she attaches it again).
    assert (await status(alice, only), await status(alice, shared)) == (302, 302)
    r = await send(http, alice, c1, [only])
    assert r.status_code == 201 and await status(bob, only) == 302


async def test_a_message_without_body_or_attachments_is_still_invalid(http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=alice.auth, json={"client_msg_id": "k1"})
    assert r.status_code == 422 and r.json()["code"] == "invalid" and r.json()["message"].startswith("body: ")


async def test_sending_with_attachments_over_websocket(raychat, http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    mid = await upload(http, alice)
    sa, sb = await Socket.open(raychat.ws_url, alice), await Socket.open(raychat.ws_url, bob)
    await sa.ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "k1", "attachments": [mid]}))
    await sa.wait_for(lambda: "k1" in sa.acks)
    await sb.wait_for(lambda: any(f["type"] == "event" and f.get("attachments") == [mid] for f in sb.frames))
    event = next(f for f in sb.frames if f["type"] == "event" and f.get("attachments") == [mid])
    assert event["body"] == "" and event["seq"] == sa.acks["k1"]["seq"]
    # Someone else's media over the socket: an error frame by ref, nothing stored.
    theirs = await upload(http, bob)
    await sa.ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "k2", "body": "x",
                                 "attachments": [theirs]}))
    await sa.wait_for(lambda: any(e.get("ref") == "k2" for e in sa.errors))
    err = next(e for e in sa.errors if e.get("ref") == "k2")
    assert err["code"] == "invalid" and err["message"].startswith("attachments:")
    assert await last_seq(http, alice, cid) == sa.acks["k1"]["seq"]
    await sa.close(), await sb.close()


@pytest.mark.parametrize("content_type", ["text/html", "image/svg+xml", "application/x-msdownload", "TEXT/HTML"])
async def test_a_content_type_not_allowed_is_415(http, content_type):
    alice = await register(http)
    r = await http.post("/v1/media", headers=alice.auth,
                        json={"filename": "a", "content_type": content_type, "size": 10})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_media_type"), r.text


async def test_a_size_over_the_limit_is_413(raychat, http):
    alice = await register(http)
    r = await http.post("/v1/media", headers=alice.auth, json={
        "filename": "a.mp4", "content_type": "video/mp4", "size": raychat.settings.media_max_bytes + 1})
    assert (r.status_code, r.json()["code"]) == (413, "too_large"), r.text
    r = await http.post("/v1/media", headers=alice.auth, json={
        "filename": "a.mp4", "content_type": "video/mp4", "size": raychat.settings.media_max_bytes})
    assert r.status_code == 201


@pytest.mark.parametrize("body, field", [
    ({"content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "a", "size": 10}, "content_type"),
    ({"filename": "a", "content_type": "image/png"}, "size"),
    ({"filename": "a", "content_type": "image/png", "size": 0}, "size"),
    ({"filename": "a", "content_type": "image/png", "size": "10"}, "size"),
    ({"filename": "a", "content_type": "image/png", "size": 1.5}, "size"),
    ({"filename": "a/b.png", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "a\u202e.png", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "", "content_type": "image/png", "size": 10}, "filename"),
])
async def test_malformed_upload_requests_are_422_naming_the_field(http, body, field):
    alice = await register(http)
    r = await http.post("/v1/media", headers=alice.auth, json=body)
    assert (r.status_code, r.json()["code"]) == (422, "invalid"), r.text
    assert r.json()["message"].startswith(f"{field}:"), r.text


async def test_media_routes_need_a_token(http):
    assert (await http.post("/v1/media", json={"filename": "a", "content_type": "image/png", "size": 1})).status_code == 401
    assert (await http.get("/v1/media/x")).status_code == 401


async def test_the_disk_routes_are_not_served_when_media_are_in_s3(http):
    r = await http.post("/v1/blobs", files={"file": ("a", b"x")})
    assert r.status_code == 404
    r = await http.get("/v1/blobs/u_x/m?expires=1&filename=a&signature=x")
    assert r.status_code == 404
