"""Message search end to end (docs/protocol.md, "Changes", "Search"): through Serve, the gateway,
the conversation actors (which index) and the store (which answers)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e


async def _post(http, user, cid, body, cmid=None):
    r = await http.post(f"/v1/conversations/{cid}/messages", headers=user.auth,
                        json={"client_msg_id": cmid or uuid.uuid4().hex, "body": body})
    assert r.status_code == 201, r.text
    assert "terms" not in r.json()
    return r.json()


async def _search(http, user, q, **params):
    r = await http.get("/v1/search", headers=user.auth, params={"q": q, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _hits(page):
    return [(m["conversation_id"], m["seq"]) for m in page["messages"]]


async def _direct(http, a, b, e2ee=False):
    r = await http.post("/v1/conversations", headers=a.auth,
                        json={"kind": "direct", "members": [b.user_id], "e2ee": e2ee})
    assert r.status_code in (200, 201), r.text
    return r.json()["conversation_id"]


async def test_a_user_never_finds_messages_of_conversations_they_are_not_in(http):
    alice, bob, carol = [await register(http) for _ in range(3)]
    shared = await create_group(http, alice, [bob])
    private = await _direct(http, alice, carol)
    theirs = await create_group(http, carol, [])                 # carol alone
    m1 = await _post(http, alice, shared, "Zebra meeting at noon")
    m2 = await _post(http, carol, private, "the zebra plan, between us")
    await _post(http, carol, theirs, "zebra notes to self")
    assert _hits(await _search(http, bob, "zebra")) == [(shared, m1["seq"])]
    assert _hits(await _search(http, alice, "zebra")) == [(private, m2["seq"]), (shared, m1["seq"])]
    assert len(_hits(await _search(http, carol, "zebra"))) == 2
    # Naming a conversation one is not in is the same 404 as reading it.
    r = await http.get("/v1/search", headers=bob.auth, params={"q": "zebra", "conversation_id": private})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_results_are_messages_as_the_history_page_shows_them(http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    msg = await _post(http, alice, cid, "Quarterly report is ready")
    await http.post(f"/v1/conversations/{cid}/messages/{msg['seq']}/reactions", headers=bob.auth,
                    json={"emoji": "👍"})
    page = await _search(http, bob, "report")
    history = (await http.get(f"/v1/conversations/{cid}/messages", headers=bob.auth)).json()["messages"]
    assert page == {"messages": [m for m in history if m["seq"] == msg["seq"]], "next_cursor": None}
    assert page["messages"][0]["reactions"] == {"👍": 1} and "terms" not in page["messages"][0]


@pytest.mark.parametrize("stored, query", [("Un café, s'il vous plaît", "ＣＡＦÉ"),
                                           ("Die Straße ist gesperrt", "STRASSE"),
                                           ("Meet in Tokyo: 東京都庁", "京都"),
                                           ("ﬁnal version attached", "FINAL")])
async def test_case_width_and_compatibility_variants_find_the_message(http, stored, query):
    alice = await register(http)
    cid = await create_group(http, alice, [])
    msg = await _post(http, alice, cid, stored)
    assert _hits(await _search(http, alice, query)) == [(cid, msg["seq"])]


async def test_every_word_must_match_and_accents_count(http):
    alice = await register(http)
    cid = await create_group(http, alice, [])
    await _post(http, alice, cid, "red apple")
    both = await _post(http, alice, cid, "green apple, red pear")
    assert _hits(await _search(http, alice, "apple RED pear")) == [(cid, both["seq"])]
    cafe = await _post(http, alice, cid, "café")
    assert _hits(await _search(http, alice, "cafe")) == []
    assert _hits(await _search(http, alice, "Café")) == [(cid, cafe["seq"])]


async def test_an_edit_reindexes_and_a_delete_drops_out(http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    msg = await _post(http, alice, cid, "lunch at the pizzeria")
    r = await http.patch(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=alice.auth,
                         json={"body": "lunch at the noodle bar"})
    assert r.status_code == 200, r.text
    assert _hits(await _search(http, bob, "pizzeria")) == []
    [hit] = (await _search(http, bob, "noodle"))["messages"]
    assert (hit["seq"], hit["body"]) == (msg["seq"], "lunch at the noodle bar") and "edited_at" in hit
    r = await http.delete(f"/v1/conversations/{cid}/messages/{msg['seq']}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert _hits(await _search(http, bob, "lunch")) == []
    assert _hits(await _search(http, bob, "noodle")) == []


async def test_pages_cover_every_match_once_newest_first(http):
    alice = await register(http)
    cid = await create_group(http, alice, [])
    sent = [(await _post(http, alice, cid, f"standup note {i}", cmid=f"n{i}"))["seq"] for i in range(23)]
    await _post(http, alice, cid, "something else")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = await _search(http, alice, "Standup", **params)
        pages += 1
        seen += [seq for _, seq in _hits(page)]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(sent, reverse=True)


async def test_conversation_id_narrows_the_search(http):
    alice, bob = await register(http), await register(http)
    one, two = await create_group(http, alice, [bob]), await create_group(http, alice, [bob])
    await _post(http, alice, one, "budget draft")
    msg = await _post(http, alice, two, "budget final")
    assert _hits(await _search(http, bob, "budget", conversation_id=two)) == [(two, msg["seq"])]
    assert len(_hits(await _search(http, bob, "budget"))) == 2


async def test_a_removed_member_no_longer_finds_the_conversation(http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    await _post(http, alice, cid, "offsite agenda")
    assert len(_hits(await _search(http, bob, "agenda"))) == 1
    r = await http.delete(f"/v1/conversations/{cid}/members/{bob.user_id}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert _hits(await _search(http, bob, "agenda")) == []
    r = await http.get("/v1/search", headers=bob.auth, params={"q": "agenda", "conversation_id": cid})
    assert r.status_code == 404


async def test_e2ee_messages_are_never_found(http):
    alice, bob = await register(http), await register(http)
    sealed = await _direct(http, alice, bob, e2ee=True)
    r = await http.post("/v1/conversations", headers=alice.auth,
                        json={"kind": "group", "title": "sealed group", "members": [bob.user_id], "e2ee": True})
    sealed_group = r.json()["conversation_id"]
    plain = await create_group(http, alice, [bob])
    # Whatever the "ciphertext" looks like, it is never indexed, nor is an edit of it.
    msg = await _post(http, alice, sealed, "ciphertext looks like words sometimes")
    await _post(http, alice, sealed_group, "ciphertext in a group")
    r = await http.patch(f"/v1/conversations/{sealed}/messages/{msg['seq']}", headers=alice.auth,
                         json={"body": "ciphertext edited"})
    assert r.status_code == 200, r.text
    clear = await _post(http, alice, plain, "ciphertext is a word here")
    for user in (alice, bob):
        assert _hits(await _search(http, user, "ciphertext")) == [(plain, clear["seq"])]
    assert _hits(await _search(http, bob, "ciphertext", conversation_id=sealed)) == []


async def test_messages_sent_over_the_websocket_are_found_and_frames_carry_no_terms(raychat, http):
    alice, bob = await register(http), await register(http)
    cid = await create_group(http, alice, [bob])
    a, b = await Socket.open(raychat.ws_url, alice), await Socket.open(raychat.ws_url, bob)
    try:
        cmids = [await a.send(cid, f"socket burst {i}") for i in range(12)]
        await a.wait_for(lambda: all(c in a.acks for c in cmids))
        await b.wait_for(lambda: len(b.deduped(cid)) >= 12)
        seqs = sorted(a.acks[c]["seq"] for c in cmids)
        assert [seq for _, seq in _hits(await _search(http, bob, "BURST", limit=100))] == seqs[::-1]
        assert not [f for f in a.frames + b.frames if "terms" in f]
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.parametrize("params, field", [
    ({}, "q"), ({"q": ""}, "q"), ({"q": "x" * 257}, "q"), ({"q": "!!! 👍"}, "q"),
    ({"q": "a", "limit": 0}, "limit"), ({"q": "a", "limit": 101}, "limit"), ({"q": "a", "limit": "ten"}, "limit"),
    ({"q": "a", "cursor": "not-a-cursor"}, "cursor"), ({"q": "a", "cursor": "A" * 26 + "_"}, "cursor"),
    ({"q": "a", "cursor": "x" * 65}, "cursor"), ({"q": "a", "conversation_id": ""}, "conversation_id"),
])
async def test_bad_input_is_invalid_naming_the_field(http, params, field):
    alice = await register(http)
    r = await http.get("/v1/search", headers=alice.auth, params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid" and body["message"].startswith(f"{field}:"), body


async def test_search_needs_a_token_and_an_unknown_conversation_is_not_found(http):
    r = await http.get("/v1/search", params={"q": "hello"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    alice = await register(http)
    r = await http.get("/v1/search", headers=alice.auth, params={"q": "hello", "conversation_id": "c_nope"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_a_user_without_conversations_finds_nothing(http):
    loner = await register(http)
    assert await _search(http, loner, "anything") == {"messages": [], "next_cursor": None}

