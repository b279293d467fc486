"""Conversation features end to end: groups and roles, edits, deletes, reactions, replies,
read receipts and unread counts, typing. Every change is a sequenced event."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e


async def _events(http, user, cid):
    r = await http.get(f"/v1/conversations/{cid}/events", headers=user.auth, params={"limit": 1000})
    assert r.status_code == 200, r.text
    return r.json()["events"]


async def _post(http, user, cid, body, cmid=None):
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                        json={"client_msg_id": cmid or body, "body": body})
    assert r.status_code == 201, r.text
    return r.json()


async def _conv(http, user, cid):
    r = await http.get("/v1/conversations", headers=user.auth, params={"limit": 200})
    return next(c for c in r.json()["conversations"] if c["conversation_id"] == cid)


# ---- groups ------------------------------------------------------------------------------------
async def test_rename_add_remove_and_roles_are_events_in_the_log(http):
    owner, a, b, c = [await register(http) for _ in range(4)]
    cid = await create_group(http, owner, [a, b])
    r = await http.patch(f"/v1/conversations/{cid}", headers=owner.auth, json={"title": "renamed"})
    assert r.status_code == 200 and r.json()["kind"] == "title_changed"
    r = await http.post(f"/v1/conversations/{cid}/members", headers=owner.auth, json={"user_ids": [c.user_id]})
    assert r.status_code == 200 and r.json()["user_ids"] == [c.user_id]
    r = await http.patch(f"/v1/conversations/{cid}/members/{a.user_id}", headers=owner.auth, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["role"] == "admin"
    r = await http.delete(f"/v1/conversations/{cid}/members/{b.user_id}", headers=a.auth)
    assert r.status_code == 200 and r.json()["kind"] == "member_removed"
    kinds = [e["kind"] for e in await _events(http, owner, cid)]
    assert kinds == ["title_changed", "member_added", "role_changed", "member_removed"]
    conv = (await http.get(f"/v1/conversations/{cid}", headers=c.auth)).json()
    assert conv["title"] == "renamed" and conv["roles"][a.user_id] == "admin" and b.user_id not in conv["members"]


async def test_role_rules_are_enforced(http):
    owner, admin, m1, m2 = [await register(http) for _ in range(4)]
    cid = await create_group(http, owner, [admin, m1, m2])
    await http.patch(f"/v1/conversations/{cid}/members/{admin.user_id}", headers=owner.auth, json={"role": "admin"})
    r = await http.post(f"/v1/conversations/{cid}/members", headers=m1.auth, json={"user_ids": [m2.user_id]})
    assert r.status_code == 403
    r = await http.patch(f"/v1/conversations/{cid}/members/{m1.user_id}", headers=admin.auth, json={"role": "admin"})
    assert r.status_code == 403
    r = await http.delete(f"/v1/conversations/{cid}/members/{owner.user_id}", headers=admin.auth)
    assert r.status_code == 403
    r = await http.patch(f"/v1/conversations/{cid}", headers=m1.auth, json={"title": "mine"})
    assert r.status_code == 403


async def test_transfer_of_ownership_and_the_last_owner_leaving_promotes_the_oldest_admin(http):
    owner, a, b, c = [await register(http) for _ in range(4)]
    cid = await create_group(http, owner, [a, b, c])
    r = await http.patch(f"/v1/conversations/{cid}/members/{a.user_id}", headers=owner.auth, json={"role": "owner"})
    assert r.status_code == 200
    conv = (await http.get(f"/v1/conversations/{cid}", headers=a.auth)).json()
    assert conv["roles"][a.user_id] == "owner" and conv["roles"][owner.user_id] == "admin"
    r = await http.delete(f"/v1/conversations/{cid}/members/{a.user_id}", headers=a.auth)   # leaves
    assert r.status_code == 200
    conv = (await http.get(f"/v1/conversations/{cid}", headers=b.auth)).json()
    assert conv["roles"][owner.user_id] == "owner"     # the oldest (and only) admin
    r = await http.delete(f"/v1/conversations/{cid}/members/{owner.user_id}", headers=owner.auth)
    assert r.status_code == 200, r.text
    conv = (await http.get(f"/v1/conversations/{cid}", headers=b.auth)).json()
    assert conv["roles"][b.user_id] == "owner"          # no admin left: the oldest member


async def test_removed_member_stops_receiving_at_once_and_can_no_longer_read(raychat, http):
    owner, m = await register(http), await register(http)
    cid = await create_group(http, owner, [m])
    sm = await Socket.open(raychat.ws_url, m)
    await _post(http, owner, cid, "before")
    await sm.wait_for(lambda: sm.deduped(cid) == [1])
    r = await http.delete(f"/v1/conversations/{cid}/members/{m.user_id}", headers=owner.auth)
    assert r.status_code == 200
    await sm.wait_for(lambda: sm.deduped(cid) == [1, 2])    # they see their own removal
    await _post(http, owner, cid, "after")
    await asyncio.sleep(0.5)
    assert sm.deduped(cid) == [1, 2]
    assert (await http.get(f"/v1/conversations/{cid}/events", headers=m.auth)).status_code == 404
    await sm.ws.send(json.dumps({"type": "sync", "conversation_id": cid, "after_seq": 0}))
    await sm.wait_for(lambda: any(e.get("ref") == cid for e in sm.errors))
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=m.auth, json={"client_msg_id": "x", "body": "y"})
    assert r.status_code == 403
    await sm.close()


async def test_member_added_back_does_not_see_what_happened_in_between(raychat, http):
    owner, m = await register(http), await register(http)
    cid = await create_group(http, owner, [m])
    await _post(http, owner, cid, "one")
    await http.delete(f"/v1/conversations/{cid}/members/{m.user_id}", headers=owner.auth)
    await _post(http, owner, cid, "secret")
    await http.post(f"/v1/conversations/{cid}/members", headers=owner.auth, json={"user_ids": [m.user_id]})
    await _post(http, owner, cid, "welcome back")
    sm = await Socket.open(raychat.ws_url, m, since={cid: 0})
    await sm.wait_for(lambda: 5 in sm.events.get(cid, []))
    assert sm.events[cid] == [1, 2, 4, 5]
    await sm.close()
    # The HTTP resume feed hides the same event, also when it is all a page would hold.
    assert [e["seq"] for e in await _events(http, m, cid)] == [1, 2, 4, 5]
    r = await http.get(f"/v1/conversations/{cid}/events", headers=m.auth, params={"after_seq": 2, "limit": 1})
    assert [e["seq"] for e in r.json()["events"]] == [4] and r.json()["has_more"] is True


async def test_group_size_limit_is_enforced(raychat, http):
    owner = await register(http)
    limit = raychat.settings.max_group_members
    r = await http.post("/v1/conversations", headers=owner.auth,
                        json={"kind": "group", "title": "big", "members": [f"u_{i}" for i in range(limit)]})
    assert r.status_code == 422 and r.json()["code"] == "invalid"


# ---- messages --------------------------------------------------------------------------------
async def test_edit_delete_react_reply_and_the_history_page_shows_them_applied(http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    m1 = await _post(http, a, cid, "hello")
    m2 = await _post(http, b, cid, "hi back")
    r = await http.patch(f"/v1/conversations/{cid}/messages/{m1['seq']}", headers=a.auth, json={"body": "hello!"})
    assert r.status_code == 200 and r.json()["kind"] == "edit"
    assert (await http.patch(f"/v1/conversations/{cid}/messages/{m1['seq']}", headers=b.auth,
                             json={"body": "not mine"})).status_code == 403
    for user in (a, b):
        r = await http.post(f"/v1/conversations/{cid}/messages/{m1['seq']}/reactions", headers=user.auth,
                            json={"emoji": "👍"})
        assert r.status_code == 200
    r = await http.post(f"/v1/conversations/{cid}/messages/{m1['seq']}/reactions", headers=b.auth, json={"emoji": "👍"})
    assert r.status_code == 204      # one per user per emoji
    r = await http.delete(f"/v1/conversations/{cid}/messages/{m2['seq']}", headers=b.auth)
    assert r.status_code == 200 and r.json()["kind"] == "delete"
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=b.auth,
                        json={"client_msg_id": "r", "body": "re", "reply_to": m1["seq"]})
    assert r.status_code == 201 and r.json()["reply_to"] == m1["seq"]
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=b.auth,
                        json={"client_msg_id": "r2", "body": "re", "reply_to": 4})   # an edit, not a message
    assert r.status_code == 422
    hist = (await http.get(f"/v1/conversations/{cid}/messages", headers=a.auth)).json()["messages"]
    by_seq = {m["seq"]: m for m in hist}
    assert by_seq[m1["seq"]]["body"] == "hello!" and by_seq[m1["seq"]]["reactions"] == {"👍": 2}
    assert by_seq[m1["seq"]]["edited_at"]
    assert by_seq[m2["seq"]]["deleted"] is True and "body" not in by_seq[m2["seq"]]
    events = await _events(http, a, cid)
    edit = next(e for e in events if e["kind"] == "edit")
    assert edit["body"] == "hello!"


async def test_delete_by_admin_erases_the_body_of_the_message_and_its_edits(http):
    owner, m = await register(http), await register(http)
    cid = await create_group(http, owner, [m])
    msg = await _post(http, m, cid, "oops")
    await http.patch(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=m.auth, json={"body": "oops2"})
    r = await http.delete(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=owner.auth)
    assert r.status_code == 200
    events = await _events(http, owner, cid)
    assert all("body" not in e for e in events[:2]), events
    assert (await http.delete(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=owner.auth)).status_code == 404


async def test_changes_over_the_websocket_are_acked_by_ref(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa = await Socket.open(raychat.ws_url, a)
    k = await sa.send(cid, "x")
    await sa.wait_for(lambda: k in sa.acks)
    await sa.ws.send(json.dumps({"type": "edit", "conversation_id": cid, "seq": 1, "body": "y", "ref": "e1"}))
    await sa.ws.send(json.dumps({"type": "react", "conversation_id": cid, "seq": 1, "emoji": "🎉", "ref": "r1"}))
    await sa.ws.send(json.dumps({"type": "delete", "conversation_id": cid, "seq": 9, "ref": "d1"}))
    await sa.wait_for(lambda: any(f.get("ref") == "d1" for f in sa.frames))
    acks = {f["ref"]: f for f in sa.frames if f["type"] == "ack" and f.get("ref")}
    assert acks["e1"]["seq"] == 2 and acks["r1"]["seq"] == 3
    assert next(f for f in sa.frames if f.get("ref") == "d1")["code"] == "not_found"
    await sa.wait_for(lambda: sa.deduped(cid) == [1, 2, 3])
    await sa.close()


# ---- receipts, unread, typing ------------------------------------------------------------------
async def test_read_receipts_go_to_others_and_unread_counts_ignore_own_messages(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa = await Socket.open(raychat.ws_url, a)
    for i in range(3):
        await _post(http, a, cid, f"a{i}")
    await asyncio.sleep(0.3)     # cursors are written after the answer
    assert (await _conv(http, a, cid))["unread_count"] == 0
    assert (await _conv(http, b, cid))["unread_count"] == 3
    r = await http.post(f"/v1/conversations/{cid}/read", headers=b.auth, json={"seq": 2})
    assert r.status_code == 204
    await sa.wait_for(lambda: any(f["type"] == "receipt" and f["seq"] == 2 for f in sa.frames))
    await asyncio.sleep(0.3)
    assert (await _conv(http, b, cid))["unread_count"] == 1
    await _post(http, b, cid, "b0")      # replying reads what came before
    r = await http.post(f"/v1/conversations/{cid}/read", headers=b.auth, json={"seq": 1})   # backwards: ignored
    assert r.status_code == 204
    await asyncio.sleep(0.3)
    b_view = await _conv(http, b, cid)
    assert b_view["read_seq"] == 4 and b_view["unread_count"] == 0
    assert (await _conv(http, a, cid))["unread_count"] == 1
    assert [f["seq"] for f in sa.frames if f["type"] == "receipt"] == [2]
    r = await http.post(f"/v1/conversations/{cid}/read", headers=b.auth, json={"seq": 99})
    assert r.status_code == 422
    assert b_view["last_message"]["body"] == "b0"
    await sa.close()


async def test_a_read_on_one_device_reaches_the_reader_s_other_devices(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    laptop, phone = await Socket.open(raychat.ws_url, b), await Socket.open(raychat.ws_url, b)
    for i in range(3):
        await _post(http, a, cid, f"a{i}")
    await phone.ws.send(json.dumps({"type": "read", "conversation_id": cid, "seq": 3}))
    for device in (laptop, phone):
        await device.wait_for(lambda d=device: any(f["type"] == "receipt" and f["user_id"] == b.user_id
                                                   and f["seq"] == 3 for f in d.frames))
    await laptop.close(), await phone.close()


async def test_unread_count_survives_passivation(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    for i in range(5):
        await _post(http, a, cid, f"m{i}")
    await http.post(f"/v1/conversations/{cid}/read", headers=b.auth, json={"seq": 2})
    await asyncio.sleep(0.6)
    import ray
    from actors.directory import current_view
    from actors.placement import owner as owner_of
    host = ray.get_actor(owner_of(("conv", cid), current_view(raychat.settings.namespace).hosts),
                         namespace=raychat.settings.namespace)
    ray.kill(host, no_restart=False)      # a crash is the harshest passivation
    await _post(http, a, cid, "after")
    await asyncio.sleep(0.6)
    assert (await _conv(http, b, cid))["unread_count"] == 4
    assert (await _conv(http, a, cid))["unread_count"] == 0


async def test_the_list_preview_follows_edits_and_deletes_of_the_newest_message(http):
    """Found by a client written from the contract: the list kept showing a deleted message's
    text (and after an edit, the text edited away) to every member."""
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    await _post(http, a, cid, "first")
    await _post(http, a, cid, "second secret")

    async def preview() -> dict:
        listed = (await _conv(http, b, cid))["last_message"]
        one = (await http.get(f"/v1/conversations/{cid}", headers=b.auth)).json()["last_message"]
        assert listed == one
        return listed

    r = await http.patch(f"/v1/conversations/{cid}/messages/2", headers=a.auth, json={"body": "second edited"})
    assert r.status_code == 200
    got = await preview()
    assert (got["seq"], got["body"]) == (2, "second edited") and "deleted" not in got
    assert (await http.delete(f"/v1/conversations/{cid}/messages/2", headers=a.auth)).status_code == 200
    got = await preview()
    assert (got["seq"], got["body"], got["deleted"]) == (2, None, True)
    # Changes to an older message leave the preview alone.
    await http.post(f"/v1/conversations/{cid}/messages/1/reactions", headers=b.auth, json={"emoji": "+1"})
    await http.patch(f"/v1/conversations/{cid}/messages/1", headers=a.auth, json={"body": "first edited"})
    assert await preview() == got
    third = await _post(http, a, cid, "third")
    for _ in range(40):
        got = await preview()
        if got["seq"] == third["seq"]:
            break
        await asyncio.sleep(0.05)
    assert (got["seq"], got["body"]) == (third["seq"], "third") and "deleted" not in got


async def test_typing_reaches_others_only_and_expires(raychat, http):
    a, b = await register(http), await register(http)
    cid = await create_group(http, a, [b])
    sa, sb = await Socket.open(raychat.ws_url, a), await Socket.open(raychat.ws_url, b)
    await sa.ws.send(json.dumps({"type": "typing", "conversation_id": cid, "on": True}))
    await sb.wait_for(lambda: any(f["type"] == "typing" and f["on"] for f in sb.frames))
    await sb.wait_for(lambda: any(f["type"] == "typing" and not f["on"] for f in sb.frames), timeout=10)
    assert not any(f["type"] == "typing" for f in sa.frames)
    assert (await _events(http, a, cid)) == []          # never stored
    await sa.close(), await sb.close()


async def test_conversation_list_pages_through_everything_once_by_cursor(http):
    a, b = await register(http), await register(http)
    made = [await create_group(http, a, [b], f"g{i}") for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/conversations", headers=b.auth, params=params)).json()
        seen += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 7


async def test_edits_in_e2ee_conversations_keep_ciphertext_byte_for_byte(http):
    a, b = await register(http), await register(http)
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "group", "title": "sealed", "members": [b.user_id], "e2ee": True})
    cid = r.json()["conversation_id"]
    msg = await _post(http, a, cid, "  c2VhbGVk  ")
    r = await http.patch(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=a.auth, json={"body": "   "})
    assert r.status_code == 200 and r.json()["body"] == "   "
