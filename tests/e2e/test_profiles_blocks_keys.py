"""Profiles, blocking, the key directory and e2ee conversations, end to end through Serve."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import pytest

from tests.chat_client import Socket, User, create_group, register

pytestmark = pytest.mark.e2e


def b64(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def prekeys(*ids: int) -> list[dict]:
    return [{"key_id": i, "public_key": b64()} for i in ids]


async def open_direct(http, a: User, b: User):
    return await http.post("/v1/conversations", headers=a.auth, json={"kind": "direct", "members": [b.user_id]})


async def send(http, user: User, cid: str, body: str = "hi"):
    return await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                           json={"client_msg_id": uuid.uuid4().hex, "body": body})


async def block(http, a: User, b: User) -> None:
    r = await http.post("/v1/users/me/blocks", headers=a.auth, json={"user_id": b.user_id})
    assert r.status_code == 204, r.text


async def unblock(http, a: User, b: User) -> None:
    r = await http.delete(f"/v1/users/me/blocks/{b.user_id}", headers=a.auth)
    assert r.status_code == 204, r.text


async def upload(http, user: User, identity: str, *ids: int, signed: str = "c2lnbmVk"):
    return await http.put("/v1/keys", headers=user.auth, json={
        "identity_key": identity, "signed_prekey": signed, "one_time_prekeys": prekeys(*ids)})


# ---- profiles ---------------------------------------------------------------------------------

async def test_patch_me_changes_the_display_name_everyone_sees(raychat, http):
    a, b = await register(http), await register(http)
    r = await http.patch("/v1/users/me", headers=a.auth, json={"display_name": "  Ada L.  "})
    assert r.status_code == 200, r.text
    assert r.json() == {**(await http.get("/v1/users/me", headers=a.auth)).json(), "display_name": "Ada L."}
    assert (await http.get(f"/v1/users/{a.user_id}", headers=b.auth)).json()["display_name"] == "Ada L."


async def test_patch_me_without_fields_changes_nothing(raychat, http):
    a = await register(http)
    before = (await http.get("/v1/users/me", headers=a.auth)).json()
    r = await http.patch("/v1/users/me", headers=a.auth, json={})
    assert r.status_code == 200 and r.json() == before


async def test_patch_me_with_a_control_character_is_invalid_and_stores_nothing(raychat, http):
    a = await register(http)
    r = await http.patch("/v1/users/me", headers=a.auth, json={"display_name": "evil\u202ename"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid")
    assert "display_name" in r.json()["message"]
    assert (await http.get("/v1/users/me", headers=a.auth)).json()["display_name"] == a.username


async def test_patch_me_cannot_change_the_username(raychat, http):
    a = await register(http)
    r = await http.patch("/v1/users/me", headers=a.auth, json={"username": "mallory", "display_name": "A"})
    assert r.status_code == 200 and r.json()["username"] == a.username


async def test_unknown_users_profile_is_not_found(raychat, http):
    a = await register(http)
    r = await http.get("/v1/users/u_nobody", headers=a.auth)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


# ---- blocking ---------------------------------------------------------------------------------

async def test_block_and_unblock_are_idempotent_and_listed(raychat, http):
    a, b, c = await register(http), await register(http), await register(http)
    for _ in range(2):
        await block(http, a, b)
    await block(http, a, c)
    r = await http.get("/v1/users/me/blocks", headers=a.auth)
    assert sorted(r.json()["user_ids"]) == sorted([b.user_id, c.user_id])
    for _ in range(2):
        await unblock(http, a, b)
    assert (await http.get("/v1/users/me/blocks", headers=a.auth)).json() == {"user_ids": [c.user_id]}


async def test_blocking_yourself_is_invalid(raychat, http):
    a = await register(http)
    r = await http.post("/v1/users/me/blocks", headers=a.auth, json={"user_id": a.user_id})
    assert r.status_code == 422


async def test_blocking_an_unknown_user_is_not_found(raychat, http):
    a = await register(http)
    r = await http.post("/v1/users/me/blocks", headers=a.auth, json={"user_id": "u_nobody"})
    assert r.status_code == 404


async def test_blocked_user_cannot_open_a_direct_conversation_with_the_blocker(raychat, http):
    a, b = await register(http), await register(http)
    await block(http, a, b)
    r = await open_direct(http, b, a)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


async def test_blocker_cannot_open_a_direct_conversation_with_whom_they_block(raychat, http):
    a, b = await register(http), await register(http)
    await block(http, a, b)
    assert (await open_direct(http, a, b)).status_code == 403


async def test_block_stops_sends_in_an_existing_direct_conversation_and_unblock_restores_them(raychat, http):
    a, b = await register(http), await register(http)
    cid = (await open_direct(http, a, b)).json()["conversation_id"]
    assert (await send(http, b, cid)).status_code == 201
    await block(http, a, b)
    r = await send(http, b, cid)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert (await send(http, a, cid)).status_code == 403
    assert (await http.post(f"/v1/conversations", headers=b.auth,
                            json={"kind": "direct", "members": [a.user_id]})).status_code == 403
    await unblock(http, a, b)
    assert (await send(http, b, cid)).status_code == 201
    assert (await open_direct(http, b, a)).status_code == 200
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["events"]
    assert [e["seq"] for e in events] == [1, 2]


async def test_a_block_also_stops_edits_and_reactions_but_not_deletes(raychat, http):
    """Found by a client written from the contract: while blocked, a reaction or an edit still
    reached the other side of the direct conversation."""
    a, b = await register(http), await register(http)
    cid = (await open_direct(http, a, b)).json()["conversation_id"]
    assert (await send(http, a, cid)).status_code == 201          # seq 1, a's
    assert (await send(http, b, cid)).status_code == 201          # seq 2, b's
    await block(http, a, b)
    base = f"/v1/conversations/{cid}/messages"
    for r in (await http.post(f"{base}/1/reactions", headers=b.auth, json={"emoji": "+1"}),
              await http.patch(f"{base}/1", headers=a.auth, json={"body": "changed"}),
              await http.post(f"{base}/2/reactions", headers=a.auth, json={"emoji": "+1"})):
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
    assert (await http.delete(f"{base}/2", headers=b.auth)).status_code == 200    # taking one's own back
    await unblock(http, a, b)
    assert (await http.post(f"{base}/1/reactions", headers=b.auth, json={"emoji": "+1"})).status_code == 200
    kinds = [e["kind"] for e in (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["events"]]
    assert kinds == ["message", "message", "delete", "reaction"]


async def test_block_answers_a_websocket_send_with_forbidden_and_its_ref(raychat, http):
    a, b = await register(http), await register(http)
    cid = (await open_direct(http, a, b)).json()["conversation_id"]
    await block(http, a, b)
    sb = await Socket.open(raychat.ws_url, b)
    cmid = await sb.send(cid, "let me talk")
    await sb.wait_for(lambda: any(e.get("ref") == cmid for e in sb.errors))
    assert next(e for e in sb.errors if e.get("ref") == cmid)["code"] == "forbidden"
    assert cmid not in sb.acks
    await unblock(http, a, b)
    cmid2 = await sb.send(cid, "thanks")
    await sb.wait_for(lambda: cmid2 in sb.acks)
    assert sb.acks[cmid2]["seq"] == 1
    await sb.close()


async def test_block_leaves_group_conversations_alone(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    await block(http, a, b)
    assert (await send(http, b, cid)).status_code == 201
    assert (await send(http, a, cid)).status_code == 201


# ---- key directory ----------------------------------------------------------------------------

async def test_uploaded_bundle_is_handed_out_with_one_prekey_each_time_until_none(raychat, http):
    a, b = await register(http), await register(http)
    ik = b64()
    r = await upload(http, a, ik, 1, 2, signed="c2lnbmVkLTE=")
    assert r.status_code == 200 and r.json() == {"count": 2}
    got = [(await http.get(f"/v1/keys/{a.user_id}", headers=b.auth)).json() for _ in range(3)]
    assert {g["identity_key"] for g in got} == {ik} and {g["signed_prekey"] for g in got} == {"c2lnbmVkLTE="}
    assert [g["one_time_prekey"]["key_id"] if g["one_time_prekey"] else None for g in got] == [1, 2, None]
    assert (await http.get("/v1/keys/me/count", headers=a.auth)).json() == {"count": 0}


async def test_put_keys_appends_prekeys_and_replaces_the_signed_prekey(raychat, http):
    a, b = await register(http), await register(http)
    ik = b64()
    await upload(http, a, ik, 1, signed="b2xk")
    r = await upload(http, a, ik, 2, 3, signed="bmV3")
    assert r.json() == {"count": 3}
    bundle = (await http.get(f"/v1/keys/{a.user_id}", headers=b.auth)).json()
    assert bundle["signed_prekey"] == "bmV3" and bundle["one_time_prekey"]["key_id"] == 1
    assert (await http.get("/v1/keys/me/count", headers=a.auth)).json() == {"count": 2}


async def test_a_new_identity_key_retires_the_old_prekeys(raychat, http):
    a, b = await register(http), await register(http)
    await upload(http, a, b64(), 1, 2)
    new_ik = b64()
    assert (await upload(http, a, new_ik)).json() == {"count": 0}
    bundle = (await http.get(f"/v1/keys/{a.user_id}", headers=b.auth)).json()
    assert bundle["identity_key"] == new_ik and bundle["one_time_prekey"] is None


async def test_twenty_concurrent_claims_of_five_prekeys_hand_each_out_exactly_once(raychat, http):
    owner = await register(http)
    claimers = [await register(http) for _ in range(4)]
    await upload(http, owner, b64(), *range(100, 105))
    answers = await asyncio.gather(*(http.get(f"/v1/keys/{owner.user_id}", headers=claimers[i % 4].auth)
                                     for i in range(20)))
    assert {r.status_code for r in answers} == {200}
    prekeys_out = [r.json()["one_time_prekey"] for r in answers]
    handed = [p["key_id"] for p in prekeys_out if p is not None]
    assert sorted(handed) == list(range(100, 105))
    assert prekeys_out.count(None) == 15


async def test_keys_of_a_user_without_a_bundle_are_not_found(raychat, http):
    a, b = await register(http), await register(http)
    assert (await http.get(f"/v1/keys/{a.user_id}", headers=b.auth)).status_code == 404
    assert (await http.get("/v1/keys/me/count", headers=a.auth)).json() == {"count": 0}


@pytest.mark.parametrize("bad", [
    {"identity_key": "not base64!"},
    {"identity_key": "A" * 4097},
    {"signed_prekey": ""},
    {"one_time_prekeys": prekeys(*range(101))},
    {"one_time_prekeys": prekeys(1, 1)},
    {"one_time_prekeys": [{"key_id": -1, "public_key": "QQ=="}]},
    {"one_time_prekeys": [{"key_id": "1", "public_key": "QQ=="}]},
    {"one_time_prekeys": [{"key_id": 1}]},
], ids=["not-base64", "too-long", "empty", "over-100", "repeated-key-id", "negative-id", "string-id", "no-key"])
async def test_bad_key_upload_is_invalid_and_stores_nothing(raychat, http, bad):
    a = await register(http)
    body = {"identity_key": b64(), "signed_prekey": b64(), "one_time_prekeys": prekeys(7), **bad}
    r = await http.put("/v1/keys", headers=a.auth, json=body)
    assert (r.status_code, r.json()["code"]) == (422, "invalid"), r.text
    assert (await http.get(f"/v1/keys/{a.user_id}", headers=a.auth)).status_code == 404


async def test_keys_need_authentication(raychat, http):
    assert (await http.get("/v1/keys/u_x")).status_code == 401
    assert (await http.put("/v1/keys", json={"identity_key": "QQ==", "signed_prekey": "QQ=="})).status_code == 401


# ---- e2ee conversations -----------------------------------------------------------------------

async def test_e2ee_flag_shows_in_every_wire_form_of_the_conversation(raychat, http):
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "group", "title": "secret", "members": [b.user_id], "e2ee": True})
    assert r.status_code == 201 and r.json()["e2ee"] is True
    cid = r.json()["conversation_id"]
    assert (await http.get(f"/v1/conversations/{cid}", headers=b.auth)).json()["e2ee"] is True
    listed = (await http.get("/v1/conversations", headers=b.auth)).json()["conversations"]
    assert [c["e2ee"] for c in listed if c["conversation_id"] == cid] == [True]


async def test_conversations_are_not_e2ee_unless_asked(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    assert (await http.get(f"/v1/conversations/{cid}", headers=a.auth)).json()["e2ee"] is False


async def test_e2ee_flag_must_be_a_json_boolean(raychat, http):
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "direct", "members": [b.user_id], "e2ee": "yes"})
    assert r.status_code == 422


async def test_e2ee_bodies_are_stored_and_relayed_byte_for_byte(raychat, http):
    """Whitespace and unnormalized Unicode would be touched by text processing; ciphertext must not be."""
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "direct", "members": [b.user_id], "e2ee": True})
    cid = r.json()["conversation_id"]
    sb = await Socket.open(raychat.ws_url, b)
    bodies = ["  \t ", "e\u0301 ﬁ " + b64(64) + "\n"]
    for body in bodies:
        r = await send(http, a, cid, body)
        assert r.status_code == 201 and r.json()["body"] == body
    await sb.wait_for(lambda: len(sb.events.get(cid, [])) >= 2)
    assert [sb.bodies[(cid, s)] for s in (1, 2)] == bodies
    events = (await http.get(f"/v1/conversations/{cid}/events", headers=b.auth)).json()["events"]
    assert [e["body"] for e in events] == bodies
    await sb.close()


async def test_e2ee_ciphertext_over_the_body_limit_is_too_large(raychat, http):
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "group", "title": "s", "members": [b.user_id], "e2ee": True})
    cid = r.json()["conversation_id"]
    over = base64.b64encode(os.urandom(raychat.settings.max_body_bytes)).decode()
    r = await send(http, a, cid, over)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")
    assert (await http.get(f"/v1/conversations/{cid}/events", headers=a.auth)).json()["last_seq"] == 0


async def test_empty_e2ee_body_is_invalid(raychat, http):
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "direct", "members": [b.user_id], "e2ee": True})
    assert (await send(http, a, r.json()["conversation_id"], "")).status_code == 422


# ---- authorization ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["", "/messages", "/events"])
async def test_another_users_conversation_is_not_found(raychat, http, path):
    a, b, outsider = await register(http), await register(http), await register(http)
    cid = (await open_direct(http, a, b)).json()["conversation_id"]
    assert (await send(http, a, cid, "private")).status_code == 201
    r = await http.get(f"/v1/conversations/{cid}{path}", headers=outsider.auth)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert "private" not in r.text
    unknown = await http.get(f"/v1/conversations/c_{uuid.uuid4().hex}{path}", headers=outsider.auth)
    assert unknown.json() == r.json(), "an existing conversation must look exactly like a missing one"
