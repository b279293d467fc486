from actors.conversation_state import (ConversationState, DedupeWindow, SendCommand, content_digest, message_draft,
                                       number)
from actors.roster import Roster
from raychat.errors import Conflict, Forbidden, Invalid


def state(last_seq=0):
    return ConversationState("c1", Roster("group", ["a", "b"], {"a": "owner"}), last_seq, dedupe_capacity=4)


def cmd(sender="a", cmid="k1", body="hi", reply_to=None):
    return SendCommand(sender, cmid, body, (), reply_to)


def test_non_member_is_forbidden():
    adm = state().admit(cmd(sender="z"))
    assert isinstance(adm.error, Forbidden)


def test_new_message_is_admitted_and_numbered_without_gaps():
    s = state(last_seq=7)
    events = number("c1", [message_draft(c) for c in (cmd(cmid="k1"), cmd(cmid="k2"), cmd(sender="b", cmid="k1"))],
                    s.last_seq + 1, "t")
    assert [e["seq"] for e in events] == [8, 9, 10]
    assert [e["kind"] for e in events] == ["message"] * 3


def test_retry_with_same_content_returns_the_stored_event():
    s = state()
    ev = number("c1", [message_draft(cmd())], 1, "t")[0]
    s.remember(ev)
    s.last_seq = 1
    assert s.admit(cmd()).event is ev


def test_same_id_with_other_content_is_conflict():
    s = state()
    s.remember(number("c1", [message_draft(cmd())], 1, "t")[0])
    assert isinstance(s.admit(cmd(body="other")).error, Conflict)


def test_ids_are_per_sender():
    s = state()
    s.remember(number("c1", [message_draft(cmd(sender="a"))], 1, "t")[0])
    assert s.admit(cmd(sender="b")).new is not None


def test_reply_to_must_name_an_existing_seq():
    s = state(last_seq=3)
    assert s.admit(cmd(reply_to=3)).new is not None
    assert isinstance(s.admit(cmd(reply_to=4)).error, Invalid)


def test_dedupe_window_forgets_the_oldest_first():
    w = DedupeWindow(2)
    w.put(("a", "1"), "d", {})
    w.put(("a", "2"), "d", {})
    w.put(("a", "3"), "d", {})
    assert w.get(("a", "1")) is None and w.get(("a", "3")) is not None and len(w) == 2


def test_digest_tells_content_apart():
    assert content_digest("x", [], None) == content_digest("x", (), None)
    assert content_digest("x", [], None) != content_digest("x", [], 1)


def test_apply_folds_membership_title_and_counts():
    s = state()
    s.apply({"seq": 1, "kind": "message"})
    s.apply({"seq": 2, "kind": "member_added", "user_ids": ["c"]})
    s.apply({"seq": 3, "kind": "role_changed", "user_ids": ["c"], "role": "admin"})
    s.apply({"seq": 4, "kind": "member_removed", "user_ids": ["b"]})
    s.apply({"seq": 5, "kind": "title_changed", "title": "new"})
    assert s.message_count == 1 and s.last_seq == 5 and s.title == "new"
    assert s.roster.members == ["a", "c"] and s.roster.role("c") == "admin"


def test_a_message_draft_carries_its_search_terms():
    draft = message_draft(cmd(body="Lunch at NOON, lunch?"))
    assert draft["terms"] == ["lunch", "at", "noon"]


def test_an_e2ee_message_draft_has_no_search_terms():
    """Ciphertext is never indexed: its "words" are noise, and a plaintext's would be a leak."""
    draft = message_draft(cmd(body="c2VjcmV0IHBsYW4="), e2ee=True)
    assert "terms" not in draft and draft["body"] == "c2VjcmV0IHBsYW4="
