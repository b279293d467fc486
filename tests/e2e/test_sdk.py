"""The Python SDK (raychat/client.py) against the session raychat: tokens, ordered delivery,
resume after a cut socket, sends stored once across a disconnect, gap fills, error codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import httpx
import pytest

from raychat.client import ApiError, Client

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


async def new_client(raychat, prefix: str = "s", **kw) -> Client:
    client = Client(raychat.base_url, **kw)
    client.username = f"{prefix}{uuid.uuid4().hex[:10]}"
    await client.register(client.username, PASSWORD)
    await client.login(client.username, PASSWORD)
    return client


@contextlib.asynccontextmanager
async def clients(raychat, n: int, **kw):
    made = [await new_client(raychat, **kw) for _ in range(n)]
    try:
        yield made
    finally:
        for c in made:
            await c.aclose()


async def collect(conn, cid: str, n: int, on_each=None, timeout: float = 60) -> list[dict]:
    """The first n events of cid that conn yields (others are skipped)."""
    got: list[dict] = []

    async def run():
        async for ev in conn.events():
            if ev["conversation_id"] == cid:
                got.append(ev)
                if on_each is not None:
                    on_each(got)
                if len(got) == n:
                    return

    await asyncio.wait_for(run(), timeout)
    return got


async def stored_messages(client: Client, cid: str) -> list[dict]:
    page = await client.events_after(cid, 0, limit=1000)
    assert not page["has_more"]
    return [e for e in page["events"] if e["kind"] == "message"]


# ---- tokens -----------------------------------------------------------------------------------------

async def test_tokens_are_refreshed_before_expiry_and_once_after_a_401(raychat):
    shift = [0.0]
    async with Client(raychat.base_url, clock=lambda: time.time() + shift[0]) as client:
        name = f"t{uuid.uuid4().hex[:10]}"
        await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        first_refresh = client.refresh_token
        assert (await client.me())["username"] == name and client.refreshes == 0

        shift[0] = client.expires_at - time.time() - 5          # the token now looks 5 s from expiry
        assert (await client.me())["user_id"] == client.user_id
        assert client.refreshes == 1 and client.refresh_token != first_refresh

        client.access_token = client.access_token[:-4] + "AAAA"   # the server will say 401
        assert (await client.me())["user_id"] == client.user_id
        assert client.refreshes == 2

        # The spent refresh token, used again, revokes the login: the client cannot refresh any more.
        r = await client.http.post(raychat.base_url + "/v1/auth/refresh", json={"refresh_token": first_refresh})
        assert r.status_code == 401
        with pytest.raises(ApiError) as err:
            await client.refresh()
        assert (err.value.code, err.value.status) == ("unauthorized", 401)
        assert client.refresh_token is None


async def test_a_live_socket_gets_the_refreshed_token_in_an_auth_frame(raychat):
    shift = [0.0]

    async def quick_sleep(s: float) -> None:     # the renewal loop checks the (shifted) clock often
        await asyncio.sleep(min(s, 0.2))

    async with clients(raychat, 1) as (b,):
        a = await new_client(raychat, clock=lambda: time.time() + shift[0], sleep=quick_sleep)
        try:
            cid = (await a.create_group("renew", [b.user_id]))["conversation_id"]
            async with a.connect() as conn:
                shift[0] = a.expires_at - time.time() - 30       # inside the refresh margin
                for _ in range(100):
                    if conn.stats["auth_renewals"]:
                        break
                    await asyncio.sleep(0.1)
                assert a.refreshes == 1 and conn.stats["auth_renewals"] == 1
                assert (await conn.send(cid, "still here")).seq == 1
                assert conn.stats["reconnects"] == 0, "renewed in place, no reconnect"
        finally:
            await a.aclose()


async def test_a_refused_auth_frame_closes_1008_and_the_client_refreshes_and_resumes(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("expiry", [b.user_id]))["conversation_id"]
        async with b.connect(since={cid: 0}) as cb:
            await a.post_message(cid, "before")
            await cb.websocket.send(json.dumps({"type": "auth", "token": "not-a-token"}))
            for _ in range(100):
                if cb.stats["reconnects"]:
                    break
                await asyncio.sleep(0.1)
            assert b.refreshes == 1 and cb.stats["reconnects"] == 1
            await a.post_message(cid, "after")
            got = await collect(cb, cid, 2)
            assert [(e["seq"], e["body"]) for e in got] == [(1, "before"), (2, "after")]


# ---- ordered delivery ------------------------------------------------------------------------------

async def test_two_clients_send_concurrently_and_both_see_every_event_in_order(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("pair", [b.user_id]))["conversation_id"]
        async with a.connect(since={cid: 0}) as ca, b.connect(since={cid: 0}) as cb:
            acks = await asyncio.gather(*(ca.send(cid, f"a{i}") for i in range(40)),
                                        *(cb.send(cid, f"b{i}") for i in range(40)))
            assert sorted(x.seq for x in acks) == list(range(1, 81))
            for conn in (ca, cb):
                got = await collect(conn, cid, 80)
                assert [e["seq"] for e in got] == list(range(1, 81))
            by_id = {x.client_msg_id: x.seq for x in acks}
            assert {e["client_msg_id"]: e["seq"] for e in got} == by_id


async def test_a_receiver_whose_socket_is_cut_mid_stream_gets_every_event_exactly_once(raychat):
    n = 150
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("cut", [b.user_id]))["conversation_id"]
        async with a.connect() as ca, b.connect(since={cid: 0}) as cb:
            cut_at = []

            def cut(got):
                if len(got) in (30, 90):             # twice, at moments the sender is still going
                    cut_at.append(cb.stats["connects"])
                    cb.websocket.transport.abort()    # no close frame: what a network drop looks like

            async def sender():
                for lo in range(0, n, 10):
                    await asyncio.gather(*(ca.send(cid, f"m{i}") for i in range(lo, lo + 10)))

            sending = asyncio.ensure_future(sender())
            got = await collect(cb, cid, n, on_each=cut)
            await sending
            assert [e["seq"] for e in got] == list(range(1, n + 1))
            # The last events may all have been read before the second cut: its reconnect then
            # ends after the collection, and must still bring nothing twice.
            for _ in range(100):
                if cb.stats["reconnects"] == 2:
                    break
                await asyncio.sleep(0.1)
            assert cb.stats["reconnects"] == 2 and cut_at == [1, 2]
            with pytest.raises(asyncio.TimeoutError):
                await collect(cb, cid, 1, timeout=1.0)


async def test_sends_retried_across_a_disconnect_are_stored_once(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("retry", [b.user_id]))["conversation_id"]
        async with a.connect() as ca:
            # A send that reached the server, whose ack the client never read: the socket drops.
            lost = "lost-ack-" + uuid.uuid4().hex
            await ca.websocket.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": lost,
                                                "body": "first try"}))
            for _ in range(100):
                if await stored_messages(b, cid):
                    break
                await asyncio.sleep(0.05)
            ca.websocket.transport.abort()
            again = await ca.send(cid, "first try", client_msg_id=lost)

            # Many sends in flight when the socket drops: each is retried until acked.
            sending = [asyncio.ensure_future(ca.send(cid, f"m{i}")) for i in range(100)]
            await asyncio.sleep(0.01)
            ca.websocket.transport.abort()
            acks = await asyncio.gather(*sending)
            assert ca.stats["reconnects"] == 2 and ca.stats["send_retries"] > 0

        stored = await stored_messages(b, cid)
        assert len(stored) == 101
        assert {e["client_msg_id"]: e["seq"] for e in stored} == \
            {lost: again.seq, **{x.client_msg_id: x.seq for x in acks}}
        assert again.seq == 1


async def test_a_gap_in_what_arrives_is_filled_from_the_events_feed_before_later_events(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("gap", [b.user_id]))["conversation_id"]
        for i in range(5):
            await a.post_message(cid, f"m{i + 1}")
        async with b.connect() as cb:
            # The client believes it has seqs up to 2; the server socket follows nothing yet, so
            # the next live event (6) arrives with 3-5 missing, as after a lost fan-out.
            cb._order.track(cid, 2)
            await a.post_message(cid, "m6")
            got = await collect(cb, cid, 4)
            assert [(e["seq"], e["body"]) for e in got] == [(3, "m3"), (4, "m4"), (5, "m5"), (6, "m6")]
            assert cb.stats["gaps_filled"] == 1


async def test_track_replays_a_conversation_from_a_seq(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("track", [b.user_id]))["conversation_id"]
        for i in range(3):
            await a.post_message(cid, f"m{i + 1}")
        async with b.connect() as cb:
            await cb.track(cid, 1)
            got = await collect(cb, cid, 2)
            assert [e["seq"] for e in got] == [2, 3]


# ---- typing and presence -----------------------------------------------------------------------------

async def test_typing_and_presence_arrive_as_signals(raychat):
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_direct(b.user_id))["conversation_id"]
        async with b.connect() as cb:
            async with a.connect() as ca:
                await ca.typing(cid, True)
                seen = []

                async def watch():
                    async for f in cb.signals():
                        seen.append(f)
                        if {"typing", "presence"} <= {x["type"] for x in seen if x.get("user_id") == a.user_id}:
                            return

                await asyncio.wait_for(watch(), 20)
            typing = next(f for f in seen if f["type"] == "typing")
            presence = next(f for f in seen if f["type"] == "presence")
            assert (typing["conversation_id"], typing["on"]) == (cid, True)
            assert presence["status"] == "online"


# ---- errors -----------------------------------------------------------------------------------------

async def test_refusals_map_to_api_error_codes(raychat):
    async with clients(raychat, 3) as (a, b, outsider):
        with pytest.raises(ApiError) as err:
            await Client(raychat.base_url, http=a.http).login(a.username, "wrong password!")
        assert (err.value.code, err.value.status) == ("unauthorized", 401)
        with pytest.raises(ApiError) as err:
            await a.register(a.username, PASSWORD)
        assert (err.value.code, err.value.status) == ("conflict", 409)
        with pytest.raises(ApiError) as err:
            await a.register("x", PASSWORD)
        assert (err.value.code, err.value.status) == ("invalid", 422) and "username" in err.value.message
        with pytest.raises(ApiError) as err:
            await a.conversation("c_nope")
        assert (err.value.code, err.value.status) == ("not_found", 404)

        cid = (await a.create_group("errs", [b.user_id]))["conversation_id"]
        async with a.connect() as ca, outsider.connect() as co:
            with pytest.raises(ApiError) as err:
                await co.send(cid, "let me in")
            assert (err.value.code, err.value.status) == ("forbidden", 403)
            with pytest.raises(ApiError) as err:
                await ca.send(cid, "x" * (raychat.settings.max_body_bytes + 1))
            assert (err.value.code, err.value.status) == ("too_large", 413)
            with pytest.raises(ApiError) as err:
                await ca.send(cid, "a reply to nothing", reply_to=99)
            assert err.value.code == "invalid"
            assert (await ca.send(cid, "fine")).seq == 1, "the connection survives refusals"


async def test_http_helpers_cover_a_conversation_lifecycle(raychat):
    async with clients(raychat, 2) as (a, b):
        conv = await a.create_group("life", [b.user_id])
        cid = conv["conversation_id"]
        sent = await a.post_message(cid, "hello")
        assert (await a.edit(cid, sent["seq"], "hello!"))["kind"] == "edit"
        assert (await b.react(cid, sent["seq"], "👍"))["kind"] == "reaction"
        assert await b.react(cid, sent["seq"], "👍") is None, "nothing changed: 204"
        assert (await b.unreact(cid, sent["seq"], "👍"))["on"] is False
        await b.mark_read(cid, sent["seq"])
        page = await b.history(cid)
        assert page["messages"][0]["body"] == "hello!" and page["messages"][0]["edited_at"]
        listed = [c async for c in b.all_conversations()]
        assert [c["conversation_id"] for c in listed] == [cid] and listed[0]["unread_count"] == 0
        assert (await a.rename(cid, "renamed"))["title"] == "renamed"
        assert (await b.user_by_name(a.username.upper()))["user_id"] == a.user_id
        assert (await b.user(a.user_id))["username"] == a.username
        await a.block(b.user_id)
        assert await a.blocks() == [b.user_id]
        await a.unblock(b.user_id)
        assert (await a.update_me(display_name="Ann"))["display_name"] == "Ann"
        assert (await a.remove_member(cid, b.user_id))["kind"] == "member_removed"
        with pytest.raises(ApiError) as err:
            await b.history(cid)
        assert err.value.code == "not_found"
        await a.logout()
        with pytest.raises(ApiError):
            await a.refresh()


async def test_media_upload_then_attach_then_fetch(raychat):
    async with httpx.AsyncClient(base_url=raychat.base_url) as http:
        if "/v1/media" not in (await http.get("/openapi.json")).json()["paths"]:
            pytest.skip("the media routes are not in this build yet")
    async with clients(raychat, 2) as (a, b):
        cid = (await a.create_group("media", [b.user_id]))["conversation_id"]
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
        media_id = await a.upload_media(png, "dot.png", "image/png")
        async with a.connect() as ca:
            await ca.send(cid, "a picture", attachments=[media_id])
        url = await b.media_url(media_id)
        async with httpx.AsyncClient() as plain:
            assert (await plain.get(url)).content == png


async def test_the_load_generator_sets_up_its_users_and_groups_with_the_sdk(raychat):
    from bench.e2e import setup_users

    users, _ = await setup_users(raychat.base_url, 4, 2)
    assert len({u.user_id for u in users}) == 4
    assert users[0].cid == users[1].cid != users[2].cid == users[3].cid
    async with Client(raychat.base_url) as c:
        c.set_tokens(users[3].token, None, 900, users[3].user_id)
        conv = await c.conversation(users[3].cid)
    assert conv["members"] == [users[2].user_id, users[3].user_id] and conv["roles"][users[2].user_id] == "owner"
