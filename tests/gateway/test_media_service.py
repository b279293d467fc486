"""MediaService on the real stores: MongoDB (SecantusDB) for records, moto_server for objects, a
fake clock for the sweep. Uploads go over HTTP to moto exactly as a client sends them.

moto_server does not enforce POST policies, which lets these tests store objects that do not
match their declaration (as a storage without enforcement would) and check that attaching them
is refused.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import httpx
import pytest

from gateway.media_service import MediaService, clean_filename
from raychat.clock import FakeClock
from raychat.config import Settings
from raychat.errors import Invalid, NotFound, RateLimited, TooLarge, UnsupportedMediaType
from storage.s3_blobs import S3BlobStore

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
DAY = 86_400


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def svc(mongo_stores, moto_s3, clock):
    settings = Settings(s3_endpoint=moto_s3.endpoint, s3_access_key=moto_s3.access_key,
                        s3_secret_key=moto_s3.secret_key, s3_secure=False, media_max_bytes=1000,
                        media_pending_per_user=3)
    blobs = S3BlobStore(moto_s3.endpoint, moto_s3.access_key, moto_s3.secret_key, f"svc-{uuid.uuid4().hex[:16]}",
                        secure=False, now=clock.now)
    service = MediaService(settings, mongo_stores, blobs, clock)
    yield service
    await blobs.close()


async def post_form(ticket: dict, data: bytes, content_type: str | None = None) -> None:
    fields = dict(ticket["upload"]["fields"])
    if content_type:
        fields["Content-Type"] = content_type      # moto stores what it is given; real S3 would refuse
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(ticket["upload"]["url"], data=fields, files={"file": ("f", data, "image/png")})
    assert r.status_code == 204, r.text


async def uploaded(svc, owner: str, data: bytes = PNG, declared: int | None = None,
                   content_type: str | None = None) -> str:
    ticket = await svc.create_upload(owner, "photo.png", "image/png", declared or len(data), "http://gw")
    await post_form(ticket, data, content_type)
    return ticket["media_id"]


async def group(stores, cid: str, members: list[str]) -> None:
    now = datetime.now(timezone.utc)
    await stores.conversations.create({"conversation_id": cid, "kind": "group", "title": "g", "members": members,
                                       "roles": {m: "member" for m in members}, "created_at": now, "last_seq": 0,
                                       "last_activity_at": now})


class TestCreateUpload:
    async def test_a_ticket_names_a_key_under_the_uploaders_prefix(self, svc, mongo_stores, clock):
        ticket = await svc.create_upload("u_alice", " photo.png ", "IMAGE/PNG", 10, "http://gw")
        record = await mongo_stores.media.get(ticket["media_id"])
        assert record["key"] == f"u_alice/{ticket['media_id']}" == ticket["upload"]["fields"]["key"]
        assert (record["filename"], record["content_type"], record["size"]) == ("photo.png", "image/png", 10)
        assert ticket["expires_at"] == "2027-01-15T08:15:00.000Z"      # FakeClock start + 900 s
        assert len(ticket["media_id"]) >= 22

    @pytest.mark.parametrize("content_type", ["text/html", "image/svg+xml", "application/x-msdownload",
                                              "application/javascript", "image/png; x=1"])
    async def test_a_type_not_on_the_list_is_unsupported(self, svc, content_type):
        with pytest.raises(UnsupportedMediaType) as info:
            await svc.create_upload("u_alice", "a", content_type, 10, "http://gw")
        assert info.value.message.startswith("content_type:")

    async def test_a_size_over_the_limit_is_too_large(self, svc):
        await svc.create_upload("u_alice", "a", "image/png", 1000, "http://gw")
        with pytest.raises(TooLarge) as info:
            await svc.create_upload("u_alice", "a", "image/png", 1001, "http://gw")
        assert info.value.message.startswith("size:")

    @pytest.mark.parametrize("name", ["", "   ", "a/b.png", "..\\x.png", "a\x00.png", "evil\u202egnp.exe",
                                      "x" * 256, ".."])
    def test_a_bad_filename_is_invalid(self, name):
        with pytest.raises(Invalid) as info:
            clean_filename(name)
        assert info.value.message.startswith("filename:")

    def test_a_filename_keeps_its_letters(self):
        assert clean_filename("Ürlaub 2030 — 📷.jpg") == "Ürlaub 2030 — 📷.jpg"

    async def test_pending_uploads_are_capped_per_user(self, svc, clock):
        for _ in range(3):
            await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw")
            clock.advance(60)
        with pytest.raises(RateLimited) as info:
            await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw")
        assert info.value.retry_after_ms == (DAY - 180) * 1000     # when the oldest is swept
        await svc.create_upload("u_bob", "a", "image/png", 10, "http://gw")


class TestAttach:
    async def test_a_matching_upload_is_attached_and_verified(self, svc, mongo_stores):
        mid = await uploaded(svc, "u_alice")
        await svc.check_attachments("u_alice", "c1", [mid])
        record = await mongo_stores.media.get(mid)
        assert (record["conversations"], record["verified"]) == (["c1"], True)

    async def test_someone_elses_media_is_refused_as_if_it_did_not_exist(self, svc, mongo_stores):
        mid = await uploaded(svc, "u_alice")
        with pytest.raises(Invalid) as theirs:
            await svc.check_attachments("u_mallory", "c1", [mid])
        with pytest.raises(Invalid) as unknown:
            await svc.check_attachments("u_mallory", "c1", ["x" * len(mid)])
        assert theirs.value.message == unknown.value.message.replace("x" * len(mid), mid)
        assert theirs.value.message.startswith("attachments:")
        assert (await mongo_stores.media.get(mid))["conversations"] == []

    async def test_an_upload_never_sent_is_refused(self, svc):
        ticket = await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw")
        with pytest.raises(Invalid, match="attachments: .* has not been uploaded"):
            await svc.check_attachments("u_alice", "c1", [ticket["media_id"]])

    async def test_an_object_bigger_than_declared_is_refused(self, svc, mongo_stores):
        """Real S3 refuses this upload (content-length-range); moto stores it, the attach check does not pass it."""
        mid = await uploaded(svc, "u_alice", data=PNG, declared=len(PNG) - 1)
        with pytest.raises(Invalid, match=f"attachments: .* is {len(PNG)} bytes, not the {len(PNG) - 1} declared"):
            await svc.check_attachments("u_alice", "c1", [mid])
        assert (await mongo_stores.media.get(mid))["attached"] is False

    async def test_an_object_of_another_type_than_declared_is_refused(self, svc):
        mid = await uploaded(svc, "u_alice", content_type="text/html")
        with pytest.raises(Invalid, match="attachments: .* stored as 'text/html', not the 'image/png' declared"):
            await svc.check_attachments("u_alice", "c1", [mid])

    async def test_one_bad_attachment_attaches_none(self, svc, mongo_stores):
        good = await uploaded(svc, "u_alice")
        bad = (await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw"))["media_id"]
        with pytest.raises(Invalid):
            await svc.check_attachments("u_alice", "c1", [good, bad])
        assert (await mongo_stores.media.get(good))["conversations"] == []

    async def test_the_same_media_twice_is_refused(self, svc):
        mid = await uploaded(svc, "u_alice")
        with pytest.raises(Invalid, match="attachments: the same media is listed twice"):
            await svc.check_attachments("u_alice", "c1", [mid, mid])

    async def test_a_verified_media_is_not_looked_at_again(self, svc, mongo_stores):
        mid = await uploaded(svc, "u_alice")
        await svc.check_attachments("u_alice", "c1", [mid])
        await svc.blobs.delete((await mongo_stores.media.get(mid))["key"])   # stat would now say "missing"
        await svc.check_attachments("u_alice", "c2", [mid])
        assert (await mongo_stores.media.get(mid))["conversations"] == ["c1", "c2"]


class TestDownload:
    async def test_the_uploader_and_members_get_a_url_others_get_not_found(self, svc, mongo_stores):
        mid = await uploaded(svc, "u_alice")
        await group(mongo_stores, "c_1", ["u_alice", "u_bob"])
        await group(mongo_stores, "c_2", ["u_alice", "u_carol"])
        with pytest.raises(NotFound):
            await svc.download_url("u_bob", mid, "http://gw")       # not attached anywhere yet
        await svc.check_attachments("u_alice", "c_1", [mid])
        async with httpx.AsyncClient(timeout=30) as http:
            for user in ("u_alice", "u_bob"):
                found = await svc.download_url(user, mid, "http://gw")
                r = await http.get(found["url"])
                assert r.status_code == 200 and r.content == PNG
        for user, media_id in (("u_carol", mid), ("u_alice", "nope")):
            with pytest.raises(NotFound) as info:
                await svc.download_url(user, media_id, "http://gw")
            assert info.value.message == "no such media"

    async def test_the_url_expires_after_the_configured_time(self, svc, clock):
        mid = await uploaded(svc, "u_alice")
        found = await svc.download_url("u_alice", mid, "http://gw")
        assert found["expires_at"] == "2027-01-15T08:05:00.000Z"      # FakeClock start + 300 s
        assert "X-Amz-Expires=300" in found["url"]


class TestSweep:
    async def test_uploads_never_attached_are_removed_after_the_ttl_and_attached_ones_stay(
            self, svc, mongo_stores, clock):
        stale, kept = await uploaded(svc, "u_alice"), await uploaded(svc, "u_alice")
        await svc.check_attachments("u_alice", "c1", [kept])
        clock.advance(DAY - 60)
        young = await uploaded(svc, "u_alice")
        assert await svc.sweep_unattached(clock.now()) == 0       # not a day old yet
        clock.advance(61)
        assert await svc.sweep_unattached(clock.now()) == 1
        assert await mongo_stores.media.get(stale) is None
        assert await svc.blobs.stat(f"u_alice/{stale}") is None
        for mid in (kept, young):
            assert await mongo_stores.media.get(mid) is not None
            assert await svc.blobs.stat(f"u_alice/{mid}") is not None
        with pytest.raises(Invalid):
            await svc.check_attachments("u_alice", "c1", [stale])

    async def test_the_sweep_takes_more_than_one_batch(self, svc, mongo_stores, clock, monkeypatch):
        import gateway.media_service as module

        monkeypatch.setattr(module, "SWEEP_BATCH", 2)
        svc.settings = svc.settings.model_copy(update={"media_pending_per_user": 100})
        for _ in range(5):
            await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw")
        clock.advance(DAY + 1)
        assert await svc.sweep_unattached(clock.now()) == 5
        assert await mongo_stores.media.pending("u_alice") == (0, None)


def test_a_message_with_attachments_may_have_an_empty_body():
    from gateway.chat_service import ChatService

    chat = ChatService(Settings(), None, None, FakeClock())
    chat.check_body("", may_be_empty=True)
    chat.check_body("", opaque=True, may_be_empty=True)
    with pytest.raises(Invalid, match="body: must not be empty"):
        chat.check_body("  ")
    with pytest.raises(TooLarge):
        chat.check_body("x" * 20_000, may_be_empty=True)


async def test_the_background_task_sweeps_by_itself(svc, mongo_stores, clock):
    import asyncio

    svc.settings = svc.settings.model_copy(update={"media_sweep_every_s": 0.05})
    mid = (await svc.create_upload("u_alice", "a", "image/png", 10, "http://gw"))["media_id"]
    clock.advance(DAY + 1)
    svc.start()
    svc.start()                                  # idempotent: still one task
    try:
        for _ in range(100):
            if await mongo_stores.media.get(mid) is None:
                break
            await asyncio.sleep(0.05)
        assert await mongo_stores.media.get(mid) is None
    finally:
        await svc.stop()
