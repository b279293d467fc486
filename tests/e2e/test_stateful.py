"""A Hypothesis state machine drives random sends, edits, deletes, reactions, membership
changes and reconnects from several clients against the running raychat, and checks after
every step:
  - the store's seqs are 1..N, and a seq never changes meaning once seen;
  - every event a socket got is the store's event at that seq, in increasing order;
  - no socket ever got an event from a time its user was not a member;
  - a socket opened by a member has, once things settle, every event its user may see
    after the seq it resumed from.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from tests.chat_client import Socket, create_group, register

pytestmark = pytest.mark.e2e

N_USERS = 4
EMOJIS = ["👍", "🎉"]


def test_random_histories_keep_the_guarantees(raychat):
    loop = asyncio.new_event_loop()
    run = loop.run_until_complete

    class Chat(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.http = httpx.AsyncClient(base_url=raychat.base_url, timeout=30)
            self.users = [run(register(self.http, "h")) for _ in range(N_USERS)]
            self.owner = self.users[0]
            self.cid = run(create_group(self.http, self.owner, self.users[1:3]))
            self.initial = {u.user_id for u in self.users[:3]}
            self.sockets: dict[int, tuple[Socket, int | None]] = {}   # user index -> (socket, since or None)
            self.meaning: dict[int, tuple] = {}
            self.store: list[dict] = []

        def teardown(self):
            for sock, _ in self.sockets.values():
                run(sock.close())
            run(self.http.aclose())

        # ---- helpers ---------------------------------------------------------------------
        def members_at(self) -> list[set[str]]:
            """members_at()[i]: the members right after event i (index 0: before any)."""
            cur, out = set(self.initial), [set(self.initial)]
            for ev in self.store:
                if ev["kind"] == "member_added":
                    cur |= set(ev["user_ids"])
                elif ev["kind"] == "member_removed":
                    cur -= set(ev["user_ids"])
                out.append(set(cur))
            return out

        def visible(self, uid: str, seq: int, members) -> bool:
            ev = self.store[seq - 1]
            return uid in members[seq - 1] or uid in (ev.get("user_ids") or ()) and ev["kind"] in (
                "member_added", "member_removed")

        def is_member(self, i: int) -> bool:
            return self.users[i].user_id in self.members_at()[-1]

        def messages(self) -> list[int]:
            return [e["seq"] for e in self.store if e["kind"] == "message" and not e.get("deleted")]

        def refresh_store(self):
            r = run(self.http.get(f"/v1/conversations/{self.cid}/events", headers=self.owner.auth,
                                  params={"limit": 1000}))
            assert r.status_code == 200, r.text
            self.store = r.json()["events"]

        # ---- rules -----------------------------------------------------------------------
        @rule(i=st.integers(0, N_USERS - 1), body=st.text(min_size=1, max_size=20).filter(str.strip))
        def send(self, i, body):
            u = self.users[i]
            if i in self.sockets:
                sock = self.sockets[i][0]
                cmid = run(sock.send(self.cid, body))
                run(sock.wait_for(lambda: cmid in sock.acks or any(e.get("ref") == cmid for e in sock.errors)))
                ok = cmid in sock.acks
            else:
                r = run(self.http.post(f"/v1/conversations/{self.cid}/messages", headers=u.auth,
                                       json={"client_msg_id": uuid.uuid4().hex, "body": body}))
                assert r.status_code in (201, 403), r.text
                ok = r.status_code == 201
            assert ok == self.is_member(i)

        @rule(i=st.integers(0, N_USERS - 1), data=st.data())
        def edit_or_delete(self, i, data):
            msgs = self.messages()
            if not msgs:
                return
            seq = data.draw(st.sampled_from(msgs))
            u = self.users[i]
            if data.draw(st.booleans()):
                r = run(self.http.patch(f"/v1/conversations/{self.cid}/messages/{seq}", headers=u.auth,
                                        json={"body": "edited"}))
            else:
                r = run(self.http.delete(f"/v1/conversations/{self.cid}/messages/{seq}", headers=u.auth))
            assert r.status_code in (200, 403, 404), r.text

        @rule(i=st.integers(0, N_USERS - 1), emoji=st.sampled_from(EMOJIS), on=st.booleans(), data=st.data())
        def react(self, i, emoji, on, data):
            msgs = self.messages()
            if not msgs:
                return
            seq, u = data.draw(st.sampled_from(msgs)), self.users[i]
            path = f"/v1/conversations/{self.cid}/messages/{seq}/reactions"
            r = run(self.http.post(path, headers=u.auth, json={"emoji": emoji}) if on
                    else self.http.delete(f"{path}/{emoji}", headers=u.auth))
            assert r.status_code in (200, 204, 403, 404), r.text

        @rule(i=st.integers(1, N_USERS - 1))
        def toggle_member(self, i):
            u = self.users[i]
            if self.is_member(i):
                r = run(self.http.delete(f"/v1/conversations/{self.cid}/members/{u.user_id}", headers=self.owner.auth))
            else:
                r = run(self.http.post(f"/v1/conversations/{self.cid}/members", headers=self.owner.auth,
                                       json={"user_ids": [u.user_id]}))
            assert r.status_code == 200, r.text

        @rule(i=st.integers(0, N_USERS - 1))
        def reconnect(self, i):
            since = None
            if i in self.sockets:
                old, _ = self.sockets.pop(i)
                got = old.deduped(self.cid)
                since = got[-1] if got else None
                run(old.close())
            self.refresh_store()
            if self.is_member(i):
                since = since if since is not None else len(self.store)
                sock = run(Socket.open(raychat.ws_url, self.users[i], since={self.cid: since}))
                self.sockets[i] = (sock, since)
            else:
                self.sockets[i] = (run(Socket.open(raychat.ws_url, self.users[i])), None)

        # ---- invariants --------------------------------------------------------------------
        @invariant()
        def guarantees_hold(self):
            if not hasattr(self, "cid"):
                return
            self.refresh_store()
            seqs = [e["seq"] for e in self.store]
            assert seqs == list(range(1, len(seqs) + 1)), "gap or reuse"
            for e in self.store:
                meaning = (e["kind"], e["sender_id"], e.get("client_msg_id"), e.get("target_seq"))
                assert self.meaning.setdefault(e["seq"], meaning) == meaning, "a seq changed meaning"
            members = self.members_at()
            current = members[-1]
            for i, (sock, since) in self.sockets.items():
                uid = self.users[i].user_id
                if since is not None and uid in current and all(uid in m for m in members[since:]):
                    want = [s for s in seqs if s > since and self.visible(uid, s, members)]
                    run(sock.wait_for(lambda: set(want) <= set(sock.events.get(self.cid, [])), timeout=15))
                got = sock.events.get(self.cid, [])
                assert got == sorted(set(got)), f"out of order or repeated: {got}"
                for f in sock.frames:
                    if f["type"] == "event" and f["conversation_id"] == self.cid:
                        ev = self.store[f["seq"] - 1]
                        assert (f["kind"], f["sender_id"]) == (ev["kind"], ev["sender_id"])
                        assert self.visible(uid, f["seq"], members), f"{uid} saw {f['seq']} while not a member"

    Chat.TestCase.settings = settings(max_examples=6, stateful_step_count=18, deadline=None,
                                      suppress_health_check=list(HealthCheck))
    try:
        run_state_machine_as_test(Chat, settings=Chat.TestCase.settings)
    finally:
        loop.close()
